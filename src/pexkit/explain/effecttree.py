"""Distill-HTE: one shallow multi-output regression tree over every (treatment, outcome) effect.

The model's effects ``tau_{k,m}(x)`` (k = 1..K-1, m = 1..M) are standardized
per task (``(tau - mean) / sd``) so that every task weighs the same, and one
multi-output CART tree (scikit-learn's ``DecisionTreeRegressor``, squared error
summed over tasks) is fitted to all of them at once: the same if-then rules then
describe how every effect varies. Its fidelity is, per task, the share of the
model's effect variance that the tree's leaf means reproduce (R^2, in-sample on
the fitting units: a measure of how well the rules summarize the model, not of
how accurate the model is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.tree import DecisionTreeRegressor

from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.exceptions import InvalidDataError, InvalidParameterError
from pexkit.execution import is_distributed, refuse_distributed
from pexkit.explain._rules import condition, describe_path
from pexkit.spec import ExperimentSpec

__all__ = ["EffectLeaf", "EffectTree", "distill_effects"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class EffectLeaf:
    """One leaf of an effect tree.

    Attributes
    ----------
    index : int
        Leaf number, left to right (what :meth:`EffectTree.apply` returns).
    node : int
        Node id in the underlying scikit-learn tree.
    conditions : list of str
    n : int
        Fitting units in the leaf.
    share : float
    effects : ndarray of shape (n_treatments, n_outcomes)
        Mean model effect in the leaf (original units; control row 0).
    """

    index: int
    node: int
    conditions: list[str]
    n: int
    share: float
    effects: FloatArray

    @property
    def rule(self) -> str:
        """The conditions joined by "and" ("all units" for a single leaf)."""
        return " and ".join(self.conditions) or "all units"


def _cells(spec: ExperimentSpec) -> list[tuple[int, int]]:
    return [(k, m) for k in range(1, spec.n_treatments) for m in range(spec.n_outcomes)]


class EffectTree:
    """A multi-output regression tree over every standardized (treatment, outcome) effect.

    Build it with :func:`distill_effects`.

    Attributes
    ----------
    estimator : DecisionTreeRegressor
        Fitted on standardized effects, one output per (treatment, outcome).
    spec : ExperimentSpec
    center, scale : ndarray of shape (n_treatments - 1, n_outcomes)
        Standardization of each task (effects = center + scale * output).
    r2 : DataFrame
        Columns treatment, outcome, r2: per-task fidelity on the fitting units.
    n_units : int
        Fitting units.
    """

    def __init__(
        self,
        estimator: DecisionTreeRegressor,
        model: EffectModel,
        center: FloatArray,
        scale: FloatArray,
        missing: list[str],
        n_units: int,
        r2: pd.DataFrame,
        source: str,
    ) -> None:
        self.estimator = estimator
        self.model = model
        self.spec: ExperimentSpec = model.spec_
        self.center = center
        self.scale = scale
        self.missing = missing
        self.n_units = n_units
        self.r2 = r2
        self.source = source
        self.feature_names = list(self.spec.features)
        self.categories: dict[str, list[str]] = {
            str(k): [str(c) for c in v] for k, v in model.encoder_.categories.items()
        }
        tree = estimator.tree_
        self._leaf_nodes = [int(i) for i in _leaf_order(tree)]
        self._leaf_number = np.full(tree.node_count, -1, dtype=np.int64)
        self._leaf_number[self._leaf_nodes] = np.arange(len(self._leaf_nodes))

    # ----------------------------------------------------------- predicting
    def _matrix(self, X: Any) -> FloatArray:
        if isinstance(X, np.ndarray):
            arr = np.asarray(X, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != len(self.feature_names):
                raise InvalidParameterError(
                    f"'X' as a matrix must have {len(self.feature_names)} columns (the spec's "
                    f"features, encoded); got shape {arr.shape}. Pass a DataFrame instead."
                )
            return arr
        return self.model._matrix(X)

    def predict(self, X: Any) -> FloatArray:
        """Leaf-mean effects in original units, shape (n, n_treatments, n_outcomes).

        Parameters
        ----------
        X : DataFrame, LoggedData or encoded matrix
        """
        z = np.asarray(self.estimator.predict(self._matrix(X)), dtype=np.float64)
        n = z.shape[0]
        K, M = self.spec.n_treatments, self.spec.n_outcomes
        out = np.zeros((n, K, M))
        out[:, 1:, :] = self.center[None] + self.scale[None] * z.reshape(n, K - 1, M)
        return out

    def apply(self, X: Any) -> IntArray:
        """Leaf number (left to right, as in :meth:`leaves`) per row."""
        nodes = np.asarray(self.estimator.apply(self._matrix(X)), dtype=np.int64)
        out: IntArray = self._leaf_number[nodes]
        return out

    # --------------------------------------------------------------- rules
    def _split(self, node: int, left: bool) -> tuple[str, float, bool, list[str] | None, bool | None]:
        tree = self.estimator.tree_
        name = self.feature_names[int(tree.feature[node])]
        missing_left: bool | None = None
        if name in self.missing:
            missing_left = bool(tree.missing_go_to_left[node])
        return name, float(tree.threshold[node]), left, self.categories.get(name), missing_left

    def _condition(self, node: int, left: bool) -> str:
        return condition(*self._split(node, left))

    def leaves(self) -> list[EffectLeaf]:
        """Leaves left to right with their rules, sizes and mean effects."""
        tree = self.estimator.tree_
        K, M = self.spec.n_treatments, self.spec.n_outcomes
        total = int(tree.n_node_samples[0])
        out: list[EffectLeaf] = []

        def walk(node: int, path: list[Any]) -> None:
            left, right = int(tree.children_left[node]), int(tree.children_right[node])
            if left < 0:
                effects = np.zeros((K, M))
                z = np.asarray(tree.value[node][:, 0]).reshape(K - 1, M)
                effects[1:] = self.center + self.scale * z
                n = int(tree.n_node_samples[node])
                out.append(EffectLeaf(len(out), node, describe_path(path), n, n / total, effects))
                return
            walk(left, [*path, self._split(node, True)])
            walk(right, [*path, self._split(node, False)])

        walk(0, [])
        return out

    def rule_lines(self) -> list[tuple[int, str]]:
        """``(indent level, text)`` lines of the if/else rendering (``str(tree)``)."""
        tree = self.estimator.tree_
        leaves = {leaf.node: leaf for leaf in self.leaves()}
        spec = self.spec
        lines: list[tuple[int, str]] = []

        def walk(node: int, level: int) -> None:
            left, right = int(tree.children_left[node]), int(tree.children_right[node])
            if left < 0:
                leaf = leaves[node]
                effects = ", ".join(
                    f"{spec.arms[k]}:{spec.outcome_names[m]} {leaf.effects[k, m]:+.3g}"
                    for k, m in _cells(spec)
                )
                lines.append((level, f"-> {leaf.share:.0%} of units: {effects}"))
                return
            lines.append((level, f"if {self._condition(node, True)}:"))
            walk(left, level + 1)
            lines.append((level, f"else:  # {self._condition(node, False)}"))
            walk(right, level + 1)

        walk(0, 0)
        return lines

    def __str__(self) -> str:
        head = "effect tree (R^2 " + ", ".join(
            f"{r.treatment}:{r.outcome} {r.r2:.2f}" for r in self.r2.itertuples()
        ) + ")"
        return head + "\n" + "\n".join("    " * lv + text for lv, text in self.rule_lines())

    def __repr__(self) -> str:
        return f"EffectTree(depth={self.estimator.get_depth()}, leaves={len(self._leaf_nodes)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: per-task R^2, leaves (rules, shares, mean effects) and rule lines."""
        spec = self.spec
        return {
            "kind": "effect_tree",
            "source": self.source,
            "n_units": self.n_units,
            "depth": int(self.estimator.get_depth()),
            "r2": [
                {"treatment": str(t), "outcome": str(o), "r2": float(v) if np.isfinite(v) else None}
                for t, o, v in zip(
                    self.r2["treatment"], self.r2["outcome"], self.r2["r2"].to_numpy(np.float64),
                    strict=True,
                )
            ],
            "leaves": [
                {
                    "index": leaf.index,
                    "rule": leaf.rule,
                    "conditions": list(leaf.conditions),
                    "n": leaf.n,
                    "share": leaf.share,
                    "effects": {
                        spec.arms[k]: {
                            o: float(leaf.effects[k, m]) for m, o in enumerate(spec.outcome_names)
                        }
                        for k in range(1, spec.n_treatments)
                    },
                }
                for leaf in self.leaves()
            ],
            "rules": [{"level": lv, "text": text} for lv, text in self.rule_lines()],
        }


