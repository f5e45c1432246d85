"""Cross-fitted outcome models mu_{k,m}(x) and the doubly robust scores built on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit._progress import progress_bar

__all__ = [
    "CrossFittedOutcomes",
    "doubly_robust_scores",
    "fit_outcome_models",
    "fit_pair_models",
    "make_folds",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def make_folds(treatment: IntArray, n_folds: int, seed: int) -> IntArray:
    """Assign each row a fold in ``0..n_folds-1``, stratified by arm."""
    rng = np.random.default_rng(seed)
    folds = np.empty(treatment.shape[0], dtype=np.int64)
    for k in np.unique(treatment):
        rows = np.flatnonzero(treatment == k)
        rng.shuffle(rows)
        folds[rows] = np.arange(rows.shape[0]) % n_folds
    return folds


def doubly_robust_scores(
    mu: FloatArray, treatment: IntArray, propensity: FloatArray, outcomes: FloatArray
) -> FloatArray:
    r"""Doubly robust scores G of shape (n_units, n_treatments, n_outcomes).

    Notes
    -----
    .. math:: G_{ikm} = \mu_{km}(x_i) + \frac{1\{T_i = k\}}{e_k(x_i)} (Y_{im} - \mu_{km}(x_i))

    Only the logged arm's propensity enters, so ``propensity`` is P(T_i | x_i).
    """
    n = treatment.shape[0]
    scores = mu.copy()
    rows = np.arange(n)
    logged = mu[rows, treatment, :]
    scores[rows, treatment, :] = logged + (outcomes - logged) / propensity[:, None]
    return scores


@dataclass
class CrossFittedOutcomes:
    """Out-of-fold outcome predictions and the fold models behind them.

    Attributes
    ----------
    mu_oof : ndarray of shape (n_units, n_treatments, n_outcomes)
        ``mu_{k,m}(x_i)`` from the fold model that did not see row i.
    folds : ndarray of shape (n_units,)
    models : list
        ``models[f][k][m]``, fitted without fold f.
    """

    mu_oof: FloatArray
    folds: IntArray
    models: list[list[list[Any]]]


def fit_outcome_models(
    learner: Any,
    X: FloatArray,
    treatment: IntArray,
    outcomes: FloatArray,
    folds: IntArray,
    n_treatments: int,
    seed: int,
    progress: bool | None = None,
) -> CrossFittedOutcomes:
    """Fit mu_{k,m} by K-fold cross-fitting: one model per (fold, arm, outcome)."""
    n_folds = int(folds.max()) + 1
    n, n_outcomes = outcomes.shape
    mu = np.zeros((n, n_treatments, n_outcomes))
    models: list[list[list[Any]]] = []
    total = n_folds * n_treatments * n_outcomes
    with progress_bar(total, "outcome models", progress) as bar:
        for f in range(n_folds):
            held = np.flatnonzero(folds == f)
            X_held = X[held]
            per_arm: list[list[Any]] = []
            for k in range(n_treatments):
                rows = np.flatnonzero((folds != f) & (treatment == k))
                per_outcome = []
                for m in range(n_outcomes):
                    model = learner.fit(rows, outcomes[rows, m], seed + 7919 * f + 31 * k + m)
                    mu[held, k, m] = learner.predict(model, X_held)
                    per_outcome.append(model)
                    bar.advance()
                per_arm.append(per_outcome)
            models.append(per_arm)
    return CrossFittedOutcomes(mu, folds, models)


def fit_pair_models(
    learner: Any,
    treatment: IntArray,
    outcomes: FloatArray,
    folds: IntArray,
    n_treatments: int,
    seed: int,
    bar: Any,
) -> dict[tuple[int, int], list[list[Any]]]:
    """Outcome models that exclude two folds, ``models[(f, g)][k][m]`` for f < g.

    A second stage that is held out on fold f needs targets on the other folds
    built by outcome models that saw neither fold f nor the target's own fold g;
    these are those models (they need ``n_folds >= 3``).
    """
    n_folds = int(folds.max()) + 1
    n_outcomes = outcomes.shape[1]
    pairs: dict[tuple[int, int], list[list[Any]]] = {}
    for f in range(n_folds):
        for g in range(f + 1, n_folds):
            keep = (folds != f) & (folds != g)
            per_arm: list[list[Any]] = []
            for k in range(n_treatments):
                rows = np.flatnonzero(keep & (treatment == k))
                per_outcome = []
                for m in range(n_outcomes):
                    s = seed + 104729 + 7919 * f + 613 * g + 31 * k + m
                    per_outcome.append(learner.fit(rows, outcomes[rows, m], s))
                    bar.advance()
                per_arm.append(per_outcome)
            pairs[(f, g)] = per_arm
    return pairs
