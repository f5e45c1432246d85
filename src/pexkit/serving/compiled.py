"""Compile a linear policy and the effect models it uses into flat tree arrays.

A launched policy answers one question per request: ``argmax_k U_k(x)`` with
``U_k(x) = sum_m w_m s_m (tau_{k,m}(x) + b_{k,m})``. Every meta-learner's
``tau_{k,m}`` is a weighted sum of gradient-boosted trees (T: fold-averaged
outcome models; X: the two imputed-effect models per fold; DR: the
pseudo-outcome models; S: one model evaluated at two arm values), so the whole
utility is one additive tree ensemble per treatment. :func:`compile_policy`
parses each LightGBM booster once (``dump_model``), folds the policy's weights
and signs into per-tree scales, and keeps only the cells whose outcome has a
non-zero weight. Decisions then run in a numba kernel with no Python per tree,
no model loading, and no LightGBM call: a single decision is a few
microseconds plus the feature encoding; batches run in parallel over rows.

The kernel follows LightGBM's own decision rules (``<=`` on numeric splits,
missing values by ``missing_type``/``default_left``, category sets on
categorical splits), so it reproduces ``EffectModel.predict`` to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from pexkit.effects.model import EffectModel
from pexkit.exceptions import InvalidParameterError, NotFittedError
from pexkit.policy.linear import LinearPolicy

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
        dump = booster.dump_model()
        for tree in dump["tree_info"]:
            self.roots.append(self._node(tree["tree_structure"]))
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


@numba.njit(cache=True, inline="always")
def _tree_leaf(  # noqa: PLR0913
    x: FloatArray, arm: float, n_features: int, root: int,
    feature: IntArray, threshold: FloatArray, kind: IntArray, missing: IntArray,
    default_left: Any, left: IntArray, right: IntArray,
    cat_start: IntArray, cat_len: IntArray, cats: IntArray,
) -> int:
    node = root
    while node >= 0:
        j = feature[node]
        v = arm if j == n_features else x[j]
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
    return -node - 1


@numba.njit(cache=True, parallel=True, nogil=True)
def _utilities(  # noqa: PLR0913
    X: FloatArray, n_out: int, base: FloatArray, n_features: int,
    roots: IntArray, tree_out: IntArray, tree_scale: FloatArray, tree_arm: FloatArray,
    feature: IntArray, threshold: FloatArray, kind: IntArray, missing: IntArray,
    default_left: Any, left: IntArray, right: IntArray,
    cat_start: IntArray, cat_len: IntArray, cats: IntArray, leaf_value: FloatArray,
) -> FloatArray:
    # tree-major within row blocks: one tree's nodes stay in cache for a block
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
        for t in range(roots.shape[0]):
            o = tree_out[t]
            sc = tree_scale[t]
            for i in range(lo, hi):
                leaf = _tree_leaf(
                    X[i], tree_arm[t], n_features, roots[t], feature, threshold, kind,
                    missing, default_left, left, right, cat_start, cat_len, cats,
                )
                out[i, o] += sc * leaf_value[leaf]
    return out


@numba.njit(cache=True, nogil=True)
def _utilities_serial(  # noqa: PLR0913
    X: FloatArray, n_out: int, base: FloatArray, n_features: int,
    roots: IntArray, tree_out: IntArray, tree_scale: FloatArray, tree_arm: FloatArray,
    feature: IntArray, threshold: FloatArray, kind: IntArray, missing: IntArray,
    default_left: Any, left: IntArray, right: IntArray,
    cat_start: IntArray, cat_len: IntArray, cats: IntArray, leaf_value: FloatArray,
) -> FloatArray:
    # tree-major, as in the parallel kernel: a small batch of concurrent requests
    # walks each tree for all its rows while the tree's nodes are in cache
    n = X.shape[0]
    out = np.empty((n, n_out))
    for i in range(n):
        for k in range(n_out):
            out[i, k] = base[k]
    for t in range(roots.shape[0]):
        o = tree_out[t]
        sc = tree_scale[t]
        for i in range(n):
            leaf = _tree_leaf(
                X[i], tree_arm[t], n_features, roots[t], feature, threshold, kind, missing,
                default_left, left, right, cat_start, cat_len, cats,
            )
            out[i, o] += sc * leaf_value[leaf]
    return out


@dataclass
class CompiledPolicy:
    """A linear policy with its effect models compiled to flat tree arrays.

    Attributes
    ----------
    policy : LinearPolicy
    n_trees : int
        Trees evaluated per decision (only cells with non-zero weight).
    """

    policy: LinearPolicy
    model: EffectModel
    n_trees: int
    _arrays: dict[str, Any]
    _base: FloatArray
    _n_features: int

    def _args(self, X: FloatArray) -> tuple[Any, ...]:
        a = self._arrays
        return (
            np.ascontiguousarray(X, dtype=np.float64), self._base.shape[0], self._base,
            self._n_features, a["roots"], a["tree_out"], a["tree_scale"], a["tree_arm"],
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

    def utilities_matrix(self, X: FloatArray) -> FloatArray:
        """``U_k(x)`` for encoded rows, shape (n, K)."""
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise InvalidParameterError(
                f"'X' must be an encoded matrix with {self._n_features} columns; "
                f"got shape {X.shape}. Encode frames with .matrix(frame)."
            )
        fn = _utilities if X.shape[0] >= 256 else _utilities_serial
        util: FloatArray = fn(*self._args(X))
        return util

    def choose_matrix(self, X: FloatArray) -> IntArray:
        """Treatment index per encoded row."""
        actions: IntArray = np.argmax(self.utilities_matrix(X), axis=1).astype(np.int64)
        return actions

    def choose(self, frame: Any) -> IntArray:
        """Treatment index per row of a DataFrame (spec features) or LoggedData."""
        out: IntArray = self.choose_matrix(self.matrix(frame))
        return out


def _terms(model: EffectModel, cells: list[tuple[int, int]]) -> list[tuple[Any, int, int, float, float]]:
    """``(booster, k, m, coefficient, arm)`` with ``tau_{k,m} = sum coef * booster``.

    ``arm`` is the value of the S-learner's appended arm column, or NaN.
    """
    n_folds = model.n_folds
    terms: list[tuple[Any, int, int, float, float]] = []
    nan = float("nan")
    for k, m in cells:
        learner = model.chosen_[(k, m)]
        if learner == "t":
            for fold in model.outcome_models_:
                terms.append((fold[k][m], k, m, 1.0 / len(model.outcome_models_), nan))
                terms.append((fold[0][m], k, m, -1.0 / len(model.outcome_models_), nan))
        elif learner == "dr":
            for md in model.learners_fitted_["dr"][k][m]:
                terms.append((md, k, m, 1.0 / n_folds, nan))
        elif learner == "x":
            g = model._x_weight(k)
            for t0, t1 in model.learners_fitted_["x"][k][m]:
                terms.append((t0, k, m, g / n_folds, nan))
                terms.append((t1, k, m, (1 - g) / n_folds, nan))
        elif learner == "s":
            _, models = model.learners_fitted_["s"]
            for f in range(n_folds):
                terms.append((models[m][f], k, m, 1.0 / n_folds, float(k)))
                terms.append((models[m][f], k, m, -1.0 / n_folds, 0.0))
        else:  # pragma: no cover - guarded by EffectModel
            raise InvalidParameterError(f"cannot compile learner {learner!r}")
    return terms


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
    for booster, k, m, coef, arm in _terms(model, cells):
        builder.add_booster(booster, k, coef * float(sw[m]), arm)
    arrays = builder.arrays()
    return CompiledPolicy(
        policy=policy, model=model, n_trees=len(builder.roots), _arrays=arrays,
        _base=base, _n_features=n_features,
    )
