"""Compile a linear policy and the effect models it uses into flat tree arrays.

A launched policy answers one question per request: ``argmax_k U_k(x)`` with
``U_k(x) = sum_m w_m s_m (tau_{k,m}(x) + b_{k,m})``. Every meta-learner's
``tau_{k,m}`` is a weighted sum of gradient-boosted trees (T: fold-averaged
outcome models; X: the two imputed-effect models per fold; DR: the
pseudo-outcome models; S: one model evaluated at two arm values; each learner
lists them in :meth:`~pexkit.effects.EffectModel.terms`), so the whole
utility is one additive tree ensemble per treatment. :func:`compile_policy`
parses each LightGBM booster once (``dump_model``), folds the policy's weights
and signs into per-tree scales, and keeps only the cells whose outcome has a
non-zero weight. Three exact reductions (measured on the notifications
scenario's S-learner: 3,600 tree walks per decision down to 2,049, 3.3x the
decisions per core): a control-arm term that every treated arm subtracts
(``f(x, 0)`` of S and T) is computed once, in arm 0's column; an S-learner tree
that never splits on the arm cancels in ``f(x, k) - f(x, 0)`` and is dropped;
and the entries of one tree (one per arm) share the walk down to its first arm
split. Decisions then run in a numba kernel with no Python per tree,
no model loading, and no LightGBM call: a single decision is a few
microseconds plus the feature encoding; batches run in parallel over rows.
The kernel is :mod:`~pexkit.serving.quickscorer` (the ensemble scored by
feature, with no tree walk) wherever it applies, and the tree walk below
otherwise (:attr:`CompiledPolicy.kernel` says which).

A binary outcome's outcome models (T and S terms) predict probabilities, the
sigmoid of their trees' sum, which is not additive: each such (booster, arm)
term gets a column of its own in the kernel's output (its raw sum), and the
utilities add ``coef * sigmoid(raw)`` per arm afterwards (:attr:`CompiledPolicy.links`).

The kernel follows LightGBM's own decision rules (``<=`` on numeric splits,
missing values by ``missing_type``/``default_left``, category sets on
categorical splits), so it reproduces ``EffectModel.predict`` to rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from pexkit.effects.model import EffectModel
from pexkit.exceptions import InvalidParameterError, NotFittedError
from pexkit.policy.linear import LinearPolicy
from pexkit.serving.quickscorer import QuickScorer

__all__ = ["CompiledPolicy", "compile_policy"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_KIND_NUMERIC, _KIND_CATEGORICAL = 0, 1


class _Builder:
    """Accumulates trees into flat arrays."""

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.kind: list[int] = []
        self.missing: list[int] = []
        self.default_left: list[bool] = []
        self.left: list[int] = []
        self.right: list[int] = []
        self.cat_start: list[int] = []
        self.cat_len: list[int] = []
        self.cats: list[int] = []
        self.leaf_value: list[float] = []
        self.roots: list[int] = []
        self.tree_out: list[int] = []
        self.tree_scale: list[float] = []
        self.tree_arm: list[float] = []

    def _node(self, node: dict[str, Any]) -> int:
        """Append a node; leaves are encoded as ``-(leaf index) - 1``."""
        if "leaf_value" in node and "split_feature" not in node:
            self.leaf_value.append(float(node["leaf_value"]))
            return -len(self.leaf_value)
        idx = len(self.feature)
        self.feature.append(int(node["split_feature"]))
        self.missing.append(_MISSING.get(str(node.get("missing_type", "None")), 0))
        self.default_left.append(bool(node.get("default_left", True)))
        if node["decision_type"] == "==":
            values = [int(v) for v in str(node["threshold"]).split("||")]
            self.kind.append(_KIND_CATEGORICAL)
            self.threshold.append(0.0)
            self.cat_start.append(len(self.cats))
            self.cat_len.append(len(values))
            self.cats.extend(sorted(values))
        else:
            self.kind.append(_KIND_NUMERIC)
            self.threshold.append(float(node["threshold"]))
            self.cat_start.append(0)
            self.cat_len.append(0)
        self.left.append(0)
        self.right.append(0)
        self.left[idx] = self._node(node["left_child"])
        self.right[idx] = self._node(node["right_child"])
        return idx

    def add_booster(self, booster: Any, out: int, scale: float, arm: float) -> None:
        """Every tree of ``booster`` added once to arm ``out``."""
        self.add_targets(booster, [(out, scale, arm)], arm_trees_only=False)

    def add_targets(
        self, booster: Any, targets: list[tuple[int, float, float]], *, arm_trees_only: bool,
        dump: dict[str, Any] | None = None,
    ) -> None:
        """Every tree of ``booster``, evaluated once per ``(out, scale, arm)`` target.

        The entries of one tree are consecutive and share its root, so the
        kernel walks the tree's common path once (up to its first split on the
        arm column). With ``arm_trees_only``, trees that never split on the arm
        column are left out: the caller guarantees that their contributions
        cancel (an S-learner's ``f(x, k) - f(x, 0)``).
        """
        dump = booster.dump_model() if dump is None else dump
        for tree in dump["tree_info"]:
            structure = tree["tree_structure"]
            if arm_trees_only and not _splits_on(structure, self.n_features):
                continue
            root = self._node(structure)
            for out, scale, arm in targets:
                self.roots.append(root)
                self.tree_out.append(out)
                self.tree_scale.append(scale)
                self.tree_arm.append(arm)

    def arrays(self) -> dict[str, Any]:
        def f64(x: list[float]) -> FloatArray:
            return np.asarray(x, dtype=np.float64)

        def i64(x: list[int]) -> IntArray:
            return np.asarray(x, dtype=np.int64)

        return {
            "feature": i64(self.feature),
            "threshold": f64(self.threshold),
            "kind": i64(self.kind),
            "missing": i64(self.missing),
            "default_left": np.asarray(self.default_left, dtype=np.bool_),
            "left": i64(self.left),
            "right": i64(self.right),
            "cat_start": i64(self.cat_start),
            "cat_len": i64(self.cat_len),
            "cats": i64(self.cats) if self.cats else np.zeros(1, dtype=np.int64),
            "leaf_value": f64(self.leaf_value),
            "roots": i64(self.roots),
            "tree_out": i64(self.tree_out),
            "tree_scale": f64(self.tree_scale),
            "tree_arm": f64(self.tree_arm),
        }


def _splits_on(node: dict[str, Any], feature: int) -> bool:
    """Whether any split of a dumped LightGBM tree uses ``feature``."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if "split_feature" in cur:
            if int(cur["split_feature"]) == feature:
                return True
            stack.extend((cur["left_child"], cur["right_child"]))
    return False


def _groups(roots: IntArray) -> IntArray:
    """Start of each run of entries that share a tree (and one past the last)."""
    if roots.shape[0] == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, roots[1:] != roots[:-1]])
    out: IntArray = np.r_[starts, roots.shape[0]].astype(np.int64)
    return out


