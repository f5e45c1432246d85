"""Policy trees on DR scores: shallow if-then rules that maximize summed rewards.

Like R's ``policytree`` (Athey and Wager), but features are first cut into at
most ``max_bins`` quantile bins, and the depth-2 search runs on per-bin reward
histograms: for every root feature j, one compiled pass over the rows builds the
(bins_j x bins_l x K) reward histogram of every feature l at once, and
cumulative sums give every root threshold on j and every child threshold on
every l at once. Depth 1 and 2 are exhaustive over the bin edges (exact when
every distinct value has its own bin); deeper trees grow greedily, a depth-2
search per node. The search asks its rows only for sums (:func:`path_stats`:
reward totals and histograms of the rows on a path of splits), so the same
search runs on a cluster that sums them over its parts.

A split sends ``x <= threshold`` left and ``x > threshold`` right; missing
values (NaN, e.g. unseen categories) go left, at fit time and when choosing.
:meth:`PolicyTree.compile` flattens a tree into arrays for a compiled (numba)
batch ``choose`` that gives the same actions as the plain path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError
from pexkit.explain._rules import condition, describe_path, format_number

__all__ = ["CompiledTree", "PolicyLeaf", "PolicyTree", "fit_policy_tree"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
CodeArray = NDArray[np.uint8]

MAX_BINS = 256  # codes are uint8
BIN_SAMPLE = 200_000  # rows used to place the bin edges of larger data


# --------------------------------------------------------------------- kernels
@njit(parallel=True, cache=True)  # type: ignore[misc]
def _bin_codes(X: FloatArray, edges: FloatArray, n_edges: IntArray) -> CodeArray:
    # code = index of the first edge >= x, clipped to the last bin (a branchless
    # lower bound: the loop length depends on the number of edges only)
    n, p = X.shape
    out = np.empty((p, n), dtype=np.uint8)
    for j in prange(p):
        e = edges[j]
        m = n_edges[j]
        for i in range(n):
            x = X[i, j]
            base = 0
            size = m
            while size > 1:
                half = size // 2
                base += half * (e[base + half - 1] < x)
                size -= half
            out[j, i] = base
    return out


@njit(parallel=True, cache=True)  # type: ignore[misc]
def _hist1(codes: CodeArray, rewards: FloatArray, n_bins: int) -> FloatArray:
    p, n = codes.shape
    K = rewards.shape[1]
    out = np.zeros((p, n_bins, K))
    for j in prange(p):
        c = codes[j]
        for i in range(n):
            b = c[i]
            for k in range(K):
                out[j, b, k] += rewards[i, k]
    return out


@njit(parallel=True, cache=True)  # type: ignore[misc]
def _hist2(codes: CodeArray, rewards: FloatArray, j: int, n_bins_j: int, n_bins: int) -> FloatArray:
    # out[l, a, b, k]: summed reward k of the rows in bin a of feature j and bin b of l
    p, n = codes.shape
    K = rewards.shape[1]
    out = np.zeros((p, n_bins_j, n_bins, K))
    cj = codes[j]
    for f in prange(p):
        cf = codes[f]
        for i in range(n):
            a = cj[i]
            b = cf[i]
            for k in range(K):
                out[f, a, b, k] += rewards[i, k]
    return out


@njit(parallel=True, cache=True)  # type: ignore[misc]
def _pair_hist(
    codes: CodeArray, rewards: FloatArray, first: IntArray, second: IntArray, n_bins: int
) -> FloatArray:
    # out[q, a, b, k] for the feature pair q = (first[q], second[q]); (l, j) is the transpose
    n = codes.shape[1]
    K = rewards.shape[1]
    P = first.shape[0]
    out = np.zeros((P, n_bins, n_bins, K))
    for q in prange(P):
        cj = codes[first[q]]
        cl = codes[second[q]]
        for i in range(n):
            a = cj[i]
            b = cl[i]
            for k in range(K):
                out[q, a, b, k] += rewards[i, k]
    return out


@njit(cache=True)  # type: ignore[misc]
def _root_children(
    hist: FloatArray, own: int, n_bins: IntArray
) -> tuple[FloatArray, IntArray, IntArray, FloatArray, IntArray]:
    """Best depth-1 subtree of both children of every root threshold on feature ``own``.

    ``hist[f, a, b, k]``: reward k of the rows in root bin a and bin b of feature
    f. For side s (0 left, 1 right) and root threshold a, returns the best split
    (value, feature, bin) over every feature and threshold, and the best leaf
    (value, action). Ties keep the first feature and threshold.
    """
    p, Bj, B, K = hist.shape
    A = Bj - 1
    split_v = np.full((2, A), -np.inf)
    split_l = np.zeros((2, A), dtype=np.int64)
    split_c = np.zeros((2, A), dtype=np.int64)
    leaf_v = np.full((2, A), -np.inf)
    leaf_k = np.zeros((2, A), dtype=np.int64)
    total = np.zeros((B, K))
    cum = np.zeros((B, K))
    block = np.zeros((B, K))
    whole = np.zeros(K)
    run = np.zeros(K)
    for f in range(p):
        total[:, :] = 0.0
        for a in range(Bj):
            for b in range(B):
                for k in range(K):
                    total[b, k] += hist[f, a, b, k]
        cum[:, :] = 0.0
        for a in range(A):
            for b in range(B):
                for k in range(K):
                    cum[b, k] += hist[f, a, b, k]
            for s in range(2):
                for b in range(B):
                    for k in range(K):
                        block[b, k] = cum[b, k] if s == 0 else total[b, k] - cum[b, k]
                whole[:] = 0.0
                for b in range(B):
                    for k in range(K):
                        whole[k] += block[b, k]
                if f == own:
                    best_k = 0
                    for k in range(1, K):
                        if whole[k] > whole[best_k]:
                            best_k = k
                    leaf_v[s, a] = whole[best_k]
                    leaf_k[s, a] = best_k
                run[:] = 0.0
                for c in range(n_bins[f] - 1):
                    lo = -np.inf
                    hi = -np.inf
                    for k in range(K):
                        run[k] += block[c, k]
                        if run[k] > lo:
                            lo = run[k]
                        if whole[k] - run[k] > hi:
                            hi = whole[k] - run[k]
                    if lo + hi > split_v[s, a]:
                        split_v[s, a] = lo + hi
                        split_l[s, a] = f
                        split_c[s, a] = c
    return split_v, split_l, split_c, leaf_v, leaf_k


@njit(cache=True)  # type: ignore[misc]
def _descend(
    X: Any, feature: IntArray, threshold: FloatArray, left: IntArray, right: IntArray,
    value: IntArray,
) -> IntArray:
    n = X.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        node = 0
        while feature[node] >= 0:
            # not (x > t): NaN goes left, as in the plain path and at fit time
            node = right[node] if X[i, feature[node]] > threshold[node] else left[node]
        out[i] = value[node]
    return out


# ----------------------------------------------------------------- structures
@dataclass
class _Node:
    action: int
    feature: int = -1
    threshold: float = np.nan  # go left when x <= threshold (or x is missing)
    left: _Node | None = None
    right: _Node | None = None
    n: int = 0  # training rows that reach the node
    code: int = -1  # the split's bin (x <= threshold is code <= this), while fitting

    @property
    def is_leaf(self) -> bool:
        return self.left is None


@dataclass(frozen=True)
class PolicyLeaf:
    """One leaf of a policy tree: who (its conditions) gets what (its action).

    Attributes
    ----------
    index : int
        Leaf number, left to right (what :meth:`PolicyTree.apply` returns).
    conditions : list of str
        The path's split conditions, root first.
    action : int
    action_name : str
    n : int
        Training rows in the leaf.
    share : float
        Their share of the training rows.
    """

    index: int
    conditions: list[str]
    action: int
    action_name: str
    n: int
    share: float

    @property
    def rule(self) -> str:
        """The conditions joined by "and" ("all units" for a single leaf)."""
        return " and ".join(self.conditions) or "all units"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "index": self.index, "rule": self.rule, "conditions": list(self.conditions),
            "action": self.action_name, "action_index": self.action, "n": self.n,
            "share": self.share,
        }


@dataclass(frozen=True)
class CompiledTree:
    """A policy tree as flat arrays, with a compiled batch ``choose``.

    Node 0 is the root. ``feature[i] < 0`` marks a leaf, whose action is
    ``action[i]``; an internal node sends ``x[feature] > threshold`` to
    ``right[i]`` and everything else (``<=`` and missing) to ``left[i]``.

    Attributes
    ----------
    feature, left, right, action, leaf : ndarray of int64, shape (n_nodes,)
        ``leaf`` is the leaf number (:meth:`PolicyTree.apply`), -1 inside.
    threshold : ndarray of float64, shape (n_nodes,)
    n_features : int
        Columns the input matrix must have.
    """

    feature: IntArray
    threshold: FloatArray
    left: IntArray
    right: IntArray
    action: IntArray
    leaf: IntArray
    n_features: int

    def _check(self, X: Any) -> Any:
        arr = np.asarray(X)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise InvalidParameterError(
                f"'X' must be a matrix with {self.n_features} columns (the tree's features, "
                f"in fit order); got shape {arr.shape}. Encode frames with "
                "EffectModel._matrix or use DistilledPolicy.compile()."
            )
        return arr

    def choose(self, X: Any) -> IntArray:
        """Action per row of ``X`` (float32 or float64, shape (n, n_features)).

        float32 values are widened exactly to float64 before each comparison, so
        the actions equal :meth:`PolicyTree.choose` on ``X.astype(np.float64)``.
        """
        arr = self._check(X)
        out: IntArray = _descend(arr, self.feature, self.threshold, self.left, self.right, self.action)
        return out

    def apply(self, X: Any) -> IntArray:
        """Leaf number per row of ``X``."""
        arr = self._check(X)
        out: IntArray = _descend(arr, self.feature, self.threshold, self.left, self.right, self.leaf)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able arrays (thresholds of missing-value splits, ``-inf``, as None)."""
        return {
            "feature": self.feature.tolist(),
            "threshold": [float(t) if np.isfinite(t) else None for t in self.threshold],
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "action": self.action.tolist(),
            "n_features": self.n_features,
        }


