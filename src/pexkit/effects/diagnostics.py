"""Diagnostics of effect models against DR pseudo-outcomes: calibration, uplift curves, AUUC."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pexkit._stats import mean_se
from pexkit.effects.model import EffectModel

__all__ = ["auuc", "auuc_table", "calibration", "uplift_curve"]


def _pseudo(model: EffectModel, k: int, m: int) -> np.ndarray:
    return np.asarray(model.scores_[:, k, m] - model.scores_[:, 0, m])


def calibration(model: EffectModel, k: int, m: int, n_bins: int = 10) -> pd.DataFrame:
    """Predicted vs DR-estimated effect by quantile bin of the prediction.

    Returns
    -------
    DataFrame with columns bin, n, predicted, estimated, se (cluster-robust
    when the spec names a ``cluster``).
    """
    model._check_fitted()
    pred = model.effects_[:, k, m]
    psi = _pseudo(model, k, m)
    edges = np.unique(np.quantile(pred, np.linspace(0, 1, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(bins):
        sel = bins == b
        clusters = None if model.clusters_ is None else model.clusters_[sel]
        rows.append(
            {
                "bin": int(b),
                "n": int(sel.sum()),
                "predicted": float(pred[sel].mean()),
                "estimated": float(psi[sel].mean()),
                "se": float(mean_se(psi[sel], clusters)) if sel.sum() > 1 else 0.0,
            }
        )
    return pd.DataFrame(rows)


def uplift_curve(model: EffectModel, k: int, m: int, n_points: int = 50) -> pd.DataFrame:
    """Cumulative DR gain of treating units in order of predicted benefit.

    Units are sorted by ``s_m * tau_hat`` (best first); ``gain`` is
    ``sum of s_m * psi`` over the treated fraction, divided by n (so at
    fraction 1 it equals the goal-signed ATE); ``random`` is the straight line.
    """
    model._check_fitted()
    sign = model.spec_.signs[m]
    pred = sign * model.effects_[:, k, m]
    psi = sign * _pseudo(model, k, m)
    order = np.argsort(-pred, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(psi[order])]) / psi.shape[0]
    idx = np.unique(np.linspace(0, psi.shape[0], n_points + 1).astype(int))
    frac = idx / psi.shape[0]
    return pd.DataFrame({"fraction": frac, "gain": cum[idx], "random": frac * cum[-1]})


def auuc(model: EffectModel, k: int, m: int, alpha: float = 0.05) -> dict[str, float]:
    r"""Area between the uplift curve and the random line, with a confidence interval.

    With units ranked by the model's out-of-fold ``s_m tau_hat`` (best first, rank
    ``r = 1..n``) and goal-signed DR pseudo-outcomes ``psi``, the area between
    :func:`uplift_curve` (at every unit) and the straight line from 0 to the ATE is

    .. math:: A = \frac{1}{n} \sum_r \psi_{(r)} \frac{(n + 1)/2 - r}{n}

    in the outcome's units (half the ATE-free gain of targeting a perfect ranking
    is its upper range). It is a mean of per-unit terms given the ranking, which
    cross-fitting keeps independent of each unit's own outcome, so its standard
    error is theirs (cluster-robust with ``cluster:``). ``A > 0`` with a CI above
    0: the model ranks units by benefit better than chance (a Qini-type test of
    heterogeneity); near 0: no usable heterogeneity.

    Returns
    -------
    dict with auuc, se, ci_low, ci_high, ate (goal-signed) and n.
    """
    from scipy import stats

    model._check_fitted()
    sign = model.spec_.signs[m]
    pred = sign * model.effects_[:, k, m]
    psi = sign * _pseudo(model, k, m)
    n = psi.shape[0]
    order = np.argsort(-pred, kind="stable")
    rank = np.empty(n)
    rank[order] = np.arange(1, n + 1)
    terms = psi * ((n + 1) / 2 - rank) / n
    value = float(terms.mean())
    se = float(mean_se(terms, model.clusters_))
    z = float(stats.norm.ppf(1 - alpha / 2))
    return {"auuc": value, "se": se, "ci_low": value - z * se, "ci_high": value + z * se,
            "ate": float(psi.mean()), "n": n}


def auuc_table(model: EffectModel, alpha: float = 0.05) -> pd.DataFrame:
    """:func:`auuc` for every (treatment, outcome): one row each."""
    spec = model.spec_
    rows = []
    for k in range(1, spec.n_treatments):
        for m, name in enumerate(spec.outcome_names):
            rows.append({"treatment": spec.arms[k], "outcome": name,
                         **auuc(model, k, m, alpha)})
    return pd.DataFrame(rows)