@numba.njit(cache=True, inline="always")
def _walk(  # noqa: PLR0913
    x: FloatArray, arm: float, stop_at_arm: bool, n_features: int, root: int,
    feature: IntArray, threshold: FloatArray, kind: IntArray, missing: IntArray,
    default_left: Any, left: IntArray, right: IntArray,
    cat_start: IntArray, cat_len: IntArray, cats: IntArray,
) -> int:
    """Walk from ``root`` to a leaf, returned as ``-(leaf index) - 1``.

    With ``stop_at_arm``, stop at the first split on the arm column (column
    ``n_features``) and return that node instead.
    """
    node = root
    while node >= 0:
        j = feature[node]
        if j == n_features:
            if stop_at_arm:
                return node
            v = arm
        else:
            v = x[j]
        go_left = False
        if kind[node] == 0:
            is_nan = np.isnan(v)
            if is_nan and missing[node] != 2:
                v = 0.0
                is_nan = False
            if (missing[node] == 1 and abs(v) <= 1e-35) or (missing[node] == 2 and is_nan):
                go_left = default_left[node]
            else:
                go_left = v <= threshold[node]
        else:
            if np.isnan(v):  # LightGBM: missing categories always go right
                node = right[node]
                continue
            iv = int(v)
            if iv < 0:
                go_left = False
            else:
                s = cat_start[node]
                for c in range(cat_len[node]):
                    if cats[s + c] == iv:
                        go_left = True
                        break
        node = left[node] if go_left else right[node]
    return node


