"""Cross-fitted outcome models mu_{k,m}(x) and the doubly robust scores built on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit._progress import progress_bar
from pexkit.effects.boosting import fit_many, predict_many

__all__ = [
    "CrossFittedOutcomes",
    "doubly_robust_scores",
    "fit_outcome_models",
    "fit_pair_models",
    "make_folds",
    "observed_weights",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def make_folds(
    treatment: IntArray, n_folds: int, seed: int, clusters: IntArray | None = None
) -> IntArray:
    """Assign each row a fold in ``0..n_folds-1``, stratified by arm.

    With ``clusters`` (codes ``0..G-1``, one arm per cluster) whole clusters
    are assigned, so no cluster is split between fitting and held-out rows.
    """
    rng = np.random.default_rng(seed)
    folds = np.empty(treatment.shape[0], dtype=np.int64)
    if clusters is not None:
        G = int(clusters.max()) + 1
        first = np.unique(clusters, return_index=True)[1]
        arm_of = np.full(G, -1, dtype=np.int64)
        arm_of[clusters[first]] = treatment[first]
        of_cluster = np.zeros(G, dtype=np.int64)
        for k in np.unique(arm_of[arm_of >= 0]):
            members = np.flatnonzero(arm_of == k)
            rng.shuffle(members)
            of_cluster[members] = np.arange(members.shape[0]) % n_folds
        folds[:] = of_cluster[clusters]
        return folds
    for k in np.unique(treatment):
        rows = np.flatnonzero(treatment == k)
        rng.shuffle(rows)
        folds[rows] = np.arange(rows.shape[0]) % n_folds
    return folds


def doubly_robust_scores(
    mu: FloatArray, treatment: IntArray, propensity: FloatArray, outcomes: FloatArray,
    observation: FloatArray | None = None,
) -> FloatArray:
    r"""Doubly robust scores G of shape (n_units, n_treatments, n_outcomes).

    Notes
    -----
    .. math:: G_{ikm} = \mu_{km}(x_i) + \frac{1\{T_i = k\}}{e_k(x_i)} (Y_{im} - \mu_{km}(x_i))

    Only the logged arm's propensity enters, so ``propensity`` is P(T_i | x_i).
    Missing outcomes (NaN, ``missing: drop``): see :func:`observed_weights`
    (``observation``: each row's probability of its outcomes being observed).
    """
    n = treatment.shape[0]
    scores = mu.copy()
    rows = np.arange(n)
    logged = mu[rows, treatment, :]
    filled, weight = observed_weights(treatment, outcomes, mu.shape[1], observation)
    if weight is None:
        scores[rows, treatment, :] = logged + (outcomes - logged) / propensity[:, None]
    else:
        residual = np.where(weight > 0, filled - logged, 0.0) * weight
        scores[rows, treatment, :] = logged + residual / propensity[:, None]
    return scores


def observed_weights(
    treatment: IntArray, outcomes: FloatArray, n_treatments: int,
    observation: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray | None]:
    r"""Outcomes with missing values as 0, and the attrition weights ``R_im / r_im``.

    ``missing: drop`` outcomes are NaN where they were not observed. The doubly
    robust score then corrects the outcome model only on observed rows, each
    weighted by one over its arm's observed share ``r_km``:

    .. math:: G_{ikm} = \mu_{km}(x_i) + \frac{1\{T_i = k\} R_{im}}{e_k(x_i)\, r_{km}}
              (Y_{im} - \mu_{km}(x_i))

    ``r`` is ``observation[i, m]``, each row's cross-fitted probability of the
    outcome being observed given its features and arm
    (:func:`pexkit.data.propensity.estimate_observation`, which
    :meth:`LoggedData.from_frame` fits), or else the arm's observed share. Like
    every DR score it is unbiased when values are missing at random given the
    features and either the outcome model (fitted on the observed rows) or the
    observation model is right. The weights are None when nothing is missing.
    """
    observed = ~np.isnan(outcomes)
    if observed.all():
        return outcomes, None
    if observation is not None:
        weight = np.where(observed, 1.0 / np.maximum(observation, 1e-12), 0.0)
        return np.where(observed, outcomes, 0.0), np.asarray(weight, dtype=np.float64)
    n_out = outcomes.shape[1]
    share = np.ones((n_treatments, n_out))
    for k in range(n_treatments):
        in_arm = treatment == k
        if in_arm.any():
            share[k] = np.maximum(observed[in_arm].mean(axis=0), 1e-12)
    weight = observed / share[treatment]
    return np.where(observed, outcomes, 0.0), np.asarray(weight, dtype=np.float64)


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
    binary: tuple[bool, ...] = (),
) -> CrossFittedOutcomes:
    """Fit mu_{k,m} by K-fold cross-fitting: one model per (fold, arm, outcome).

    Outcomes flagged in ``binary`` get a classification objective (probabilities).
    """
    n_folds = int(folds.max()) + 1
    n, n_outcomes = outcomes.shape
    keys = [
        (f, k, m)
        for f in range(n_folds)
        for k in range(n_treatments)
        for m in range(n_outcomes)
    ]
    tasks = []
    for f, k, m in keys:
        rows = np.flatnonzero((folds != f) & (treatment == k))
        tasks.append((rows, outcomes[rows, m], seed + 7919 * f + 31 * k + m,
                      bool(binary and binary[m])))
    with progress_bar(len(tasks), "outcome models", progress) as bar:
        fitted = fit_many(learner, tasks, bar.advance)
    models: list[list[list[Any]]] = [
        [[None] * n_outcomes for _ in range(n_treatments)] for _ in range(n_folds)
    ]
    for (f, k, m), model in zip(keys, fitted, strict=True):
        models[f][k][m] = model
    mu = np.zeros((n, n_treatments, n_outcomes))
    held = [np.flatnonzero(folds == f) for f in range(n_folds)]
    X_held = [X[rows] for rows in held]
    preds = predict_many(learner, [(models[f][k][m], X_held[f]) for f, k, m in keys])
    for (f, k, m), pred in zip(keys, preds, strict=True):
        mu[held[f], k, m] = pred
    return CrossFittedOutcomes(mu, folds, models)


def fit_pair_models(
    learner: Any,
    treatment: IntArray,
    outcomes: FloatArray,
    folds: IntArray,
    n_treatments: int,
    seed: int,
    bar: Any,
    binary: tuple[bool, ...] = (),
) -> dict[tuple[int, int], list[list[Any]]]:
    """Outcome models that exclude two folds, ``models[(f, g)][k][m]`` for f < g.

    A second stage that is held out on fold f needs targets on the other folds
    built by outcome models that saw neither fold f nor the target's own fold g;
    these are those models (they need ``n_folds >= 3``).
    """
    n_folds = int(folds.max()) + 1
    n_outcomes = outcomes.shape[1]
    keys = [
        (f, g, k, m)
        for f in range(n_folds)
        for g in range(f + 1, n_folds)
        for k in range(n_treatments)
        for m in range(n_outcomes)
    ]
    tasks = []
    for f, g, k, m in keys:
        rows = np.flatnonzero((folds != f) & (folds != g) & (treatment == k))
        tasks.append((rows, outcomes[rows, m], seed + 104729 + 7919 * f + 613 * g + 31 * k + m,
                      bool(binary and binary[m])))
    fitted = fit_many(learner, tasks, bar.advance)
    pairs: dict[tuple[int, int], list[list[Any]]] = {}
    for (f, g, k, m), model in zip(keys, fitted, strict=True):
        per_arm = pairs.setdefault(
            (f, g), [[None] * n_outcomes for _ in range(n_treatments)]
        )
        per_arm[k][m] = model
    return pairs
