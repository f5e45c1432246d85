"""Diagnostics of effect models against DR pseudo-outcomes: calibration and uplift curves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pexkit._stats import mean_se
from pexkit.effects.model import EffectModel

__all__ = ["calibration", "uplift_curve"]


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