@numba.njit(cache=True, nogil=True)
def _accumulate(  # noqa: PLR0913
    X: FloatArray, lo: int, hi: int, out: FloatArray, n_features: int,
    roots: IntArray, groups: IntArray, tree_out: IntArray, tree_scale: FloatArray,
    tree_arm: FloatArray, feature: IntArray, threshold: FloatArray, kind: IntArray,
    missing: IntArray, default_left: Any, left: IntArray, right: IntArray,
    cat_start: IntArray, cat_len: IntArray, cats: IntArray, leaf_value: FloatArray,
) -> None:
    # tree-major over rows lo..hi: one tree's nodes stay in cache for the block. The
    # entries of a tree (one per arm it is evaluated at) share the walk down to the
    # tree's first arm split; each entry's additions happen in entry order.
    for g in range(groups.shape[0] - 1):
        g0 = groups[g]
        g1 = groups[g + 1]
        for i in range(lo, hi):
            x = X[i]
            node = _walk(x, 0.0, True, n_features, roots[g0], feature, threshold, kind,
                         missing, default_left, left, right, cat_start, cat_len, cats)
            for e in range(g0, g1):
                end = node
                if node >= 0:
                    end = _walk(x, tree_arm[e], False, n_features, node, feature, threshold,
                                kind, missing, default_left, left, right, cat_start, cat_len,
                                cats)
                out[i, tree_out[e]] += tree_scale[e] * leaf_value[-end - 1]


@numba.njit(cache=True, parallel=True, nogil=True)
def _utilities(  # noqa: PLR0913
    X: FloatArray, n_out: int, base: FloatArray, n_features: int,
    roots: IntArray, groups: IntArray, tree_out: IntArray, tree_scale: FloatArray,
    tree_arm: FloatArray, feature: IntArray, threshold: FloatArray, kind: IntArray,
    missing: IntArray, default_left: Any, left: IntArray, right: IntArray,
    cat_start: IntArray, cat_len: IntArray, cats: IntArray, leaf_value: FloatArray,
) -> FloatArray:
    n = X.shape[0]
    block = 512
    n_blocks = (n + block - 1) // block
    out = np.empty((n, n_out))
    for b in numba.prange(n_blocks):
        lo = b * block
        hi = min(n, lo + block)
        for i in range(lo, hi):
            for k in range(n_out):
                out[i, k] = base[k]
        _accumulate(X, lo, hi, out, n_features, roots, groups, tree_out, tree_scale, tree_arm,
                    feature, threshold, kind, missing, default_left, left, right, cat_start,
                    cat_len, cats, leaf_value)
    return out


@numba.njit(cache=True, nogil=True)
def _utilities_serial(  # noqa: PLR0913
    X: FloatArray, n_out: int, base: FloatArray, n_features: int,
    roots: IntArray, groups: IntArray, tree_out: IntArray, tree_scale: FloatArray,
    tree_arm: FloatArray, feature: IntArray, threshold: FloatArray, kind: IntArray,
    missing: IntArray, default_left: Any, left: IntArray, right: IntArray,
    cat_start: IntArray, cat_len: IntArray, cats: IntArray, leaf_value: FloatArray,
) -> FloatArray:
    # the same additions in one thread: a small batch of concurrent requests
    n = X.shape[0]
    out = np.empty((n, n_out))
    for i in range(n):
        for k in range(n_out):
            out[i, k] = base[k]
    _accumulate(X, 0, n, out, n_features, roots, groups, tree_out, tree_scale, tree_arm,
                feature, threshold, kind, missing, default_left, left, right, cat_start,
                cat_len, cats, leaf_value)
    return out


