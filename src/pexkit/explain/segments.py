"""Segments with honest effect estimates, and which features drive the effects.

:func:`segments` turns the leaves of an effect tree into segments and estimates
every (treatment, outcome) effect inside each one from the doubly robust scores
``G = model.scores_``: ``mean_i (G[i,k,m] - G[i,0,m])`` over the segment's
units, standard error ``sd / sqrt(n)``.

Honesty. An estimate is honest when the segment boundaries were drawn without
the outcomes it averages. A plain split-sample (tree on one random half,
estimates on the other) is *not* honest here: the out-of-fold effect of a unit
in fold g comes from models fitted on the other folds, so a tree fitted to half
of the units has seen, through those models, the outcomes of the other half.
What is honest is the cross-fitting fold itself: the units of fold f have
effects from models that never saw fold f, and DR scores from outcome models
that never saw fold f. So on the model's own data the segment tree is fitted to
one fold's effects (the largest fold) and the estimates are that fold's DR
scores: given the other folds, the segments are a function of fold f's features
only, and each estimate is unbiased for its segment's average effect with the
usual standard error. On held-out data (units the model was not fitted on) the
tree is fitted to the model's predictions and every unit is used for both.
A tree passed in by the caller was fitted on something we cannot check; on the
model's own data its estimates are flagged ``honest=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats
from sklearn.ensemble import RandomForestRegressor

from pexkit._stats import mean_se
from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation import build_scores
from pexkit.exceptions import InvalidParameterError
from pexkit.execution import is_distributed
from pexkit.explain.effecttree import (
    EffectTree,
    _check_tree_params,
    _effects_for,
    fit_effect_tree,
)
from pexkit.spec import ExperimentSpec

__all__ = ["Segments", "feature_importance", "segments"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

COLUMNS = [
    "segment", "rule", "size", "share", "treatment", "outcome", "estimate", "se",
    "ci_low", "ci_high", "best_treatment",
]


@dataclass
class Segments:
    """Segments (leaves of an effect tree) with honest DR estimates of every effect.

    Attributes
    ----------
    tree : EffectTree
        The tree whose leaves are the segments.
    frame : DataFrame
        One row per (segment, non-control treatment, outcome); see :meth:`to_frame`.
    spec : ExperimentSpec
    honest : bool
        Whether the estimates' units' outcomes were unused when drawing the segments.
    method : str
        How the segments were found and estimated, in words.
    n_units : int
        Units behind the estimates.
    units : ndarray of int
        Their row positions in the data.
    confidence : float
    """

    tree: EffectTree
    frame: pd.DataFrame
    spec: ExperimentSpec
    honest: bool
    method: str
    n_units: int
    units: IntArray
    confidence: float = 0.95

    def assign(self, X: Any) -> NDArray[np.str_]:
        """Segment label per row of a frame, LoggedData or encoded matrix."""
        labels = np.array([f"S{i + 1}" for i in range(len(self.tree.leaves()))])
        out: NDArray[np.str_] = labels[self.tree.apply(X)]
        return out

    def __len__(self) -> int:
        return int(self.frame["segment"].nunique())

    def to_frame(self) -> pd.DataFrame:
        """Columns segment, rule, size, share, treatment, outcome, estimate, se,
        ci_low, ci_high, best_treatment (per segment and outcome, control included:
        the arm with the best goal-signed estimate)."""
        return self.frame.copy()

    def best(self) -> pd.DataFrame:
        """Per segment and outcome: the best treatment and its estimate (0 for control)."""
        rows = []
        for (seg, outcome), group in self.frame.groupby(["segment", "outcome"], sort=False):
            best = str(group["best_treatment"].iloc[0])
            hit = group[group["treatment"] == best]
            rows.append({
                "segment": seg, "rule": group["rule"].iloc[0], "outcome": outcome,
                "best_treatment": best,
                "estimate": float(hit["estimate"].iloc[0]) if len(hit) else 0.0,
                "ci_low": float(hit["ci_low"].iloc[0]) if len(hit) else 0.0,
                "ci_high": float(hit["ci_high"].iloc[0]) if len(hit) else 0.0,
            })
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: one entry per segment with its effects and best treatments."""
        out = []
        for seg, group in self.frame.groupby("segment", sort=False):
            first = group.iloc[0]
            out.append({
                "segment": str(seg),
                "rule": str(first["rule"]),
                "size": int(first["size"]),
                "share": float(first["share"]),
                "effects": [
                    {
                        "treatment": str(r.treatment), "outcome": str(r.outcome),
                        **{c: _num(getattr(r, c)) for c in ("estimate", "se", "ci_low", "ci_high")},
                    }
                    for r in group.itertuples()
                ],
                "best": {
                    str(o): str(g["best_treatment"].iloc[0])
                    for o, g in group.groupby("outcome", sort=False)
                },
            })
        return {
            "kind": "segments",
            "honest": self.honest,
            "method": self.method,
            "n_units": self.n_units,
            "confidence": self.confidence,
            "segments": out,
        }

    def __repr__(self) -> str:
        return f"Segments({len(self)} segments, n_units={self.n_units}, honest={self.honest})"

    def __str__(self) -> str:
        lines = [repr(self), self.method]
        for seg, group in self.frame.groupby("segment", sort=False):
            first = group.iloc[0]
            lines.append(f"{seg} ({first['share']:.0%}, n={first['size']}): {first['rule']}")
            for r in group.itertuples():
                lines.append(
                    f"    {r.treatment}:{r.outcome} {r.estimate:+.4g} [{r.ci_low:+.4g}, "
                    f"{r.ci_high:+.4g}]"
                )
        return "\n".join(lines)


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def segments(
    model: EffectModel,
    data: LoggedData | None = None,
    tree: EffectTree | None = None,
    max_depth: int = 2,
    min_share: float = 0.05,
    *,
    alpha: float = 0.05,
    random_state: int = 0,
) -> Segments:
    """Segments from an effect tree's leaves, with honest DR effect estimates.

    Parameters
    ----------
    model : EffectModel
    data : LoggedData, optional
        Default: the model's own data (segments found and estimated on one
        cross-fitting fold, see the module docstring); else held-out units.
        On a cluster, the model's training ``DistributedLog``
        (:mod:`pexkit.execution.explain`).
    tree : EffectTree, optional
        Segments to use; default a Distill-HTE tree (:func:`distill_effects`)
        fitted as described in the module docstring.
    max_depth : int
        Depth of the default tree (1-6): up to ``2**max_depth`` segments.
    min_share : float
        Smallest segment of the default tree, as a share of its fitting units.
    alpha : float
        1 - confidence level of the intervals.
    random_state : int

    Returns
    -------
    Segments
    """
    _check_tree_params(max_depth, min_share)
    if not 0 < alpha < 1:
        raise InvalidParameterError(f"'alpha' must be in (0, 1); got {alpha!r}.")
    if tree is not None and not isinstance(tree, EffectTree):
        raise InvalidParameterError(
            f"'tree' must be an EffectTree (from distill_effects) or None; got "
            f"{type(tree).__name__}."
        )
    model._check_fitted()
    if is_distributed(data if data is not None else model.data_):
        from pexkit.execution.explain import segments_on_cluster

        return segments_on_cluster(model, model.data_ if data is None else data, tree,
                                   int(max_depth), float(min_share), alpha, random_state)
    data, tau, folds = _effects_for(model, data)
    in_sample = folds is not None
    spec = model.spec_
    X = model._matrix(data)
    G = build_scores(data, model).dr  # out-of-fold on training rows
    if folds is not None and tree is None:
        counts = np.bincount(folds)
        fold = int(np.argmax(counts))
        rows = np.flatnonzero(folds == fold)
        tree = fit_effect_tree(
            model, X[rows], tau[rows], int(max_depth), float(min_share),
            random_state=random_state, source=f"out-of-fold effects of fold {fold}",
        )
        honest = True
        method = fold_method(fold, rows.shape[0], data.n_units)
    elif in_sample:
        assert tree is not None
        rows = np.arange(data.n_units)
        honest = False
        method = GIVEN_TREE_METHOD
    else:
        rows = np.arange(data.n_units)
        if tree is None:
            tree = fit_effect_tree(
                model, X, tau, int(max_depth), float(min_share), random_state=random_state,
                source="predicted effects on held-out data",
            )
        honest = True
        method = (
            f"Segments estimated on {data.n_units:,} held-out units (the model never saw their "
            "outcomes)."
        )
    leaf = tree.apply(X[rows])
    sums = leaf_sums(leaf, G[rows], len(tree.leaves()))
    clustered = None
    if data.clusters is not None:
        clustered = leaf_cluster_se(leaf, G[rows], data.clusters[rows], len(tree.leaves()))
    return segments_from_sums(tree, sums, spec, alpha, honest, method, rows, clustered)