@dataclass
class PolicyTree:
    """A fitted policy tree.

    Attributes
    ----------
    root : node
    feature_names : list of str
    action_names : list of str
    reward : float
        Summed reward of the training rows under the tree.
    categories : dict
        ``{feature: categories in code order}`` for categorical features (their
        splits read as sets).
    missing : list of str
        Features that had missing values at fit time (they go left).
    """

    root: _Node
    feature_names: list[str]
    action_names: list[str]
    reward: float
    categories: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- choose
    def choose(self, X: FloatArray) -> IntArray:
        """Action per row of the numeric matrix ``X`` (n, p); missing values go left."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape[0], dtype=np.int64)
        self._fill(self.root, X, np.arange(X.shape[0]), out, lambda node: node.action)
        return out

    def apply(self, X: FloatArray) -> IntArray:
        """Leaf number (left to right, as in :meth:`leaves`) per row of ``X``."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape[0], dtype=np.int64)
        numbers = {id(leaf): i for i, leaf in enumerate(self._leaf_nodes())}
        self._fill(self.root, X, np.arange(X.shape[0]), out, lambda node: numbers[id(node)])
        return out

    def _fill(self, node: _Node, X: FloatArray, rows: IntArray, out: IntArray, value: Any) -> None:
        if node.is_leaf:
            out[rows] = value(node)
            return
        assert node.left is not None and node.right is not None
        go_right = X[rows, node.feature] > node.threshold
        self._fill(node.left, X, rows[~go_right], out, value)
        self._fill(node.right, X, rows[go_right], out, value)

    def compile(self) -> CompiledTree:
        """Flatten into arrays for the compiled batch :meth:`CompiledTree.choose`."""
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        action: list[int] = []
        leaf: list[int] = []
        n_leaves = 0

        def add(node: _Node) -> int:
            nonlocal n_leaves
            i = len(feature)
            feature.append(node.feature if not node.is_leaf else -1)
            threshold.append(float(node.threshold) if not node.is_leaf else 0.0)
            left.append(-1)
            right.append(-1)
            action.append(node.action if node.is_leaf else -1)
            leaf.append(n_leaves if node.is_leaf else -1)
            if node.is_leaf:
                n_leaves += 1
                return i
            assert node.left is not None and node.right is not None
            left[i] = add(node.left)
            right[i] = add(node.right)
            return i

        add(self.root)
        return CompiledTree(
            feature=_ints(feature), threshold=np.asarray(threshold, dtype=np.float64),
            left=_ints(left), right=_ints(right), action=_ints(action), leaf=_ints(leaf),
            n_features=len(self.feature_names),
        )

    # ---------------------------------------------------------------- rules
    @property
    def depth(self) -> int:
        """Number of split levels."""

        def walk(node: _Node) -> int:
            if node.is_leaf:
                return 0
            assert node.left is not None and node.right is not None
            return 1 + max(walk(node.left), walk(node.right))

        return walk(self.root)

    def _condition(self, node: _Node, left: bool) -> str:
        return condition(*self._split(node, left))

    def _leaf_nodes(self) -> list[_Node]:
        out: list[_Node] = []

        def walk(node: _Node) -> None:
            if node.is_leaf:
                out.append(node)
                return
            assert node.left is not None and node.right is not None
            walk(node.left)
            walk(node.right)

        walk(self.root)
        return out

    def _split(self, node: _Node, left: bool) -> tuple[str, float, bool, list[str] | None, bool | None]:
        name = self.feature_names[node.feature]
        return (
            name, node.threshold, left, self.categories.get(name),
            True if name in self.missing else None,
        )

    def leaves(self) -> list[PolicyLeaf]:
        """Leaves left to right, each with its conditions, action and training share."""
        out: list[PolicyLeaf] = []
        total = max(self.root.n, 1)

        def walk(node: _Node, path: list[Any]) -> None:
            if node.is_leaf:
                out.append(PolicyLeaf(
                    len(out), describe_path(path), node.action, self.action_names[node.action],
                    node.n, node.n / total,
                ))
                return
            assert node.left is not None and node.right is not None
            walk(node.left, [*path, self._split(node, True)])
            walk(node.right, [*path, self._split(node, False)])

        walk(self.root, [])
        return out

    def rule_lines(self) -> list[tuple[int, str]]:
        """``(indent level, text)`` lines of the if/else rendering (``str(tree)``)."""
        lines: list[tuple[int, str]] = []
        total = max(self.root.n, 1)

        def walk(node: _Node, level: int) -> None:
            if node.is_leaf:
                share = f"  ({node.n / total:.0%} of units)" if self.root.n else ""
                lines.append((level, f"-> {self.action_names[node.action]}{share}"))
                return
            assert node.left is not None and node.right is not None
            lines.append((level, f"if {self._condition(node, True)}:"))
            walk(node.left, level + 1)
            lines.append((level, f"else:  # {self._condition(node, False)}"))
            walk(node.right, level + 1)

        walk(self.root, 0)
        return lines

    def __str__(self) -> str:
        return "\n".join("    " * level + text for level, text in self.rule_lines())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: nested nodes, leaves and the flat arrays."""

        def node_dict(node: _Node) -> dict[str, Any]:
            if node.is_leaf:
                return {"action": self.action_names[node.action], "action_index": node.action, "n": node.n}
            assert node.left is not None and node.right is not None
            finite = bool(np.isfinite(node.threshold))
            return {
                "feature": self.feature_names[node.feature],
                "feature_index": node.feature,
                "threshold": float(node.threshold) if finite else None,
                "threshold_text": format_number(node.threshold) if finite else "missing",
                "left_condition": self._condition(node, True),
                "right_condition": self._condition(node, False),
                "n": node.n,
                "left": node_dict(node.left),
                "right": node_dict(node.right),
            }

        return {
            "kind": "policy_tree",
            "features": list(self.feature_names),
            "actions": list(self.action_names),
            "depth": self.depth,
            "reward": self.reward,
            "root": node_dict(self.root),
            "leaves": [leaf.to_dict() for leaf in self.leaves()],
        }


def _ints(values: list[int]) -> IntArray:
    return np.asarray(values, dtype=np.int64)


# --------------------------------------------------------------------- search
def bin_edges(sample: FloatArray, max_bins: int) -> list[FloatArray]:
    """The upper edge (threshold) of each bin, per column of ``sample``.

    Edges are the distinct values when a column has at most ``max_bins`` of them,
    else ``max_bins`` inverted-CDF quantiles. Every edge is a data value.
    """
    m, p = sample.shape
    columns = np.sort(sample.T, axis=1)  # (p, m): one contiguous sort per column
    edges: list[FloatArray] = []
    for j in range(p):
        s = columns[j]
        values = s[np.concatenate([[True], s[1:] != s[:-1]])]
        if values.shape[0] > max_bins:  # inverted-CDF quantiles
            idx = np.ceil(np.linspace(0, 1, max_bins + 1)[1:] * m).astype(np.int64) - 1
            values = np.unique(s[np.clip(idx, 0, m - 1)])
        edges.append(values)
    return edges


def sample_rows(n: int) -> IntArray | None:
    """The rows (sorted) that place the bin edges of ``n`` rows; None: every row."""
    if n <= BIN_SAMPLE:
        return None
    return np.sort(np.random.default_rng(0).choice(n, BIN_SAMPLE, replace=False))


def bin_codes(X: FloatArray, edges: list[FloatArray]) -> CodeArray:
    """Bin codes per column, shape (p, n): the index of the first edge >= x."""
    n_edges = np.array([e.shape[0] for e in edges], dtype=np.int64)
    padded = np.full((len(edges), max(int(n_edges.max(initial=1)), 1)), np.inf)
    for j, e in enumerate(edges):
        padded[j, : e.shape[0]] = e
    codes: CodeArray = _bin_codes(np.ascontiguousarray(X), padded, n_edges)
    return codes


def _bin(X: FloatArray, max_bins: int) -> tuple[CodeArray, list[FloatArray]]:
    """Bin codes per column, shape (p, n), and the edges; above ``BIN_SAMPLE``
    rows the edges are placed on a fixed random sample of rows (as LightGBM does)."""
    rows = sample_rows(X.shape[0])
    edges = bin_edges(X if rows is None else X[rows], max_bins)
    return bin_codes(X, edges), edges


Path = tuple[tuple[int, int, bool], ...]  # (feature, bin, go left) from the root


def path_stats(codes: CodeArray, rewards: FloatArray, path: Path, what: str, args: Any) -> FloatArray:
    """A statistic of the rows on ``path``: the sums one search step needs.

    ``what``: ``"total"`` (summed rewards, then the row count), ``"hist1"``
    (p, B, K), ``"pair"`` (P, B, B, K) or ``"hist2"`` (p, B_j, B, K).
    Histograms of disjoint row sets add up, so a cluster sums them over parts.
    """
    if path:
        keep = np.ones(codes.shape[1], dtype=bool)
        for j, a, left in path:
            keep &= (codes[j] <= a) == left
        rows = np.flatnonzero(keep)
        codes, rewards = codes[:, rows], rewards[rows]
    rewards = np.ascontiguousarray(rewards)
    if what == "total":
        return np.append(rewards.sum(axis=0), float(rewards.shape[0]))
    if what == "hist1":
        out: FloatArray = _hist1(codes, rewards, args)
        return out
    if what == "pair":
        first, second, B = args
        out = _pair_hist(codes, rewards, first, second, B)
        return out
    j, Bj, B = args
    out = _hist2(codes, rewards, j, Bj, B)
    return out


class LocalRows:
    """The rows of one process for the search: :func:`path_stats` on its arrays.

    A cluster passes an object with the same ``stats`` method that sums
    :func:`path_stats` over its parts.
    """

    def __init__(self, codes: CodeArray, rewards: FloatArray) -> None:
        self.codes = codes
        self.rewards = np.ascontiguousarray(rewards)

    def stats(self, path: Path, what: str, args: Any = None) -> FloatArray:
        return path_stats(self.codes, self.rewards, path, what, args)


class _Totals:
    """Summed rewards and counts per path, asked of the rows once each."""

    def __init__(self, rows: Any) -> None:
        self.rows = rows
        self.known: dict[Path, tuple[FloatArray, int]] = {}

    def __call__(self, path: Path) -> tuple[FloatArray, int]:
        if path not in self.known:
            out = self.rows.stats(path, "total")
            self.known[path] = (out[:-1], int(round(out[-1])))
        return self.known[path]


def _leaf(total: FloatArray) -> tuple[float, Any]:
    k = int(np.argmax(total))
    return float(total[k]), ("leaf", k)


PAIR_TABLE_BYTES = 256 * 2**20  # above this, histograms are built per root feature


def _root_histograms(rows: Any, path: Path, n_bins: IntArray, K: int) -> Any:
    """Yield ``(j, hist_j)`` with ``hist_j[l, a, b, k]`` of shape (p, bins_j, B, K).

    Small problems build every feature pair's histogram once (j <= l; the pair
    (l, j) is its transpose), in one parallel pass per pair; larger ones build
    each root feature's histograms when needed.
    """
    p = n_bins.shape[0]
    B = int(n_bins.max())
    first, second = np.triu_indices(p)
    if first.shape[0] * B * B * K * 8 <= PAIR_TABLE_BYTES:
        table = rows.stats(path, "pair", (first.astype(np.int64), second.astype(np.int64), B))
        index = np.zeros((p, p), dtype=np.int64)
        index[first, second] = np.arange(first.shape[0])
        for j in range(p):
            Bj = int(n_bins[j])
            if Bj < 2:
                continue
            parts = [
                table[index[j, f], :Bj] if f >= j else table[index[f, j], :, :Bj].transpose(1, 0, 2)
                for f in range(p)
            ]
            yield j, np.ascontiguousarray(np.stack(parts))
    else:
        for j in range(p):
            Bj = int(n_bins[j])
            if Bj >= 2:
                yield j, rows.stats(path, "hist2", (j, Bj, B))


def _search(totals: _Totals, path: Path, n_bins: IntArray, depth: int) -> tuple[float, Any]:
    """Exhaustive search to ``depth`` (0-2) on the rows of ``path``; (reward, plan)."""
    total, n = totals(path)
    best = _leaf(total)
    B = int(n_bins.max(initial=1))
    if depth == 0 or n < 2 or B < 2:
        return best
    rows = totals.rows
    if depth == 1:
        hist = rows.stats(path, "hist1", B)  # (p, B, K)
        left = np.cumsum(hist, axis=1)[:, :-1]
        right = hist.sum(axis=1)[:, None, :] - left
        value = left.max(axis=2) + right.max(axis=2)  # (p, B-1)
        value = np.where(np.arange(B - 1)[None, :] < (n_bins - 1)[:, None], value, -np.inf)
        i = int(np.argmax(value))
        if value.flat[i] > best[0] + 1e-12:
            best = (float(value.flat[i]), ("split", i // (B - 1), i % (B - 1), None, None))
        return best
    # depth 2: root on j, children on any l (left and right choose separately)
    for j, hist in _root_histograms(rows, path, n_bins, total.shape[0]):
        split_v, split_l, split_c, leaf_v, leaf_k = _root_children(hist, j, n_bins)
        use = split_v > leaf_v + 1e-12
        child = np.where(use, split_v, leaf_v)
        value = child[0] + child[1]
        a = int(np.argmax(value))
        if value[a] > best[0] + 1e-12:
            plans = [
                ("split", int(split_l[s, a]), int(split_c[s, a])) if use[s, a]
                else ("leaf", int(leaf_k[s, a]))
                for s in (0, 1)
            ]
            best = (float(value[a]), ("split", j, a, plans[0], plans[1]))
    return best


def _split_node(j: int, a: int, edges: list[FloatArray]) -> _Node:
    return _Node(action=-1, feature=int(j), threshold=float(edges[j][a]), code=int(a))


def _build(
    plan: Any, totals: _Totals, path: Path, edges: list[FloatArray], n_bins: IntArray, depth: int,
) -> _Node:
    if plan[0] == "leaf":
        return _Node(action=int(plan[1]))
    _, j, a, left_plan, right_plan = plan
    node = _split_node(j, a, edges)
    children = []
    for side, sub_plan in (((j, a, True), left_plan), ((j, a, False), right_plan)):
        sub = (*path, side)
        if sub_plan is None or depth > 2:
            # depth 1 children, or greedy growth below the exhaustive top two levels
            remaining = depth - 1
            _, sub_plan = _search(totals, sub, n_bins, min(2, remaining) if depth > 2 else 0)
            children.append(_build(sub_plan, totals, sub, edges, n_bins, remaining))
        elif sub_plan[0] == "leaf":
            children.append(_Node(action=int(sub_plan[1])))
        else:
            _, f2, c = sub_plan
            child = _split_node(f2, c, edges)
            child.left = _Node(action=_leaf(totals((*sub, (f2, c, True)))[0])[1][1])
            child.right = _Node(action=_leaf(totals((*sub, (f2, c, False)))[0])[1][1])
            children.append(child)
    node.left, node.right = children
    return node


def _prune(node: _Node, totals: _Totals, path: Path, min_n: int) -> _Node:
    """Bottom-up: merge two sibling leaves when one is smaller than ``min_n`` rows
    (the merged leaf takes the best action of their rows), or when both pick the
    same action (same choices, simpler rules). Sets every node's row count."""
    total, n = totals(path)
    node.n = n
    if node.is_leaf:
        return node
    assert node.left is not None and node.right is not None
    node.left = _prune(node.left, totals, (*path, (node.feature, node.code, True)), min_n)
    node.right = _prune(node.right, totals, (*path, (node.feature, node.code, False)), min_n)
    if node.left.is_leaf and node.right.is_leaf and (
        node.left.action == node.right.action or min(node.left.n, node.right.n) < min_n
    ):
        return _Node(action=int(np.argmax(total)) if n else node.left.action, n=n)
    return node