@dataclass
class CompiledPolicy:
    """A linear policy with its effect models compiled to flat tree arrays.

    Attributes
    ----------
    policy : LinearPolicy
    n_trees : int
        Tree evaluations per decision (one per tree and arm it is evaluated at;
        only cells with non-zero weight, and an S-learner's trees only where
        they split on the arm).
    shifted : bool
        Whether the control arm's column holds the terms that every treated arm
        subtracts (``f(x, 0)`` of S- and T-learners), computed once instead of
        once per arm: the kernel's raw sums then differ from ``U_k`` by the same
        amount in every arm, which :meth:`utilities_matrix` takes off.
    """

    policy: LinearPolicy
    model: EffectModel
    n_trees: int
    _arrays: dict[str, Any]
    _base: FloatArray
    _n_features: int
    shifted: bool = False
    #: (L, K): utility of arm k gains ``links[l, k] * sigmoid(link_scale[l] * raw[:, K + l])``
    links: FloatArray | None = None
    link_scale: FloatArray | None = None

    def __post_init__(self) -> None:
        self._groups = _groups(self._arrays["roots"])
        self._scorer = QuickScorer.build(self._arrays, self._n_features, self._base.shape[0])

    @property
    def kernel(self) -> str:
        """``"quickscorer"`` (the fast path) or ``"walk"`` (trees the scorer cannot take)."""
        return "walk" if self._scorer is None else "quickscorer"

    def _args(self, X: FloatArray) -> tuple[Any, ...]:
        a = self._arrays
        return (
            np.ascontiguousarray(X, dtype=np.float64), self._base.shape[0], self._base,
            self._n_features, a["roots"], self._groups, a["tree_out"], a["tree_scale"],
            a["tree_arm"],
            a["feature"], a["threshold"], a["kind"], a["missing"], a["default_left"],
            a["left"], a["right"], a["cat_start"], a["cat_len"], a["cats"], a["leaf_value"],
        )

    def matrix(self, frame: Any) -> FloatArray:
        """Encode rows (DataFrame or LoggedData) into the model's feature matrix."""
        return self.model._matrix(frame)

    def encode_records(self, records: list[dict[str, Any]]) -> FloatArray:
        """Encode feature dicts (one per unit) without pandas: the per-request path.

        Numeric features become floats (None -> NaN); categorical ones become the
        code the model was trained with (unseen levels -> NaN, as in training).
        """
        spec = self.model.spec_
        lookups = self._lookups
        X = np.empty((len(records), self._n_features))
        n_num = len(spec.numeric)
        for i, rec in enumerate(records):
            for j, col in enumerate(spec.numeric):
                v = rec.get(col)
                X[i, j] = np.nan if v is None else float(v)
            for j, col in enumerate(spec.categorical):
                v = rec.get(col)
                X[i, n_num + j] = lookups[j].get(str(v), np.nan) if v is not None else np.nan
        return X

    @property
    def _lookups(self) -> list[dict[str, float]]:
        cached: list[dict[str, float]] | None = self.__dict__.get("_lookup_cache")
        if cached is None:
            cats = self.model.encoder_.categories
            cached = [
                {str(c): float(i) for i, c in enumerate(cats[col])}
                for col in self.model.spec_.categorical
            ]
            self.__dict__["_lookup_cache"] = cached
        return cached

    def _raw(self, X: FloatArray) -> FloatArray:
        """The kernel's sums: ``U_k(x)`` plus a per-row amount common to all arms."""
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise InvalidParameterError(
                f"'X' must be an encoded matrix with {self._n_features} columns; "
                f"got shape {X.shape}. Encode frames with .matrix(frame)."
            )
        if self._scorer is not None:
            return self._scorer.raw(X, self._base)
        return self._walk_raw(X)

    def _walk_raw(self, X: FloatArray) -> FloatArray:
        """The kernel's sums by walking every tree (the reference the scorer must match)."""
        fn = _utilities if X.shape[0] >= 256 else _utilities_serial
        raw: FloatArray = fn(*self._args(X))
        return raw

    def _linked(self, raw: FloatArray) -> FloatArray:
        """The arms' columns plus the probability terms of binary outcomes' models."""
        if self.links is None or self.link_scale is None:
            return raw
        K = self.links.shape[1]
        probs = 1.0 / (1.0 + np.exp(-self.link_scale[None, :] * raw[:, K:]))
        out: FloatArray = raw[:, :K] + probs @ self.links
        return out

    def utilities_matrix(self, X: FloatArray) -> FloatArray:
        """``U_k(x)`` for encoded rows, shape (n, K)."""
        raw = self._raw(X)
        util = raw[:, : self.policy.spec.n_treatments].copy()
        if self.shifted:
            util -= (util[:, 0] - self._base[0])[:, None]
        if self.links is not None:
            util += self._linked(raw) - raw[:, : util.shape[1]]
        return util

    def choose_matrix(self, X: FloatArray) -> IntArray:
        """Treatment index per encoded row (the first arm of largest utility)."""
        actions: IntArray = np.argmax(self._linked(self._raw(X)), axis=1).astype(np.int64)
        return actions

    def choose(self, frame: Any) -> IntArray:
        """Treatment index per row of a DataFrame (spec features) or LoggedData."""
        out: IntArray = self.choose_matrix(self.matrix(frame))
        return out