GIVEN_TREE_METHOD = (
    "Given segments estimated on the model's own data: the segments may have been drawn "
    "with these outcomes (through the model's effects), so the intervals can be too "
    "optimistic. Pass held-out data for honest estimates."
)


def fold_method(fold: int, n_fold: int, n: int) -> str:
    """How segments found and estimated on one cross-fitting fold were made, in words."""
    return (
        f"Segments found and estimated on cross-fitting fold {fold} ({n_fold:,} of {n:,} "
        "units): their effects and DR scores come from models that never saw their outcomes."
    )


def leaf_sums(leaf: IntArray, G: FloatArray, n_leaves: int) -> FloatArray:
    """Per leaf: units, and the sums and sums of squares of ``G[:, k] - G[:, 0]`` (all k, m).

    Shape (n_leaves, 1 + 2 K M); sums over disjoint units add up.
    """
    n, K, M = G.shape
    d = (G - G[:, :1, :]).reshape(n, K * M)
    out = np.zeros((n_leaves, 1 + 2 * K * M))
    out[:, 0] = np.bincount(leaf, minlength=n_leaves)
    np.add.at(out[:, 1:1 + K * M], leaf, d)
    np.add.at(out[:, 1 + K * M:], leaf, d**2)
    return out


def leaf_cluster_se(
    leaf: IntArray, G: FloatArray, clusters: IntArray, n_leaves: int
) -> FloatArray:
    """Cluster-robust SE of each leaf's mean of ``G[:, k] - G[:, 0]``; (n_leaves, K, M)."""
    n, K, M = G.shape
    d = (G - G[:, :1, :]).reshape(n, K * M)
    out = np.full((n_leaves, K, M), np.nan)
    for j in range(n_leaves):
        inside = leaf == j
        if inside.sum() > 1:
            out[j] = np.asarray(mean_se(d[inside], clusters[inside])).reshape(K, M)
    return out


