"""Covariate balance: standardized mean differences of the features between arms.

Randomization balances every feature in expectation; a standardized
difference above 0.1 in absolute value (the usual threshold) says the arms
differ more than chance usually makes them (or that assignment depended on the
feature). For a numeric feature ``x`` and arm ``k`` against control,

.. math:: d = \\frac{\\bar x_k - \\bar x_0}{\\sqrt{(s_k^2 + s_0^2) / 2}}

over the rows where ``x`` is present; a categorical feature gets one row per
level, with ``x`` its 0/1 indicator (a missing value is a level of its own).
With logged propensities the arm means and variances are weighted by ``1/e``
(the balance the estimators see).

Examples
--------
>>> import numpy as np, pandas as pd, pexkit as px
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"arm": rng.choice(["a", "b"], 4000), "age": rng.normal(40, 9, 4000)})
>>> df["y"] = rng.normal(size=4000)
>>> spec = px.ExperimentSpec(treatment="arm", arms=["a", "b"], outcomes=["y"], numeric=["age"])
>>> table = balance(px.LoggedData.from_frame(df, spec))
>>> bool(abs(table.loc[0, "smd"]) < 0.1), table.loc[0, "feature"]
(True, 'age')
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pexkit.data.logged import LoggedData

__all__ = ["SMD_THRESHOLD", "balance"]

#: |standardized difference| above which a feature is flagged as imbalanced
SMD_THRESHOLD = 0.1


def _moments(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    total = w.sum()
    if total <= 0:
        return float("nan"), float("nan")
    mean = float((w * x).sum() / total)
    return mean, float((w * (x - mean) ** 2).sum() / total)


def balance(data: LoggedData, max_levels: int = 20) -> pd.DataFrame:
    """Standardized mean difference of every feature, each arm against control.

    Parameters
    ----------
    data : LoggedData
    max_levels : int
        Most frequent levels shown per categorical feature (the rest pooled as
        "other").

    Returns
    -------
    DataFrame
        Columns feature, level (None for numeric features), treatment,
        control_mean, treatment_mean, smd, imbalanced (``|smd| > 0.1``);
        sorted by ``|smd|``, largest first.
    """
    spec = data.spec
    w_all = 1.0 / data.propensity
    columns: list[tuple[str, str | None, np.ndarray]] = []
    for col in spec.numeric:
        columns.append((col, None, data.X[col].to_numpy(dtype=np.float64)))
    for col in spec.categorical:
        values = data.X[col].astype(object).where(data.X[col].notna(), "(missing)")
        values = values.astype(str)
        top = values.value_counts().index[:max_levels]
        values = values.where(values.isin(top), "other")
        for level in sorted(values.unique()):
            columns.append((col, level, (values == level).to_numpy(dtype=np.float64)))
    rows = []
    for feature, level, x in columns:
        present = ~np.isnan(x)
        in_arm = [(data.treatment == k) & present for k in range(spec.n_treatments)]
        m0, v0 = _moments(x[in_arm[0]], w_all[in_arm[0]])
        for k in range(1, spec.n_treatments):
            mk, vk = _moments(x[in_arm[k]], w_all[in_arm[k]])
            pooled = np.sqrt((vk + v0) / 2)
            smd = (mk - m0) / pooled if pooled > 0 else 0.0
            rows.append({"feature": feature, "level": level, "treatment": spec.arms[k],
                         "control_mean": m0, "treatment_mean": mk, "smd": float(smd),
                         "imbalanced": bool(abs(smd) > SMD_THRESHOLD)})
    out = pd.DataFrame(rows, columns=["feature", "level", "treatment", "control_mean",
                                      "treatment_mean", "smd", "imbalanced"])
    if out.empty:
        return out
    return out.reindex(out["smd"].abs().sort_values(ascending=False).index).reset_index(drop=True)
