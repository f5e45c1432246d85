"""Explanations on a Dask cluster: distilled policies, effect trees and segments.

Each runs on the log a model was fitted on (a :class:`~pexkit.execution.dask.DistributedLog`),
in the same steps as one process, and moves only what is bounded or small:

- trees searched on every row (the distilled policy, its per-fold trees) sum
  histograms over the parts (:mod:`pexkit.execution.trees`);
- trees the single process fits on a random sample of at most 200,000 rows
  (the fidelity trees, effect trees) are fitted here on the same rows,
  gathered from the parts;
- everything measured on every row (fidelity, value kept, lifts, R^2, the
  segments' DR effects) is a sum of per-part moments.

The answers are the single process's, up to the order of floating-point sums.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidDataError, InvalidParameterError
from pexkit.execution.trees import fit_tree_on_parts, gather_rows, reduce_sum

if TYPE_CHECKING:
    from pexkit.effects.model import EffectModel
    from pexkit.execution.dask import Block, DistributedFit, DistributedLog
    from pexkit.explain.distill import DistilledPolicy
    from pexkit.explain.effecttree import EffectTree
    from pexkit.explain.segments import Segments
    from pexkit.policy.linear import LinearPolicy

__all__ = ["distill_on_cluster", "effect_tree_on_cluster", "predict_on_cluster",
           "segments_on_cluster"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _fit_of(model: EffectModel, data: Any, what: str) -> DistributedFit:
    fit: DistributedFit | None = getattr(model, "distributed_", None)
    if fit is None or fit.data is not data:
        raise InvalidParameterError(
            f"on a cluster, {what} runs on the log the model was fitted on; pass the same "
            "DistributedLog as model.fit(data) was given (or data=None). For held-out units, "
            "load them with LoggedData.from_frame."
        )
    return fit


def _starts(data: DistributedLog) -> IntArray:
    return np.concatenate([[0], np.cumsum(data.part_sizes)]).astype(np.int64)


def _moments(terms: FloatArray) -> FloatArray:
    """Row count, sums and cross-products of the columns of ``terms`` (n, q): (1 + q + q*q,)."""
    out: FloatArray = np.concatenate([[float(terms.shape[0])], terms.sum(axis=0),
                                      (terms.T @ terms).ravel()])
    return out


def _mean_cov(sums: FloatArray, q: int) -> tuple[int, FloatArray, FloatArray]:
    n = int(round(sums[0]))
    mean = sums[1:1 + q] / n
    cross = sums[1 + q:].reshape(q, q)
    cov = (cross - n * np.outer(mean, mean)) / max(n - 1, 1)
    return n, mean, cov


# ------------------------------------------------------------------- distill
def _utility_part(block: Block, policy: LinearPolicy) -> tuple[FloatArray, FloatArray]:
    assert block.effects is not None
    return block.X, policy.utilities(block.effects)


def _fold_part(part: tuple[FloatArray, FloatArray], block: Block, fold: int
               ) -> tuple[FloatArray, FloatArray]:
    assert block.folds is not None
    rows = block.folds == fold
    return part[0][rows], part[1][rows]


def _fold_counts(block: Block, n_folds: int) -> FloatArray:
    assert block.folds is not None
    out: FloatArray = np.bincount(block.folds, minlength=n_folds).astype(np.float64)
    return out


def _distill_part(
    part: tuple[FloatArray, FloatArray], block: Block, split: NDArray[np.int8], tree: Any,
    held_trees: list[Any], fold_trees: dict[int, Any], sw: FloatArray,
) -> FloatArray:
    X, utilities = part
    assert block.scores is not None and block.folds is not None
    n_treat = utilities.shape[1]
    black = np.argmax(utilities, axis=1)
    chosen = tree.choose(X)
    held = chosen.copy()
    for s, held_tree in enumerate(held_trees):
        rows = np.flatnonzero(split == s)
        if held_tree is not None and rows.shape[0]:
            held[rows] = held_tree.choose(X[rows])
    scored = np.empty(X.shape[0], dtype=np.int64)
    for f, fold_tree in fold_trees.items():
        rows = np.flatnonzero(block.folds == f)
        if rows.shape[0]:
            scored[rows] = fold_tree.choose(X[rows])
    G = block.scores
    gain = (G - G[:, :1, :]) @ sw  # (n, K)
    idx = np.arange(X.shape[0])
    terms = np.column_stack([gain[idx, scored], gain[idx, black], gain])
    counts = np.bincount(chosen, minlength=n_treat).astype(np.float64)
    return np.concatenate([[float(np.sum(held == black))], counts, _moments(terms)])


def distill_on_cluster(
    policy: LinearPolicy, model: EffectModel, data: Any, max_depth: int,
    min_leaf_share: float, max_bins: int, random_state: int,
) -> DistilledPolicy:
    """:func:`~pexkit.distill` on the cluster (see the module docstring)."""
    from pexkit.explain.distill import (
        FIDELITY_MAX_FIT,
        FIDELITY_SPLITS,
        distilled_policy,
        fieller_moments,
        lift_moments,
    )
    from pexkit.explain.policytree import fit_policy_tree

    fit = _fit_of(model, data, "distill")
    client: Any = data.client
    spec = model.spec_
    kw: dict[str, Any] = {
        "min_leaf_share": min_leaf_share, "max_bins": max_bins,
        "feature_names": list(spec.features), "action_names": list(spec.arms),
        "categories": model.encoder_.categories,
    }
    parts = client.map(_utility_part, fit.blocks, policy=policy, pure=False)
    try:
        tree = fit_tree_on_parts(client, parts, int(max_depth), **kw)
        n = data.n_units
        starts = _starts(data)
        # fidelity out of sample: the single process's random split and fitting samples
        rng = np.random.default_rng(random_state)
        split = rng.permutation(n) % FIDELITY_SPLITS
        held_trees: list[Any] = []
        for s in range(FIDELITY_SPLITS):
            fit_rows = np.flatnonzero(split != s)
            if fit_rows.shape[0] > FIDELITY_MAX_FIT:
                fit_rows = np.sort(rng.choice(fit_rows, FIDELITY_MAX_FIT, replace=False))
            if np.any(split == s) and fit_rows.shape[0]:
                Xs, Us = gather_rows(client, parts, data.part_sizes, fit_rows)
                held_trees.append(fit_policy_tree(Xs, Us, int(max_depth), **kw))
            else:
                held_trees.append(None)
        splits = [split[starts[i]:starts[i + 1]].astype(np.int8) for i in range(len(parts))]
        del split
        # value terms: each fold's units scored by a tree fitted on that fold alone
        fold_n = reduce_sum(client, client.map(_fold_counts, fit.blocks, n_folds=model.n_folds,
                                                pure=False))
        fold_trees = {
            f: fit_tree_on_parts(
                client, client.map(_fold_part, parts, fit.blocks, fold=f, pure=False),
                int(max_depth), **kw,
            )
            for f in np.flatnonzero(fold_n > 0).tolist()
        }
        sums = reduce_sum(client, [
            client.submit(_distill_part, part, block, sp, tree, held_trees, fold_trees,
                          policy.signed_weights(), pure=False)
            for part, block, sp in zip(parts, fit.blocks, splits, strict=True)
        ])
    finally:
        client.cancel(parts)
    K = spec.n_treatments
    agree = float(sums[0])
    shares = sums[1:1 + K] / n
    q = 2 + K
    _, mean, cov = _mean_cov(sums[1 + K:], q)
    best = int(np.argmax(mean[2:]))
    single = 2 + best

    def combo(weights: FloatArray) -> tuple[float, float]:
        return float(weights @ mean), float(weights @ cov @ weights)

    def pair(u: FloatArray, v: FloatArray) -> tuple[float, float, FloatArray]:
        m = np.array([u @ mean, v @ mean])
        c = np.array([[u @ cov @ u, u @ cov @ v], [v @ cov @ u, v @ cov @ v]])
        return float(m[0]), float(m[1]), c

    e = np.eye(q)
    return distilled_policy(
        tree, model, policy, n, agree, best,
        fieller_moments(n, *pair(e[0], e[1])),
        fieller_moments(n, *pair(e[0] - e[single], e[1] - e[single])),
        tuple(lift_moments(n, *combo(v)) for v in (e[0], e[1], e[single])),  # type: ignore[arg-type]
        shares, "cross-fitted",
    )


# -------------------------------------------------------------- effect trees
def _effect_part(block: Block, fold: int | None) -> tuple[FloatArray, FloatArray]:
    assert block.effects is not None and block.folds is not None
    n = block.X.shape[0]
    Y = block.effects[:, 1:, :].reshape(n, -1)
    if fold is None:
        return block.X, Y
    rows = block.folds == fold
    return block.X[rows], Y[rows]


def _y_sums(part: tuple[FloatArray, FloatArray]) -> FloatArray:
    X, Y = part
    out: FloatArray = np.concatenate([[float(Y.shape[0])], Y.sum(axis=0), (Y**2).sum(axis=0),
                                      np.isnan(X).any(axis=0).astype(np.float64)])
    return out


def _sse_part(part: tuple[FloatArray, FloatArray], estimator: Any, center: FloatArray,
              scale: FloatArray) -> FloatArray:
    from pexkit.explain.effecttree import effect_tree_sums

    return effect_tree_sums(part[0], part[1], estimator, center, scale)


def effect_tree_on_cluster(
    model: EffectModel, data: Any, max_depth: int, min_share: float, *,
    fold: int | None = None, max_rows: int | None = 200_000, random_state: int = 0,
    source: str = "",
) -> EffectTree:
    """:func:`~pexkit.explain.effecttree.fit_effect_tree` on the out-of-fold effects of
    every unit (or of cross-fitting fold ``fold``): fitted on the single process's sample."""
    from pexkit.explain.effecttree import effect_tree_from

    fit = _fit_of(model, data, "an effect tree")
    client: Any = data.client
    parts = client.map(_effect_part, fit.blocks, fold=fold, pure=False)
    try:
        sizes = [int(v) for v in client.gather(client.map(_row_count, parts, pure=False))]
        totals = reduce_sum(client, client.map(_y_sums, parts, pure=False))
        n = int(round(totals[0]))
        q = (model.spec_.n_treatments - 1) * model.spec_.n_outcomes
        mean = totals[1:1 + q] / n
        var = np.maximum(totals[1 + q:1 + 2 * q] / n - mean**2, 0.0)
        rows = np.arange(n)
        if max_rows is not None and n > max_rows:
            rows = np.sort(np.random.default_rng(random_state).choice(n, max_rows, replace=False))
        X, Y = gather_rows(client, parts, sizes, rows)
        missing = np.asarray(totals[1 + 2 * q:] > 0)
        return effect_tree_from(
            model, X, Y, mean, np.sqrt(var), n, max_depth, min_share, random_state, source,
            missing,
            lambda est, center, scale: reduce_sum(client, client.map(
                _sse_part, parts, estimator=est, center=center, scale=scale, pure=False)),
        )
    finally:
        client.cancel(parts)