def _leaf_order(tree: Any) -> list[int]:
    out: list[int] = []

    def walk(node: int) -> None:
        left = int(tree.children_left[node])
        if left < 0:
            out.append(node)
            return
        walk(left)
        walk(int(tree.children_right[node]))

    walk(0)
    return out


def _effects_for(
    model: EffectModel, data: LoggedData | None
) -> tuple[LoggedData, FloatArray, NDArray[np.int64] | None]:
    """(data, effects, folds): out-of-fold effects on training rows, else predictions.

    ``folds`` is each row's cross-fitting fold when every row of ``data`` is a
    training row (the training log itself, a reloaded copy or a subset of it),
    else None.
    """
    model._check_fitted()
    data = model.data_ if data is None else data
    refuse_distributed(data, "this explanation (distill, segments, effect trees)")
    if not isinstance(data, LoggedData):
        raise InvalidDataError(
            f"'data' must be a LoggedData (or None for the model's own data); got "
            f"{type(data).__name__}. Wrap frames with LoggedData.from_frame(df, spec)."
        )
    if data.spec != model.spec_:
        raise InvalidDataError(
            "'data' was logged under a different spec than the model was fitted on; "
            f"model arms {list(model.spec_.arms)} / outcomes {list(model.spec_.outcome_names)}, "
            f"data arms {list(data.spec.arms)} / outcomes {list(data.spec.outcome_names)}."
        )
    rows = model.training_rows(data)
    folds = np.asarray(model.folds_)[rows] if (rows >= 0).all() else None
    tau = model.effects_for(data, rows)  # out-of-fold on every training row
    return data, tau, folds