def _reward(node: _Node, totals: _Totals, path: Path) -> float:
    """Summed reward of the rows under the tree (from the totals the prune asked for)."""
    if node.is_leaf:
        return float(totals(path)[0][node.action])
    assert node.left is not None and node.right is not None
    return _reward(node.left, totals, (*path, (node.feature, node.code, True))) + _reward(
        node.right, totals, (*path, (node.feature, node.code, False))
    )


def check_tree_params(depth: Any, min_leaf_share: Any, max_bins: Any) -> None:
    """The parameters :func:`fit_policy_tree` takes, checked with clear errors."""
    if not isinstance(min_leaf_share, int | float) or not 0.0 <= min_leaf_share < 0.5:
        raise InvalidParameterError(
            f"'min_leaf_share' must be in [0, 0.5); got {min_leaf_share!r}."
        )
    if not isinstance(depth, int | np.integer) or not 1 <= depth <= 4:
        raise InvalidParameterError(f"'depth' must be 1 to 4; got {depth}.")
    if not isinstance(max_bins, int | np.integer) or not 2 <= max_bins <= MAX_BINS:
        raise InvalidParameterError(f"'max_bins' must be 2 to {MAX_BINS}; got {max_bins}.")


def grow(
    rows: Any, edges: list[FloatArray], n: int, depth: int, min_leaf_share: float,
    names: list[str], actions: list[str], categories: Mapping[str, Sequence[Any]] | None,
    missing: list[str],
) -> PolicyTree:
    """Search, build and prune a tree on ``rows`` (:class:`LocalRows`, or a cluster's
    rows with the same ``stats``) already binned on ``edges``."""
    n_bins = np.array([len(e) for e in edges], dtype=np.int64)
    totals = _Totals(rows)
    _, plan = _search(totals, (), n_bins, min(depth, 2))
    root = _build(plan, totals, (), edges, n_bins, depth)
    root = _prune(root, totals, (), int(np.ceil(min_leaf_share * n)))
    cats = {str(k): [str(c) for c in v] for k, v in (categories or {}).items()}
    tree = PolicyTree(root, names, actions, 0.0, cats, missing)
    tree.reward = _reward(root, totals, ())
    return tree