def _row_count(part: tuple[FloatArray, ...]) -> int:
    return int(part[0].shape[0])


# ------------------------------------------------------------------ segments
def _segment_part(block: Block, fold: int | None, estimator: Any, leaf_number: IntArray
                  ) -> FloatArray:
    from pexkit.explain.segments import leaf_sums

    assert block.scores is not None and block.folds is not None
    rows = np.arange(block.X.shape[0]) if fold is None else np.flatnonzero(block.folds == fold)
    leaf = leaf_number[np.asarray(estimator.apply(block.X[rows]), dtype=np.int64)]
    return leaf_sums(leaf, block.scores[rows], int(leaf_number.max()) + 1)


def _fold_rows(block: Block, fold: int, offset: int) -> IntArray:
    assert block.folds is not None
    out: IntArray = np.flatnonzero(block.folds == fold) + offset
    return out


def segments_on_cluster(
    model: EffectModel, data: Any, tree: EffectTree | None, max_depth: int,
    min_share: float, alpha: float, random_state: int,
) -> Segments:
    """:func:`~pexkit.segments` on the training log: the tree found and the segments
    estimated on the largest cross-fitting fold, as in one process."""
    from pexkit.explain.segments import GIVEN_TREE_METHOD, fold_method, segments_from_sums

    fit = _fit_of(model, data, "segments")
    client: Any = data.client
    fold_n = reduce_sum(client, client.map(_fold_counts, fit.blocks, n_folds=model.n_folds,
                                            pure=False))
    starts = _starts(data)
    if tree is None:
        largest = int(np.argmax(fold_n))
        fold: int | None = largest
        tree = effect_tree_on_cluster(
            model, data, int(max_depth), float(min_share), fold=fold,
            random_state=random_state, source=f"out-of-fold effects of fold {fold}",
        )
        rows = np.concatenate(client.gather([
            client.submit(_fold_rows, b, fold, int(starts[i]), pure=False)
            for i, b in enumerate(fit.blocks)
        ]))
        honest = True
        method = fold_method(largest, rows.shape[0], data.n_units)
    else:
        fold = None
        rows = np.arange(data.n_units)
        honest = False
        method = GIVEN_TREE_METHOD
    # the tree's estimator and leaf numbers travel (the tree itself refers to the model)
    sums = reduce_sum(client, client.map(_segment_part, fit.blocks, fold=fold,
                                         estimator=tree.estimator,
                                         leaf_number=tree._leaf_number, pure=False))
    return segments_from_sums(tree, sums, model.spec_, alpha, honest, method, rows)