_Target = tuple[int, float, float]  # (arm column, scale, S-learner arm value or NaN)


def _link_scale(dump: dict[str, Any]) -> float | None:
    """The sigmoid's scale of a binary-objective booster's dump, or None (an additive one)."""
    objective = str(dump.get("objective", ""))
    if not objective.startswith(("binary", "cross_entropy")):
        return None
    found = re.search(r"sigmoid:([0-9.eE+-]+)", objective)
    return float(found.group(1)) if found else 1.0


_Link = tuple[int, float, dict[int, float]]  # (output column, sigmoid scale, coef per arm)


def _terms(
    model: EffectModel, cells: list[tuple[int, int]], sw: FloatArray
) -> tuple[list[tuple[Any, list[_Target], bool, dict[str, Any]]], bool, list[_Link]]:
    """``(booster, targets, arm_trees_only)`` per booster, and whether any term was shifted.

    ``U_k = base_k + sum_m sw_m tau_{k,m}`` and every ``tau_{k,m}`` is a sum of
    terms ``coef * booster(x[, arm])`` (:meth:`EffectModel.terms`; the
    learner's own account of itself). A (booster, arm) term that every treated
    arm carries with the same coefficient (``-c f(x, 0)`` of the S- and
    T-learners' control models) is instead added once to arm 0's column with
    the opposite sign (``shifted``): the argmax is unchanged and the utilities
    are recovered by one subtraction. A booster evaluated at arm values whose
    coefficients cancel in every treated arm (``f(x, k) - f(x, 0)``) gets the
    flag ``arm_trees_only``: its trees that never split on the arm add nothing
    and are left out.
    """
    n_treat = model.spec_.n_treatments
    treated = list(range(1, n_treat))
    # (booster id, arm) -> booster, arm and the coefficient per treated column
    coefs: dict[tuple[int, int | None], tuple[Any, int | None, dict[int, float]]] = {}
    for k, m in cells:
        for term in model.terms(k, m):
            acc = coefs.setdefault((id(term.model), term.arm), (term.model, term.arm, {}))
            acc[2][k] = acc[2].get(k, 0.0) + float(sw[m]) * term.coef
    shifted = False
    targets: dict[int, tuple[Any, list[_Target], dict[int, float]]] = {}
    dumps: dict[int, dict[str, Any]] = {}
    links: list[_Link] = []
    for booster, arm, per_k in coefs.values():
        value = float("nan") if arm is None else float(arm)
        entry = targets.setdefault(id(booster), (booster, [], dict.fromkeys(treated, 0.0)))
        if id(booster) not in dumps:
            dumps[id(booster)] = booster.dump_model()
        scale = _link_scale(dumps[id(booster)])
        if scale is not None:  # a probability: its raw sum in a column of its own
            column = n_treat + len(links)
            links.append((column, scale, dict(per_k)))
            entry[1].append((column, 1.0, value))
            continue
        common = set(per_k.values())
        if n_treat > 2 and sorted(per_k) == treated and len(common) == 1:
            c = common.pop()
            entry[1].insert(0, (0, -c, value))  # arm 0 first: the order the arm values walk
            shifted = True
        else:
            entry[1].extend((k, c, value) for k, c in per_k.items())
        if arm is not None:
            for k, c in per_k.items():
                entry[2][k] += c
    out: list[tuple[Any, list[_Target], bool, dict[str, Any]]] = []
    for booster, tgts, net in targets.values():
        evaluated_at_arms = any(not np.isnan(v) for _, _, v in tgts)
        linked = any(t[0] >= n_treat for t in tgts)  # a sigmoid does not cancel
        arm_only = evaluated_at_arms and not linked and all(v == 0.0 for v in net.values())
        out.append((booster, tgts, arm_only, dumps[id(booster)]))
    return out, shifted, links


