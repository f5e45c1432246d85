"""Loader for the IHDP semi-synthetic CATE benchmark (Hill 2011, NPCI replications)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from pexkit.data import LoggedData
from pexkit.exceptions import InvalidDataError
from pexkit.spec import ExperimentSpec

__all__ = ["IHDPData", "load_ihdp"]

FloatArray = NDArray[np.float64]
IHDP_COLUMNS = ["treatment", "y_factual", "y_cfactual", "mu0", "mu1"] + [
    f"x{j}" for j in range(1, 26)
]


@dataclass(frozen=True)
class IHDPData:
    """One IHDP replication.

    Attributes
    ----------
    data : LoggedData
        Arms control/treated, outcome ``y``, features x1..x25, and an estimated
        propensity (the study is not randomized as provided).
    true_cate : ndarray of shape (n_units,)
        ``mu1 - mu0``.
    frame : DataFrame
        The raw columns.
    """

    data: LoggedData
    true_cate: FloatArray
    frame: pd.DataFrame

    @property
    def true_ate(self) -> float:
        """Mean of the true CATE."""
        return float(self.true_cate.mean())

    def pehe(self, estimated_cate: FloatArray) -> float:
        """sqrt(mean((tau_hat - tau)^2)): precision in estimating heterogeneous effects."""
        est = np.asarray(estimated_cate, dtype=np.float64).reshape(-1)
        return float(np.sqrt(np.mean((est - self.true_cate) ** 2)))


def load_ihdp(path: str | Path, replication: int = 1) -> IHDPData:
    """Read one IHDP NPCI replication (``ihdp_npci_{replication}.csv``).

    Parameters
    ----------
    path : str or Path
        A replication CSV, or the folder holding ``ihdp_npci_*.csv``.
    replication : int
        Which replication when ``path`` is a folder.

    Notes
    -----
    Treatment was not randomized (Hill removed part of the treated group), so
    the loader estimates P(T | x) by a logistic regression and stores the
    logged arm's probability (clipped to [0.02, 0.98]) as the propensity column.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"ihdp_npci_{replication}.csv"
    if not path.exists():
        raise InvalidDataError(
            f"IHDP file {str(path)!r} does not exist; pass the path of an "
            "ihdp_npci_*.csv file or its folder. pexkit never downloads data."
        )
    frame = pd.read_csv(path, header=None)
    if frame.shape[1] != len(IHDP_COLUMNS):
        raise InvalidDataError(
            f"{str(path)!r}: expected {len(IHDP_COLUMNS)} columns (treatment, "
            f"y_factual, y_cfactual, mu0, mu1, x1..x25); found {frame.shape[1]}."
        )
    frame.columns = IHDP_COLUMNS
    features = [f"x{j}" for j in range(1, 26)]
    X = frame[features].to_numpy(np.float64)
    t = frame["treatment"].to_numpy(np.int64)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(X, t)
    e1 = np.clip(clf.predict_proba(X)[:, 1], 0.02, 0.98)
    log = frame[features].copy()
    log["arm"] = np.where(t == 1, "treated", "control")
    log["y"] = frame["y_factual"].to_numpy(np.float64)
    log["propensity"] = np.where(t == 1, e1, 1 - e1)
    spec = ExperimentSpec(
        name=f"ihdp-{path.stem}",
        treatment={"column": "arm", "arms": ["control", "treated"]},
        outcomes=[{"name": "y", "goal": "maximize"}],
        numeric=features,
        propensity="propensity",
    )
    true = (frame["mu1"] - frame["mu0"]).to_numpy(np.float64)
    return IHDPData(LoggedData.from_frame(log, spec), true, frame)