# ---------------------------------------------------------------- predictions
def _predict_part(block: Block, terms: dict[tuple[int, int], Any], shape: tuple[int, int]
                  ) -> FloatArray:
    from pexkit.effects.learners.base import predict_terms

    tau = np.zeros((block.X.shape[0], *shape))
    for (k, m), values in predict_terms(terms, block.X).items():
        tau[:, k, m] = values
    return tau


def predict_on_cluster(model: EffectModel, data: DistributedLog) -> Any:
    """``model.predict(data)`` as a dask array (n, K, M): each part predicted where it lives."""
    import dask.array

    client: Any = data.client
    da: Any = dask.array
    spec = model.spec_
    if data.spec.features != spec.features or data.encoder.categories != (
        model.encoder_.categories
    ):
        raise InvalidDataError(
            "'X' (a DistributedLog) must have the model's features and categories; found "
            f"features {list(data.spec.features)} with categories {data.encoder.categories}, "
            f"expected {list(spec.features)} with {model.encoder_.categories}. Read the parts "
            "with the model's spec, or predict a pandas frame."
        )
    cells = [(k, m) for k in range(1, spec.n_treatments) for m in range(spec.n_outcomes)]
    from pexkit.execution.dask import share

    terms = share(client, {c: model.terms(*c) for c in cells})
    futures = client.map(_predict_part, data.blocks, terms=terms,
                         shape=(spec.n_treatments, spec.n_outcomes), pure=False)
    return da.concatenate([
        da.from_delayed(f, shape=(size, spec.n_treatments, spec.n_outcomes), dtype=np.float64)
        for f, size in zip(futures, data.part_sizes, strict=True)
    ])