def _check_tree_params(max_depth: Any, min_share: Any) -> None:
    if not isinstance(max_depth, int | np.integer) or not 1 <= max_depth <= 6:
        raise InvalidParameterError(
            f"'max_depth' must be an integer from 1 to 6 (deeper trees stop being readable); "
            f"got {max_depth!r}."
        )
    if not isinstance(min_share, float | int) or not 0 < min_share <= 0.5:
        raise InvalidParameterError(
            f"'min_share' (smallest leaf, as a share of the units) must be in (0, 0.5]; got "
            f"{min_share!r}."
        )


def fit_effect_tree(
    model: EffectModel,
    X: FloatArray,
    tau: FloatArray,
    max_depth: int,
    min_share: float,
    *,
    max_rows: int | None = 200_000,
    random_state: int = 0,
    source: str = "",
) -> EffectTree:
    """Fit an :class:`EffectTree` to an encoded matrix and effects (n, K, M)."""
    n = X.shape[0]
    if n < 2:
        raise InvalidDataError(f"an effect tree needs at least 2 units; got {n}.")
    Y = tau[:, 1:, :].reshape(n, -1)
    rows = np.arange(n)
    if max_rows is not None and n > max_rows:
        rows = np.sort(np.random.default_rng(random_state).choice(n, max_rows, replace=False))
    return effect_tree_from(
        model, X[rows], Y[rows], Y.mean(axis=0), Y.std(axis=0), n, max_depth, min_share,
        random_state, source, np.asarray(np.isnan(X).any(axis=0)),
        lambda est, center, scale: effect_tree_sums(X, Y, est, center, scale),
    )


