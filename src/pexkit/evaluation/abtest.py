"""The A/B readout: each arm against control per outcome, with no effect model.

What a plain randomized experiment needs (and all a spec without features can
give): per (treatment, outcome) the control mean, the treatment mean, their
difference with a confidence interval and the relative change. Each arm's mean
is the inverse-propensity-weighted (Hajek) mean of its rows,

.. math:: \\hat m_k = \\frac{\\sum_i w_{ik} Y_i}{\\sum_i w_{ik}}, \\qquad
          w_{ik} = \\frac{1\\{T_i = k\\} R_i}{e_i},

which is the arm's sample mean under the design's shares (constant ``e``) and
stays unbiased under logged propensities; ``R_i`` is 1 where the outcome was
observed (``missing: drop`` outcomes use their observed rows only). The
standard error of the difference is that of the mean of its influence terms
``n w_{ik} (Y_i - m_k) / sum w_k - (the same for control)``, cluster-robust
when the spec names a ``cluster`` (:func:`pexkit._stats.mean_se`); with equal
weights it is Welch's standard error up to ``(n_k - 1) / n_k``.

Examples
--------
>>> import numpy as np, pandas as pd, pexkit as px
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"arm": rng.choice(["a", "b"], 2000)})
>>> df["y"] = rng.normal(size=2000) + (df["arm"] == "b")
>>> spec = px.ExperimentSpec(treatment="arm", arms=["a", "b"], outcomes=["y"])
>>> table = px.ab_readout(px.LoggedData.from_frame(df, spec))
>>> row = table.iloc[0]
>>> bool(row["ci_low"] < 1.0 < row["ci_high"]), int(row["n_control"] + row["n_treatment"])
(True, 2000)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pexkit._stats import mean_se
from pexkit.data import LoggedData
from pexkit.exceptions import InvalidDataError, InvalidParameterError

__all__ = ["ab_readout"]


def ab_readout(data: LoggedData, alpha: float = 0.05, baseline: Any = None) -> pd.DataFrame:
    """Each arm against a baseline arm (control by default), per outcome.

    Parameters
    ----------
    data : LoggedData
        A log (features are not needed: a spec may list none).
    alpha : float
        1 - confidence level.
    baseline : arm label, optional
        The arm the others are compared with (default: the spec's control).

    Returns
    -------
    DataFrame
        One row per (treatment, outcome): treatment, outcome, n_control,
        n_treatment (rows with the outcome observed), control_mean,
        treatment_mean, estimate (the difference), se, ci_low, ci_high,
        relative (estimate / control mean; NaN when the control mean is 0),
        p_value.
    """
    if not isinstance(data, LoggedData):
        raise InvalidDataError(
            f"ab_readout expects a LoggedData; got {type(data).__name__}. Wrap the frame "
            "with LoggedData.from_frame(df, spec)."
        )
    if not 0 < alpha < 1:
        raise InvalidParameterError(f"'alpha' must be in (0, 1); got {alpha!r}.")
    spec = data.spec
    base = 0 if baseline is None else spec.treatment_index(baseline)
    z = float(stats.norm.ppf(1 - alpha / 2))
    n = data.n_units
    rows = []
    for m, name in enumerate(spec.outcome_names):
        y = data.outcomes[:, m]
        observed = np.isfinite(y)
        y0 = np.where(observed, y, 0.0)

        def arm(k: int, y0: Any = y0, observed: Any = observed) -> tuple[float, Any, int]:
            w = np.where((data.treatment == k) & observed, 1.0 / data.propensity, 0.0)
            total = float(w.sum())
            if total == 0:
                return float("nan"), np.zeros(n), 0
            mean = float((w * y0).sum() / total)
            return mean, n * w * (y0 - mean) / total, int(np.count_nonzero(w))

        m0, inf0, n0 = arm(base)
        for k, label in enumerate(spec.arms):
            if k == base:
                continue
            mk, infk, nk = arm(k)
            est = mk - m0
            se = float(mean_se(infk - inf0, data.clusters)) if n0 and nk else float("nan")
            p = float(2 * stats.norm.sf(abs(est) / se)) if se > 0 else float("nan")
            rows.append({
                "treatment": label, "outcome": name, "n_control": n0, "n_treatment": nk,
                "control_mean": m0, "treatment_mean": mk, "estimate": est, "se": se,
                "ci_low": est - z * se, "ci_high": est + z * se,
                "relative": est / m0 if m0 else float("nan"), "p_value": p,
            })
    return pd.DataFrame(rows)
