"""Estimated propensities for logs that were not uniformly randomized (``propensity: estimate``).

When the log does not carry P(logged arm | x) and the arms were not assigned at
fixed shares (a rollout by region, a bandit whose probabilities were lost),
DR and IPS need an estimate. Here a LightGBM multiclass model of the arm given
the features is cross-fitted (each unit's propensity comes from a model that
never saw it), so the weights are not fitted to the same units they weigh.
Overlap diagnostics say when not to trust the result: units whose logged arm
some arm under 5% estimated probability (lack of overlap), the smallest
propensity of a logged arm, and the effective
sample size per arm (``(sum w)^2 / sum w^2`` with ``w = 1 / e``). Propensities
are clipped at ``CLIP`` (the diagnostics count how many).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import OverlapWarning

__all__ = ["CLIP", "ESTIMATE", "OBSERVED_CLIP", "estimate_observation", "estimate_propensity"]

#: the spec value of ``propensity`` that asks for an estimate
ESTIMATE = "estimate"
#: propensities below this are raised to it (weights above 1 / CLIP are capped)
CLIP = 0.01
_PARAMS = {"objective": "multiclass", "num_leaves": 15, "learning_rate": 0.05,
           "min_data_in_leaf": 50, "verbose": -1, "num_threads": 0, "seed": 0}


def estimate_propensity(
    X: NDArray[np.float64], treatment: NDArray[np.int64], arms: tuple[str, ...],
    categorical: list[int], n_folds: int = 5, rounds: int = 100, seed: int = 0,
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Cross-fitted P(logged arm | x) and overlap diagnostics.

    Returns
    -------
    propensity : ndarray of shape (n,)
        Clipped below at :data:`CLIP`.
    diagnostics : dict
        ``method``, ``min`` (of the logged arm's), ``share_below_0.05`` (units
        with some arm under 5%), ``n_clipped`` and ``effective_sample_size`` per arm.
    """
    import lightgbm as lgb

    n, K = treatment.shape[0], len(arms)
    rng = np.random.default_rng(seed)
    folds = np.empty(n, dtype=np.int64)
    for k in range(K):
        rows = np.flatnonzero(treatment == k)
        rng.shuffle(rows)
        folds[rows] = np.arange(rows.shape[0]) % n_folds
    probs = np.empty((n, K))
    params = {**_PARAMS, "num_class": K, "seed": seed}
    for f in range(n_folds):
        train = folds != f
        data = lgb.Dataset(X[train], label=treatment[train], categorical_feature=categorical,
                           params={"verbose": -1}, free_raw_data=False)
        booster = lgb.train(params, data, num_boost_round=rounds)
        probs[~train] = booster.predict(X[~train])
    logged = probs[np.arange(n), treatment]
    clipped = np.maximum(logged, CLIP)
    ess = {}
    for k, arm in enumerate(arms):
        w = 1.0 / clipped[treatment == k]
        ess[arm] = float(w.sum() ** 2 / (w**2).sum()) if w.size else 0.0
    below = float((probs.min(axis=1) < 0.05).mean())  # units some arm could hardly reach
    info: dict[str, Any] = {
        "method": f"LightGBM multiclass, {n_folds}-fold cross-fitted, clipped at {CLIP}",
        "min": float(logged.min()),
        "share_below_0.05": below,
        "n_clipped": int((logged < CLIP).sum()),
        "effective_sample_size": ess,
    }
    if below > 0.10:
        warnings.warn(
            f"propensity: estimate: {below:.1%} of units had under 5% estimated probability "
            f"of some arm (smallest propensity of a logged arm {info['min']:.3g}); the few "
            "such units that got that arm dominate IPS and DR. Check overlap: restrict to "
            "units that could get every arm, or log the assignment probabilities.",
            OverlapWarning, stacklevel=3,
        )
    return clipped, info


#: observation probabilities below this are raised to it (attrition weights capped at 20)
OBSERVED_CLIP = 0.05


def estimate_observation(
    X: NDArray[np.float64], treatment: NDArray[np.int64], observed: NDArray[np.bool_],
    categorical: list[int], n_folds: int = 5, rounds: int = 100, seed: int = 0,
) -> NDArray[np.float64]:
    """Cross-fitted P(outcome observed | x, arm) for an outcome with ``missing: drop``.

    A LightGBM classifier of the observed indicator on the features and the
    arm (5 folds, stratified by arm and indicator); clipped below at
    :data:`OBSERVED_CLIP`. The doubly robust scores weight each observed
    residual by one over it, so values missing at random given the features
    (attrition that depends on them) stay unbiased even where the outcome model
    is off.
    """
    import lightgbm as lgb

    n = treatment.shape[0]
    rng = np.random.default_rng(seed)
    folds = np.empty(n, dtype=np.int64)
    for group in np.unique(treatment * 2 + observed.astype(np.int64)):
        rows = np.flatnonzero(treatment * 2 + observed == group)
        rng.shuffle(rows)
        folds[rows] = np.arange(rows.shape[0]) % n_folds
    Xa = np.column_stack([X, treatment.astype(np.float64)])
    cats = [*categorical, X.shape[1]]
    params = {**_PARAMS, "objective": "binary", "seed": seed}
    params.pop("num_class", None)
    out = np.empty(n)
    for f in range(n_folds):
        train = folds != f
        data = lgb.Dataset(Xa[train], label=observed[train].astype(np.float64),
                           categorical_feature=cats, params={"verbose": -1}, free_raw_data=False)
        booster = lgb.train(params, data, num_boost_round=rounds)
        out[~train] = booster.predict(Xa[~train])
    return np.maximum(out, OBSERVED_CLIP)
