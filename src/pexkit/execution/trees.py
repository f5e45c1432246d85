"""Policy trees on a Dask cluster: histograms built where the rows live, summed.

The search of :mod:`pexkit.explain.policytree` asks its rows only for sums
(:func:`~pexkit.explain.policytree.path_stats`: reward totals and histograms of
the rows on a path of splits). Here each part computes them on its own rows,
a worker adds them up, and the client receives one small array per question:
a (pairs, bins, bins, actions) histogram table at most. The bin edges are
placed on the single process's fixed-seed sample of at most 200,000 rows
(gathered; a bounded sample, never the log), so the tree is the single
process's tree: the same edges, histograms and search, summed in another order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError
from pexkit.explain.policytree import (
    NOT_FINITE,
    Path,
    PolicyTree,
    bin_codes,
    bin_edges,
    check_tree_inputs,
    grow,
    path_stats,
    sample_rows,
    tree_names,
)

__all__ = ["ClusterRows", "fit_policy_tree_on_cluster", "fit_tree_on_parts", "gather_rows"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _summed(*arrays: FloatArray) -> FloatArray:
    out = np.array(arrays[0], dtype=np.float64, copy=True)
    for a in arrays[1:]:
        out += a
    return out


REDUCE_FAN_IN = 8  # arrays added up per task of the reduction tree


def reduce_sum(client: Any, futures: list[Any]) -> FloatArray:
    """Sum arrays held on the workers, in a tree of tasks (at most ``REDUCE_FAN_IN`` arrays
    meet on one worker); only the total comes to the client."""
    while len(futures) > REDUCE_FAN_IN:
        futures = [client.submit(_summed, *futures[i:i + REDUCE_FAN_IN], pure=False)
                   for i in range(0, len(futures), REDUCE_FAN_IN)]
    out: FloatArray = client.submit(_summed, *futures, pure=False).result()
    return out


class ClusterRows:
    """:class:`~pexkit.explain.policytree.LocalRows` for parts on a cluster.

    ``parts``: futures of ``(codes (p, n_i) uint8, rewards (n_i, K))``.
    """

    def __init__(self, client: Any, parts: list[Any]) -> None:
        self.client = client
        self.parts = parts

    def stats(self, path: Path, what: str, args: Any = None) -> FloatArray:
        futures = self.client.map(_stats_part, self.parts, path=path, what=what, args=args,
                                  pure=False)
        return reduce_sum(self.client, futures)


def _stats_part(part: tuple[Any, FloatArray], path: Path, what: str, args: Any) -> FloatArray:
    return path_stats(part[0], part[1], path, what, args)


# ------------------------------------------------------------------ per part
def _clean(X: FloatArray) -> FloatArray:
    X = np.asarray(X, dtype=np.float64)
    return np.where(np.isnan(X), -np.inf, X)  # missing values go left of every split


def _part_summary(part: tuple[FloatArray, FloatArray]) -> FloatArray:
    X, rewards = part
    out: FloatArray = np.concatenate([
        [float(X.shape[0]), float(rewards.shape[1]), float(X.shape[1])],
        np.isnan(np.asarray(X, dtype=np.float64)).any(axis=0).astype(np.float64),
        [float(np.isfinite(rewards).all())],
    ])
    return out


def _take(part: tuple[FloatArray, ...], local: IntArray | None) -> tuple[FloatArray, ...]:
    return part if local is None else tuple(a[local] for a in part)


def gather_rows(client: Any, parts: list[Any], sizes: Sequence[int], rows: IntArray | None
                ) -> tuple[FloatArray, ...]:
    """The arrays of ``parts`` (``sizes`` rows each) at the global ``rows`` (sorted; None:
    every row), concatenated in row order: for bounded samples, never a whole log."""
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    locals_: list[IntArray | None] = []
    for i in range(len(parts)):
        if rows is None:
            locals_.append(None)
        else:
            lo, hi = np.searchsorted(rows, [starts[i], starts[i + 1]])
            locals_.append(rows[lo:hi] - starts[i])
    pieces = client.gather([
        client.submit(_take, part, local, pure=False)
        for part, local in zip(parts, locals_, strict=True)
    ])
    return tuple(np.concatenate(arrays) for arrays in zip(*pieces, strict=True))


def _codes_part(part: tuple[FloatArray, FloatArray], edges: list[FloatArray]
                ) -> tuple[NDArray[np.uint8], FloatArray]:
    return bin_codes(_clean(part[0]), edges), np.ascontiguousarray(part[1], dtype=np.float64)


# -------------------------------------------------------------------- fitting
def fit_tree_on_parts(
    client: Any, parts: list[Any], depth: int, *, min_leaf_share: float = 0.0,
    max_bins: int = 64, feature_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    categories: Mapping[str, Sequence[Any]] | None = None,
) -> PolicyTree:
    """:func:`~pexkit.fit_policy_tree` on ``parts``: futures of ``(X_i, rewards_i)``, in row order."""
    summaries = np.asarray(client.gather(client.map(_part_summary, parts, pure=False)))
    sizes = summaries[:, 0].astype(np.int64)
    n = int(sizes.sum())
    widths = {int(v) for v in summaries[:, 1]} | {-1}
    p = int(summaries[0, 2])
    if len(widths) != 2 or len({int(v) for v in summaries[:, 2]}) != 1:
        raise InvalidParameterError(
            "every part of 'X' must have the same columns and every part of 'rewards' the "
            "same actions; rechunk the arrays so that only their rows are split."
        )
    K = int(summaries[0, 1])
    check_tree_inputs((n, p), (n, K))
    if not summaries[:, -1].all():
        raise InvalidParameterError(NOT_FINITE)
    names, actions = tree_names((n, p), (n, K), feature_names, action_names)
    missing = [names[j] for j in np.flatnonzero(summaries[:, 3:3 + p].any(axis=0))]
    sample = gather_rows(client, parts, sizes.tolist(), sample_rows(n))[0]
    edges = bin_edges(_clean(sample), max_bins)
    coded = client.map(_codes_part, parts, edges=edges, pure=False)
    try:
        return grow(ClusterRows(client, coded), edges, n, depth, min_leaf_share, names, actions,
                    categories, missing)
    finally:
        client.cancel(coded)


def _pair(x: FloatArray, r: FloatArray) -> tuple[FloatArray, FloatArray]:
    return x, r


def fit_policy_tree_on_cluster(
    X: Any, rewards: Any, depth: int, **kwargs: Any
) -> PolicyTree:
    """:func:`~pexkit.fit_policy_tree` on dask arrays, on the client's cluster."""
    import dask.array
    from distributed import get_client

    da: Any = dask.array
    X, rewards = da.asarray(X), da.asarray(rewards)
    if X.ndim != 2 or rewards.ndim != 2 or X.shape[0] != rewards.shape[0]:
        check_tree_inputs(X.shape, rewards.shape)
    X = X.rechunk({1: -1})
    rewards = rewards.rechunk((X.chunks[0], -1))
    client: Any = get_client()
    xs = client.compute(list(X.to_delayed().ravel()))
    rs = client.compute(list(rewards.to_delayed().ravel()))
    parts = client.map(_pair, xs, rs, pure=False)
    try:
        return fit_tree_on_parts(client, parts, depth, **kwargs)
    finally:
        client.cancel([*parts, *xs, *rs])
