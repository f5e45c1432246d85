"""Policy trees on DR scores: shallow if-then rules that maximize summed rewards.

Like R's ``policytree`` (Athey and Wager), but features are first cut into at
most ``max_bins`` quantile bins, and the depth-2 search runs on per-bin reward
histograms: for every pair of features (j, l), one ``bincount`` builds the
(bins_j x bins_l x K) reward histogram, and cumulative sums give every root
threshold on j and every child threshold on l at once. Depth 1 and 2 are
exhaustive over the bin edges (exact when every distinct value has its own
bin); deeper trees grow greedily, a depth-2 search per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError

__all__ = ["PolicyTree", "fit_policy_tree"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class _Node:
    action: int
    feature: int = -1
    threshold: float = np.nan  # go left when x <= threshold
    left: _Node | None = None
    right: _Node | None = None

    @property
    def is_leaf(self) -> bool:
        return self.left is None


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
    """

    root: _Node
    feature_names: list[str]
    action_names: list[str]
    reward: float

    def choose(self, X: FloatArray) -> IntArray:
        """Action per row of the numeric matrix ``X`` (n, p)."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape[0], dtype=np.int64)
        self._fill(self.root, X, np.arange(X.shape[0]), out)
        return out

    def _fill(self, node: _Node, X: FloatArray, rows: IntArray, out: IntArray) -> None:
        if node.is_leaf:
            out[rows] = node.action
            return
        assert node.left is not None and node.right is not None
        go_left = X[rows, node.feature] <= node.threshold
        self._fill(node.left, X, rows[go_left], out)
        self._fill(node.right, X, rows[~go_left], out)

    def __str__(self) -> str:
        lines: list[str] = []

        def walk(node: _Node, indent: str) -> None:
            if node.is_leaf:
                lines.append(f"{indent}-> {self.action_names[node.action]}")
                return
            assert node.left is not None and node.right is not None
            name = self.feature_names[node.feature]
            lines.append(f"{indent}if {name} <= {node.threshold:.4g}:")
            walk(node.left, indent + "    ")
            lines.append(f"{indent}else:  # {name} > {node.threshold:.4g}")
            walk(node.right, indent + "    ")

        walk(self.root, "")
        return "\n".join(lines)


def _bin(X: FloatArray, max_bins: int) -> tuple[IntArray, list[FloatArray]]:
    """Bin codes per column and the upper edge (threshold) of each bin."""
    n, p = X.shape
    codes = np.empty((n, p), dtype=np.int64)
    edges: list[FloatArray] = []
    for j in range(p):
        col = X[:, j]
        values = np.unique(col)
        if values.shape[0] > max_bins:
            values = np.unique(np.quantile(col, np.linspace(0, 1, max_bins + 1)[1:], method="inverted_cdf"))
        codes[:, j] = np.searchsorted(values, col, side="left")
        codes[:, j] = np.minimum(codes[:, j], values.shape[0] - 1)
        edges.append(values)
    return codes, edges


def _best_leaf(total: FloatArray) -> tuple[float, int]:
    k = int(np.argmax(total))
    return float(total[k]), k


def _depth1(codes_col: IntArray, n_bins: int, rewards: FloatArray) -> tuple[float, int]:
    """Best single split on one feature: (reward, last bin index going left)."""
    K = rewards.shape[1]
    hist = np.stack([np.bincount(codes_col, weights=rewards[:, k], minlength=n_bins) for k in range(K)], axis=1)
    left = np.cumsum(hist, axis=0)[:-1]
    right = hist.sum(axis=0)[None, :] - left
    if left.shape[0] == 0:
        return -np.inf, -1
    value = left.max(axis=1) + right.max(axis=1)
    a = int(np.argmax(value))
    return float(value[a]), a


def _search(codes: IntArray, n_bins: list[int], rewards: FloatArray, depth: int) -> tuple[float, Any]:
    """Exhaustive search; returns (reward, plan) with plan a nested tuple."""
    total = rewards.sum(axis=0)
    leaf_value, leaf_action = _best_leaf(total)
    best: tuple[float, Any] = (leaf_value, ("leaf", leaf_action))
    if depth == 0 or rewards.shape[0] < 2:
        return best
    p = codes.shape[1]
    K = rewards.shape[1]
    if depth == 1:
        for j in range(p):
            value, a = _depth1(codes[:, j], n_bins[j], rewards)
            if value > best[0] + 1e-12:
                best = (value, ("split", j, a, None, None))
        return best
    # depth 2: root on j, children on any l (left and right choose separately)
    for j in range(p):
        Bj = n_bins[j]
        if Bj < 2:
            continue
        best_left = np.full(Bj - 1, -np.inf)
        best_right = np.full(Bj - 1, -np.inf)
        plan_left: list[Any] = [None] * (Bj - 1)
        plan_right: list[Any] = [None] * (Bj - 1)
        for f2 in range(p):
            Bl = n_bins[f2]
            index = codes[:, j] * Bl + codes[:, f2]
            hist = np.stack(
                [np.bincount(index, weights=rewards[:, k], minlength=Bj * Bl) for k in range(K)],
                axis=1,
            ).reshape(Bj, Bl, K)
            left = np.cumsum(hist, axis=0)[:-1]  # rows with bin_j <= a: (Bj-1, Bl, K)
            right = hist.sum(axis=0)[None] - left
            for side, block, best_side, plans in (
                ("L", left, best_left, plan_left),
                ("R", right, best_right, plan_right),
            ):
                whole = block.sum(axis=1)  # (Bj-1, K): child as a leaf
                leaf_val = whole.max(axis=1)
                if Bl >= 2:
                    inner = np.cumsum(block, axis=1)[:, :-1]  # (Bj-1, Bl-1, K)
                    outer = whole[:, None, :] - inner
                    split_val = inner.max(axis=2) + outer.max(axis=2)  # (Bj-1, Bl-1)
                    c = np.argmax(split_val, axis=1)
                    val = split_val[np.arange(Bj - 1), c]
                else:
                    c = np.zeros(Bj - 1, dtype=np.int64)
                    val = np.full(Bj - 1, -np.inf)
                for a in range(Bj - 1):
                    if leaf_val[a] > best_side[a] + 1e-12:
                        best_side[a] = leaf_val[a]
                        plans[a] = ("leaf", int(np.argmax(whole[a])))
                    if val[a] > best_side[a] + 1e-12:
                        best_side[a] = val[a]
                        plans[a] = ("split", f2, int(c[a]), block[a], side)
        value = best_left + best_right
        a = int(np.argmax(value))
        if value[a] > best[0] + 1e-12:
            best = (float(value[a]), ("split", j, a, plan_left[a], plan_right[a]))
    return best


def _build(
    plan: Any, codes: IntArray, edges: list[FloatArray], n_bins: list[int],
    rewards: FloatArray, rows: IntArray, depth: int,
) -> _Node:
    if plan[0] == "leaf":
        return _Node(action=int(plan[1]))
    _, j, a, left_plan, right_plan = plan
    node = _Node(action=-1, feature=int(j), threshold=float(edges[j][a]))
    go_left = codes[rows, j] <= a
    children = []
    for sub_rows, sub_plan in ((rows[go_left], left_plan), (rows[~go_left], right_plan)):
        if sub_plan is None or depth > 2:
            # depth 1 children, or greedy growth below the exhaustive top two levels
            remaining = depth - 1
            if depth > 2:
                _, sub_plan = _search(codes[sub_rows], n_bins, rewards[sub_rows], min(2, remaining))
            else:
                _, sub_plan = _search(codes[sub_rows], n_bins, rewards[sub_rows], 0)
            children.append(_build(sub_plan, codes, edges, n_bins, rewards, sub_rows, remaining))
        elif sub_plan[0] == "leaf":
            children.append(_Node(action=int(sub_plan[1])))
        else:
            _, f2, c, _, _ = sub_plan
            child = _Node(action=-1, feature=int(f2), threshold=float(edges[f2][c]))
            inner = codes[sub_rows, f2] <= c
            for part in (sub_rows[inner], sub_rows[~inner]):
                _, k = _best_leaf(rewards[part].sum(axis=0))
                leaf = _Node(action=k)
                if child.left is None:
                    child.left = leaf
                else:
                    child.right = leaf
            children.append(child)
    node.left, node.right = children
    return node


def fit_policy_tree(
    X: FloatArray,
    rewards: FloatArray,
    depth: int = 2,
    *,
    max_bins: int = 64,
    feature_names: list[str] | None = None,
    action_names: list[str] | None = None,
) -> PolicyTree:
    """Fit a policy tree maximizing ``sum_i rewards[i, action(x_i)]``.

    Parameters
    ----------
    X : ndarray of shape (n_units, n_features)
        Numeric features (categorical ones as codes).
    rewards : ndarray of shape (n_units, n_actions)
        E.g. utility-weighted DR scores ``sum_m w_m s_m G[i, k, m]``.
    depth : int
        1-4; levels 1-2 are searched exhaustively, deeper ones greedily.
    max_bins : int
        Thresholds per feature (quantile bins); exact when every feature has
        at most this many distinct values.
    """
    X = np.asarray(X, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    if X.ndim != 2 or rewards.ndim != 2 or X.shape[0] != rewards.shape[0]:
        raise InvalidParameterError(
            f"'X' (n, p) and 'rewards' (n, K) must have the same rows; got {X.shape} and "
            f"{rewards.shape}."
        )
    if not 1 <= depth <= 4:
        raise InvalidParameterError(f"'depth' must be 1 to 4; got {depth}.")
    if np.isnan(X).any():
        X = np.where(np.isnan(X), -np.inf, X)  # missing values go left of every split
    codes, edges = _bin(X, max_bins)
    n_bins = [len(e) for e in edges]
    _, plan = _search(codes, n_bins, rewards, min(depth, 2))
    rows = np.arange(X.shape[0])
    root = _build(plan, codes, edges, n_bins, rewards, rows, depth)
    names = feature_names or [f"x{j}" for j in range(X.shape[1])]
    actions = action_names or [str(k) for k in range(rewards.shape[1])]
    tree = PolicyTree(root, list(names), list(actions), 0.0)
    chosen = tree.choose(X)
    tree.reward = float(rewards[np.arange(X.shape[0]), chosen].sum())
    return tree