def segments_from_sums(
    tree: EffectTree, sums: FloatArray, spec: ExperimentSpec, alpha: float, honest: bool,
    method: str, rows: IntArray, clustered: FloatArray | None = None,
) -> Segments:
    """:class:`Segments` from :func:`leaf_sums` over the estimation units ``rows``.

    ``clustered``: cluster-robust standard errors per leaf (:func:`leaf_cluster_se`)
    that replace the iid ones.
    """
    K, M = spec.n_treatments, spec.n_outcomes
    z = float(stats.norm.ppf(1 - alpha / 2))
    n_est = rows.shape[0]
    records: list[dict[str, Any]] = []
    for info in tree.leaves():
        size = int(round(sums[info.index, 0]))
        if size == 0:
            continue
        label = f"S{info.index + 1}"
        est = sums[info.index, 1:1 + K * M].reshape(K, M) / size
        se = np.full((K, M), np.nan)
        if size > 1:
            sq = sums[info.index, 1 + K * M:].reshape(K, M)
            se = np.sqrt(np.maximum(sq - size * est**2, 0.0) / (size - 1) / size)
        if clustered is not None:
            se = clustered[info.index].copy()
        est[0] = 0.0
        signed = est * np.asarray(spec.signs)[None, :]
        best = np.argmax(signed, axis=0)  # ties go to the lower arm (control first)
        for k in range(1, K):
            for m, outcome in enumerate(spec.outcome_names):
                records.append({
                    "segment": label, "rule": info.rule, "size": size,
                    "share": size / n_est, "treatment": spec.arms[k], "outcome": outcome,
                    "estimate": float(est[k, m]), "se": float(se[k, m]),
                    "ci_low": float(est[k, m] - z * se[k, m]),
                    "ci_high": float(est[k, m] + z * se[k, m]),
                    "best_treatment": spec.arms[int(best[m])],
                })
    frame = pd.DataFrame(records, columns=COLUMNS)
    return Segments(tree, frame, spec, honest, method, n_est, rows, 1 - alpha)