def fit_policy_tree(
    X: FloatArray,
    rewards: FloatArray,
    depth: int = 2,
    *,
    min_leaf_share: float = 0.0,
    max_bins: int = 64,
    feature_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    categories: Mapping[str, Sequence[Any]] | None = None,
) -> PolicyTree:
    """Fit a policy tree maximizing ``sum_i rewards[i, action(x_i)]``.

    Parameters
    ----------
    X : ndarray of shape (n_units, n_features)
        Numeric features (categorical ones as codes; missing values as NaN, which
        go left of every split).
    rewards : ndarray of shape (n_units, n_actions)
        E.g. utility-weighted DR scores ``sum_m w_m s_m G[i, k, m]``.
        ``X`` and ``rewards`` may be dask arrays (the same row chunks): the
        histograms are then built where the chunks live and summed
        (:mod:`pexkit.execution.trees`), with the same tree as one process.
    depth : int
        1-4; levels 1-2 are searched exhaustively, deeper ones greedily.
    max_bins : int
        Thresholds per feature (quantile bins), 2 to 256; exact when every
        feature has at most this many distinct values (and at most 200,000 rows:
        larger data places its bin edges on a fixed sample of rows).
    feature_names, action_names : sequence of str, optional
    categories : mapping, optional
        ``{feature name: categories in code order}``, for readable set rules.
    min_leaf_share : float
        After the search, sibling leaves are merged bottom-up while one holds
        fewer than this share of the rows (0 keeps the exact optimum); sibling
        leaves with the same action are always merged (same choices).
    """
    check_tree_params(depth, min_leaf_share, max_bins)
    from pexkit.execution import is_dask_array

    if is_dask_array(X) or is_dask_array(rewards):
        from pexkit.execution.trees import fit_policy_tree_on_cluster

        return fit_policy_tree_on_cluster(
            X, rewards, int(depth), min_leaf_share=min_leaf_share, max_bins=int(max_bins),
            feature_names=feature_names, action_names=action_names, categories=categories,
        )
    X = np.asarray(X, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    check_tree_inputs(X.shape, rewards.shape)
    if not np.isfinite(rewards).all():
        raise InvalidParameterError(NOT_FINITE)
    names, actions = tree_names(X.shape, rewards.shape, feature_names, action_names)
    nan = np.isnan(X)
    missing = [names[j] for j in np.flatnonzero(nan.any(axis=0))]
    if missing:
        X = np.where(nan, -np.inf, X)  # missing values go left of every split
    codes, edges = _bin(X, max_bins)
    return grow(LocalRows(codes, rewards), edges, X.shape[0], int(depth), float(min_leaf_share),
                names, actions, categories, missing)


NOT_FINITE = (
    "'rewards' must be finite; found NaN or infinite values. Check the effects or scores "
    "they were built from."
)


def check_tree_inputs(x_shape: tuple[int, ...], r_shape: tuple[int, ...]) -> None:
    """Shapes of ``X`` (n, p) and ``rewards`` (n, K), checked with clear errors."""
    if len(x_shape) != 2 or len(r_shape) != 2 or x_shape[0] != r_shape[0]:
        raise InvalidParameterError(
            f"'X' (n, p) and 'rewards' (n, K) must have the same rows; got {tuple(x_shape)} and "
            f"{tuple(r_shape)}."
        )
    if x_shape[0] == 0 or x_shape[1] == 0 or r_shape[1] == 0:
        raise InvalidParameterError(
            f"'X' and 'rewards' need at least one row, feature and action; got {tuple(x_shape)} "
            f"and {tuple(r_shape)}."
        )


def tree_names(
    x_shape: tuple[int, ...], r_shape: tuple[int, ...], feature_names: Sequence[str] | None,
    action_names: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    """Feature and action names (``x0..``, ``0..`` by default), checked against the shapes."""
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(x_shape[1])]
    actions = list(action_names) if action_names is not None else [str(k) for k in range(r_shape[1])]
    if len(names) != x_shape[1] or len(actions) != r_shape[1]:
        raise InvalidParameterError(
            f"'feature_names' must name the {x_shape[1]} columns of X and 'action_names' the "
            f"{r_shape[1]} columns of rewards; got {len(names)} and {len(actions)}."
        )
    return names, actions