def effect_tree_sums(
    X: FloatArray, Y: FloatArray, estimator: Any, center: FloatArray, scale: FloatArray
) -> FloatArray:
    """Per task: the tree's squared error on the standardized effects, their sum and sum of squares."""
    Z = (Y - center) / scale
    pred = np.asarray(estimator.predict(X), dtype=np.float64).reshape(Z.shape[0], -1)
    out: FloatArray = np.concatenate([((Z - pred) ** 2).sum(axis=0), Z.sum(axis=0),
                                      (Z**2).sum(axis=0)])
    return out


def effect_tree_from(
    model: EffectModel, X_fit: FloatArray, Y_fit: FloatArray, center: FloatArray,
    scale: FloatArray, n: int, max_depth: int, min_share: float, random_state: int,
    source: str, missing: NDArray[np.bool_], sums: Any,
) -> EffectTree:
    """The tree fitted on the sample ``(X_fit, Y_fit)`` of ``n`` units whose effects
    (flattened, (n, tasks)) have mean ``center`` and sd ``scale``; ``sums(estimator,
    center, scale)`` gives :func:`effect_tree_sums` over all ``n`` units (for R^2)."""
    spec = model.spec_
    K, M = spec.n_treatments, spec.n_outcomes
    scale = np.where(scale > 0, scale, 1.0)
    est = DecisionTreeRegressor(
        max_depth=int(max_depth),
        min_samples_leaf=max(1, math.ceil(min_share * X_fit.shape[0])),
        random_state=random_state,
    )
    est.fit(X_fit, (Y_fit - center) / scale)
    q = center.shape[0]
    totals = sums(est, center, scale)
    sse, z_sum, z_sq = totals[:q], totals[q:2 * q], totals[2 * q:]
    sst = np.maximum(z_sq - z_sum**2 / n, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst > 1e-12 * n, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)
    frame = pd.DataFrame(
        [
            {"treatment": spec.arms[k], "outcome": spec.outcome_names[m], "r2": float(r2[t])}
            for t, (k, m) in enumerate(_cells(spec))
        ]
    )
    names = [spec.features[j] for j in np.flatnonzero(missing)]
    return EffectTree(
        est, model, center.reshape(K - 1, M), scale.reshape(K - 1, M), names, n, frame, source
    )


def distill_effects(
    model: EffectModel,
    data: LoggedData | None = None,
    max_depth: int = 3,
    *,
    min_share: float = 0.01,
    max_rows: int | None = 200_000,
    random_state: int = 0,
) -> EffectTree:
    """One readable tree for every (treatment, outcome) effect of ``model``.

    Parameters
    ----------
    model : EffectModel
    data : LoggedData, optional
        Default: the model's own data with its out-of-fold effects
        (``model.effects_``); other data uses ``model.predict(data)``. On a
        cluster, the model's training ``DistributedLog`` (fitted on the same
        sample, R^2 from sums over the parts).
    max_depth : int
        1-6.
    min_share : float
        Smallest leaf as a share of the fitting units.
    max_rows : int or None
        Fit on a random sample of at most this many units (R^2 uses every unit).
    random_state : int

    Returns
    -------
    EffectTree
        ``.predict(X)`` (n, K, M) in original units, ``.r2`` per task,
        ``.leaves()``, ``str(tree)`` rules, ``.to_dict()``.

    Examples
    --------
    >>> import pexkit as px
    >>> sim = px.simulate("synthetic", n_units=2000, seed=0, n_features=5)
    >>> model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 10}).fit(sim.data)
    >>> tree = distill_effects(model, max_depth=2)
    >>> tree.predict(sim.data).shape
    (2000, 3, 3)
    """
    _check_tree_params(max_depth, min_share)
    model._check_fitted()
    if is_distributed(data if data is not None else model.data_):
        from pexkit.execution.explain import effect_tree_on_cluster

        return effect_tree_on_cluster(
            model, model.data_ if data is None else data, int(max_depth), float(min_share),
            max_rows=max_rows, random_state=random_state, source="out-of-fold effects",
        )
    data, tau, folds = _effects_for(model, data)
    X = model._matrix(data)
    source = "out-of-fold effects" if folds is not None else "predicted effects"
    return fit_effect_tree(
        model, X, tau, int(max_depth), float(min_share), max_rows=max_rows,
        random_state=random_state, source=source,
    )