def feature_importance(
    model: EffectModel,
    data: LoggedData | None = None,
    *,
    n_estimators: int = 30,
    max_depth: int = 6,
    min_share: float = 0.005,
    max_rows: int = 50_000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Which features drive the effects: variance of the effects explained by each feature.

    A multi-output random forest is fitted to the standardized effects of every
    (treatment, outcome) (out-of-fold on the model's data, predicted on other
    data); a feature's importance is the decrease in squared error of the splits
    on it, summed over the trees and measured on the units (so it is a share of
    the effects' variance that the feature explains, mean-decrease-in-impurity
    style: it can favour features with many distinct values).

    Parameters
    ----------
    model : EffectModel
    data : LoggedData, optional
    n_estimators, max_depth : int
        Forest size.
    min_share : float
        Smallest leaf as a share of the sampled units.
    max_rows : int
        Units sampled (at random) for the forest.
    random_state : int

    Returns
    -------
    DataFrame
        Columns feature, importance (share of the total over every task, summing
        to 1) and ``importance[treatment][outcome]`` per task (each column sums
        to 1, or is 0 for an effect that does not vary); sorted by importance.
    """
    if not isinstance(n_estimators, int) or n_estimators < 1:
        raise InvalidParameterError(f"'n_estimators' must be a positive integer; got {n_estimators!r}.")
    if not isinstance(max_rows, int) or max_rows < 10:
        raise InvalidParameterError(f"'max_rows' must be an integer >= 10; got {max_rows!r}.")
    _check_tree_params(max_depth, min_share)
    data, tau, _ = _effects_for(model, data)
    spec = model.spec_
    X = model._matrix(data)
    n = X.shape[0]
    K, M = spec.n_treatments, spec.n_outcomes
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, max_rows, replace=False)) if n > max_rows else np.arange(n)
    Xs = X[rows]
    Y = tau[rows, 1:, :].reshape(rows.shape[0], (K - 1) * M)
    sd = Y.std(axis=0)
    Z = (Y - Y.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    forest = RandomForestRegressor(
        n_estimators=n_estimators, max_depth=int(max_depth),
        min_samples_leaf=max(2, math.ceil(min_share * rows.shape[0])),
        max_features=0.5, random_state=random_state, n_jobs=1,
    )
    forest.fit(Xs, Z[:, 0] if Z.shape[1] == 1 else Z)  # one effect: a 1-d target
    p = X.shape[1]
    decrease = np.zeros((p, Z.shape[1]))
    for est in forest.estimators_:
        path = est.decision_path(Xs).tocsc()  # (n, nodes)
        counts = np.asarray(path.sum(axis=0)).ravel()
        sums = np.asarray(path.T @ Z)
        squares = np.asarray(path.T @ (Z * Z))
        with np.errstate(invalid="ignore", divide="ignore"):
            sse = squares - np.where(counts[:, None] > 0, sums**2 / np.maximum(counts, 1)[:, None], 0.0)
        tree = est.tree_
        for node in range(tree.node_count):
            left, right = tree.children_left[node], tree.children_right[node]
            if left < 0:
                continue
            decrease[tree.feature[node]] += np.maximum(sse[node] - sse[left] - sse[right], 0.0)
    total = decrease.sum()
    frame = pd.DataFrame({
        "feature": list(spec.features),
        "importance": decrease.sum(axis=1) / total if total > 0 else np.zeros(p),
    })
    per_task = decrease.sum(axis=0)
    for t, (k, m) in enumerate((k, m) for k in range(1, K) for m in range(M)):
        col = decrease[:, t] / per_task[t] if per_task[t] > 0 else np.zeros(p)
        frame[f"importance[{spec.arms[k]}][{spec.outcome_names[m]}]"] = col
    return frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