def compile_policy(policy: LinearPolicy, model: EffectModel) -> CompiledPolicy:
    """Compile ``policy`` over ``model``'s LightGBM effect models.

    Parameters
    ----------
    policy : LinearPolicy
    model : EffectModel
        Fitted with ``base="lightgbm"``.

    Returns
    -------
    CompiledPolicy
        Its ``choose(frame)`` equals ``policy.choose(model.predict(frame))``
        up to floating-point rounding of exact ties.
    """
    if not hasattr(model, "chosen_"):
        raise NotFittedError("compile_policy needs a fitted EffectModel; call .fit(data) first.")
    if model.base != "lightgbm":
        raise InvalidParameterError(
            f"compile_policy compiles LightGBM effect models; this model's base is "
            f"{model.base!r}. Fit the model with base='lightgbm' to serve it compiled."
        )
    if policy.spec.arms != model.spec_.arms or (
        policy.spec.outcome_names != model.spec_.outcome_names
    ):
        raise InvalidParameterError(
            "the policy's spec and the model's spec differ in treatments or outcomes; "
            "build the policy from model.spec_."
        )
    sw = policy.signed_weights()  # (M,) w_m * s_m
    n_treat = policy.spec.n_treatments
    base = (policy.bias_matrix @ sw).astype(np.float64)  # (K,)
    cells = [
        (k, m) for k in range(1, n_treat) for m in range(policy.spec.n_outcomes) if sw[m] != 0.0
    ]
    n_features = len(model.spec_.numeric) + len(model.spec_.categorical)
    builder = _Builder(n_features)
    terms, shifted, links = _terms(model, cells, sw)
    for booster, targets, arm_only, dump in terms:
        builder.add_targets(booster, targets, arm_trees_only=arm_only, dump=dump)
    arrays = builder.arrays()
    link_coef = link_scale = None
    if links:
        base = np.r_[base, np.zeros(len(links))]
        link_coef = np.zeros((len(links), n_treat))
        for i, (_, _, per_k) in enumerate(links):
            for k, c in per_k.items():
                link_coef[i, k] = c
        link_scale = np.array([s for _, s, _ in links], dtype=np.float64)
    return CompiledPolicy(
        policy=policy, model=model, n_trees=len(builder.roots), _arrays=arrays,
        _base=base, _n_features=n_features, shifted=shifted, links=link_coef,
        link_scale=link_scale,
    )
