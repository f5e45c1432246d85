"""Distill a black-box linear policy into a shallow policy tree, with what it costs.

Definitions (all utilities are the policy's own, ``u_i(k) = sum_m w_m s_m
(G[i,k,m] - G[i,0,m])``: the DR utility lift of arm k over control for unit i):

* **black box**: ``policy.choose(tau)``. On the model's own data ``tau`` is the
  out-of-fold effects ``model.effects_`` (each unit decided by models that never
  saw it: the cross-fitted black box, the version whose value pexkit evaluates
  honestly everywhere); on other data it is ``model.predict(data)``, the policy
  as it serves.
* **fidelity**: the share of units where the tree picks the black box's arm;
  its estimand is that share over the population the units come from.
  Measured out of sample (a tree fitted to the black box's choices agrees with
  them more on its own fitting units than elsewhere): the units are split in 5
  random parts and a tree of the same depth fitted without each part (on at most
  200,000 of the other units) decides it; slightly conservative for the
  returned tree, fitted on every unit.
* **value kept**: ``V(tree) / V(black box)``, with ``V(pi) = mean_i
  u_i(pi(x_i))`` the utility lift vs all-control. Above 1 when the tree beats a
  noisy black box.
* **gain kept**: ``(V(tree) - V(best)) / (V(black box) - V(best))``, the share
  of the black box's gain over the best single treatment (the arm with the
  largest ``V`` when sent to everyone, possibly control) that the tree keeps.

CIs: Wilson for fidelity; Fieller for the two ratios (the exact set of ratios
not rejected at 5%, from the joint normal means of numerator and denominator
terms; unbounded, ``(-inf, inf)``, when the denominator is not significantly
different from zero).

Honesty: a tree fitted to the out-of-fold effects of every unit carries, through
those effects, the outcomes of the units it is scored on (the effects of fold g
come from models fitted on the other folds). On the model's own data, the value
terms therefore come from cross-fitted trees: for each fold f, a tree of the
same depth fitted to fold f alone (whose effects never saw fold f's outcomes)
decides fold f's units. That estimates the value of the distillation procedure
with ``1 / n_folds`` of the data: slightly conservative for the returned tree,
which is fitted on every unit. On held-out data (units the model was not fitted
on) the value terms are the returned tree's own: its choices never depended on
those units' outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit._stats import Z95, mean_cov, mean_se
from pexkit.data import FeatureEncoder, LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation import build_scores
from pexkit.exceptions import InvalidParameterError
from pexkit.execution import is_distributed
from pexkit.explain.effecttree import _effects_for
from pexkit.explain.policytree import PolicyLeaf, PolicyTree, fit_policy_tree
from pexkit.policy import LinearPolicy
from pexkit.spec import ExperimentSpec

__all__ = ["CompiledDistilledPolicy", "DistilledPolicy", "distill"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

FIDELITY_SPLITS = 5
FIDELITY_MAX_FIT = 200_000  # units behind each cross-fitted fidelity tree, at most


def wilson(
    successes: float, n: float, z: float = Z95, clusters: IntArray | None = None,
    hits: NDArray[np.bool_] | None = None,
) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    With ``clusters`` (and the per-row ``hits``) the interval uses the
    effective sample size ``n / deff``, the design effect ``deff`` being the
    cluster-robust variance of the proportion over the iid one.
    """
    if clusters is not None and hits is not None and 0 < successes < n:
        iid = mean_se(hits.astype(np.float64)) ** 2
        deff = max(float(mean_se(hits.astype(np.float64), clusters)) ** 2 / iid, 1e-12)
        successes, n = successes / deff, n / deff
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (float(max(0.0, center - half)), float(min(1.0, center + half)))


def fieller(
    num: FloatArray, den: FloatArray, z: float = Z95, clusters: IntArray | None = None
) -> tuple[float, float, float]:
    """Ratio of means ``mean(num) / mean(den)`` and its Fieller confidence interval.

    The interval is ``{r : (a - r b)^2 <= z^2 Var(a - r b)}`` with ``a, b`` the
    means; it is unbounded when ``b`` is within ``z`` standard errors of zero.
    With ``clusters`` the variances are cluster-robust.
    """
    n = num.shape[0]
    cov = n * mean_cov(np.column_stack([num, den]), clusters)  # as a (ddof=1) term covariance
    return fieller_moments(n, float(num.mean()), float(den.mean()), cov, z)


def fieller_moments(
    n: int, a: float, b: float, cov: FloatArray, z: float = Z95
) -> tuple[float, float, float]:
    """:func:`fieller` from the means ``a, b`` and the (ddof=1) covariance of the terms."""
    ratio = a / b if b != 0 else float("nan")
    if n < 2:
        return ratio, -np.inf, np.inf
    saa, sab, sbb = float(cov[0, 0]) / n, float(cov[0, 1]) / n, float(cov[1, 1]) / n
    qa = b * b - z * z * sbb
    qb = a * b - z * z * sab
    qc = a * a - z * z * saa
    if qa <= 0:
        return ratio, -np.inf, np.inf
    root = float(np.sqrt(max(qb * qb - qa * qc, 0.0)))
    return ratio, (qb - root) / qa, (qb + root) / qa


def _jsonable_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class CompiledDistilledPolicy:
    """A distilled policy ready to serve in batch: one encoding pass, then the compiled tree.

    Only the features the tree splits on are encoded, by a
    :class:`~pexkit.data.FeatureEncoder` restricted to them (the model's
    categories, so the same codes and the same handling of unseen levels as
    ``EffectModel._matrix``); the tree then runs compiled over that matrix.

    Attributes
    ----------
    tree : CompiledTree
        Over the full encoded matrix (every feature of the spec).
    features : list of str
        The features the tree uses, in matrix order (:meth:`encode`'s columns).
    action_names : list of str
    """

    def __init__(self, tree: PolicyTree, model: EffectModel) -> None:
        self.model = model
        self.tree = tree.compile()
        self.action_names = list(tree.action_names)
        spec = model.spec_
        used = sorted({int(j) for j in self.tree.feature if j >= 0})
        self.features = [spec.features[j] for j in used]
        position = np.full(len(spec.features), -1, dtype=np.int64)
        position[used] = np.arange(len(used))
        compact_feature = np.where(self.tree.feature >= 0, position[np.maximum(self.tree.feature, 0)], -1)
        self._compact = replace(self.tree, feature=compact_feature, n_features=len(used))
        self._constant = int(self.tree.action[0]) if not used else None
        self._encoder: FeatureEncoder | None = None
        if used:
            raw = spec.to_dict()
            raw["features"] = {
                "numeric": [f for f in spec.numeric if f in self.features],
                "categorical": [f for f in spec.categorical if f in self.features],
            }
            sub = ExperimentSpec.from_dict(raw)
            cats = model.encoder_.categories
            self._encoder = FeatureEncoder(sub, {c: cats[c] for c in sub.categorical})

    def encode(self, X: Any) -> FloatArray:
        """Matrix of the used features (:attr:`features`) of a frame or LoggedData."""
        frame = X.X if isinstance(X, LoggedData) else X
        if self._encoder is None:
            return np.empty((len(frame), 0))
        return self._encoder.matrix(self._encoder.transform(frame))

    def choose_matrix(self, X: Any) -> IntArray:
        """Treatment index per row of an encoded matrix (float32 or float64): either
        :meth:`encode`'s (used features only) or ``EffectModel._matrix``'s (every feature)."""
        arr = np.asarray(X)
        if arr.ndim == 2 and arr.shape[1] == self._compact.n_features:
            return self._compact.choose(arr)
        return self.tree.choose(arr)

    def choose(self, X: Any) -> IntArray:
        """Treatment index per row of a frame (spec's feature columns) or LoggedData."""
        if self._constant is not None:
            frame = X.X if isinstance(X, LoggedData) else X
            return np.full(len(frame), self._constant, dtype=np.int64)
        return self._compact.choose(self.encode(X))

    def __repr__(self) -> str:
        return f"CompiledDistilledPolicy(features={self.features}, actions={self.action_names})"


@dataclass
class DistilledPolicy:
    """A policy tree that imitates a black-box policy (see the module docstring).

    Attributes
    ----------
    tree : PolicyTree
    model : EffectModel
    fidelity : float
        Share of units where the tree picks the black-box policy's treatment
        (estimated out of sample, see the module docstring).
    fidelity_ci : tuple of float
        Wilson 95% CI.
    value_kept : float
        Utility lift (vs all-control) of the tree over that of the black box.
    value_kept_ci : tuple of float
        Fieller 95% CI (``(-inf, inf)`` when the black box's lift is not
        significantly different from zero).
    gain_kept : float
        Share of the black box's utility gain over the best single treatment
        that the tree keeps.
    gain_kept_ci : tuple of float
    baseline : str
        The best single treatment (by DR utility lift, control included).
    lifts : dict
        ``{"tree" | "black box" | "all <arm>": {"lift", "se", "ci_low", "ci_high"}}``:
        DR utility lifts vs all-control (the tree's as in ``value_kept``).
    shares : dict
        Share of units the tree sends to each treatment.
    policy : LinearPolicy or None
    evaluation : str
        "cross-fitted" (the model's own data) or "held-out".
    n_units : int
    """

    tree: PolicyTree
    model: EffectModel
    fidelity: float
    fidelity_ci: tuple[float, float]
    value_kept: float
    value_kept_ci: tuple[float, float]
    gain_kept: float = float("nan")
    gain_kept_ci: tuple[float, float] = (float("nan"), float("nan"))
    baseline: str = ""
    lifts: dict[str, dict[str, float]] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)
    policy: LinearPolicy | None = None
    evaluation: str = "cross-fitted"
    n_units: int = 0

    def choose(self, X: Any) -> IntArray:
        """Treatment index per row of a frame (spec's feature columns) or LoggedData."""
        return self.tree.choose(self.model._matrix(X))

    def compile(self) -> CompiledDistilledPolicy:
        """The same decisions through one encoding pass and the compiled tree."""
        return CompiledDistilledPolicy(self.tree, self.model)

    def leaves(self) -> list[PolicyLeaf]:
        """The tree's leaves: rule, treatment, share of the fitting units."""
        return self.tree.leaves()

    def rule_lines(self) -> list[tuple[int, str]]:
        """``(indent level, text)`` lines of the tree's if/else rules."""
        return self.tree.rule_lines()

    def headline(self) -> str:
        """One line: fidelity and value kept with their CIs."""
        return (
            f"fidelity {self.fidelity:.1%} [{self.fidelity_ci[0]:.1%}, {self.fidelity_ci[1]:.1%}], "
            f"value kept {_pct(self.value_kept)} {_ci(self.value_kept_ci)}, gain over all {self.baseline or '?'} kept "
            f"{_pct(self.gain_kept)} {_ci(self.gain_kept_ci)}"
        )

    def __str__(self) -> str:
        return f"policy tree ({self.headline()}; {self.evaluation})\n{self.tree}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (infinite or undefined numbers as None)."""
        def ci(pair: tuple[float, float]) -> list[float | None]:
            return [_jsonable_float(pair[0]), _jsonable_float(pair[1])]

        return {
            "kind": "distilled_policy",
            "policy": self.policy.to_dict() if self.policy is not None else None,
            "fidelity": _jsonable_float(self.fidelity),
            "fidelity_ci": ci(self.fidelity_ci),
            "value_kept": _jsonable_float(self.value_kept),
            "value_kept_ci": ci(self.value_kept_ci),
            "gain_kept": _jsonable_float(self.gain_kept),
            "gain_kept_ci": ci(self.gain_kept_ci),
            "baseline": self.baseline,
            "lifts": {
                name: {k: _jsonable_float(v) for k, v in row.items()}
                for name, row in self.lifts.items()
            },
            "shares": dict(self.shares),
            "evaluation": self.evaluation,
            "n_units": self.n_units,
            "rules": [{"level": level, "text": text} for level, text in self.rule_lines()],
            "tree": self.tree.to_dict(),
        }


def _ci(ci: tuple[float, float]) -> str:
    """A share's CI in brackets, or in words when a ratio's denominator may be 0.

    >>> _ci((0.5, 0.9)), _ci((float("-inf"), float("inf"))), _ci((0.2, float("inf")))
    ('[50.0%, 90.0%]', '(no CI: the gain it keeps a share of may be 0)', '[at least 20.0%]')
    """
    lo, hi = ci
    if np.isfinite(lo) and np.isfinite(hi):
        return f"[{_pct(lo)}, {_pct(hi)}]"
    if np.isfinite(lo):
        return f"[at least {_pct(lo)}]"
    if np.isfinite(hi):
        return f"[at most {_pct(hi)}]"
    return "(no CI: the gain it keeps a share of may be 0)"


def _pct(x: float) -> str:
    return f"{x:.1%}" if np.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "n/a")


def _lift(terms: FloatArray, clusters: IntArray | None = None) -> dict[str, float]:
    n = terms.shape[0]
    var = n * float(mean_se(terms, clusters)) ** 2 if n > 1 else np.nan  # a term variance
    return lift_moments(n, float(terms.mean()), var)


def lift_moments(n: int, mean: float, var: float) -> dict[str, float]:
    """A lift's estimate, SE and normal CI from the mean and (ddof=1) variance of its terms."""
    se = float(np.sqrt(var / n)) if n > 1 else float("nan")
    return {"lift": mean, "se": se, "ci_low": mean - Z95 * se, "ci_high": mean + Z95 * se}


def distill(
    policy: LinearPolicy,
    model: EffectModel,
    data: LoggedData | None = None,
    max_depth: int = 3,
    *,
    min_leaf_share: float = 0.0,
    max_bins: int = 64,
    random_state: int = 0,
) -> DistilledPolicy:
    """Fit a cost-sensitive tree to ``policy``'s choices.

    The tree maximizes the summed estimated utility ``U_k(x_i)`` of its choices,
    so a wrong choice costs what it loses in utility against the black box's
    (which is the per-unit maximum). Fidelity, value kept and gain kept, and
    what exactly they measure, are defined in this module's docstring.

    Parameters
    ----------
    policy : LinearPolicy
    model : EffectModel
    data : LoggedData, optional
        Default: the data the model was fitted on (its out-of-fold effects;
        value terms cross-fitted). Other data must be units the model was not
        fitted on (a holdout), else its in-sample predictions flatter the black box.
        On a cluster, the model's training ``DistributedLog`` (the same tree and
        figures, from sums over its parts: :mod:`pexkit.execution.explain`).
    max_depth : int
        1-4.
    min_leaf_share : float
        Leaves smaller than this share of the units are merged into their
        sibling (a rule for 1% of users is rarely worth maintaining, and on small
        logs such leaves mostly fit noise). Default 0: the exact search. With
        0.02 on the oracle test the held-out fidelity CI covered the truth in
        only 1 of 3 seeds (the estimate ignores tree-to-tree variability, which
        pruning increases), so it is not the default until that is fixed.
    max_bins : int
        Thresholds per feature (2-256).
    random_state : int
        Seed of the random split behind the fidelity estimate.

    Returns
    -------
    DistilledPolicy
    """
    if not isinstance(policy, LinearPolicy):
        raise InvalidParameterError(
            f"'policy' must be a LinearPolicy; got {type(policy).__name__}."
        )
    model._check_fitted()
    if not isinstance(max_depth, int | np.integer) or not 1 <= max_depth <= 4:
        raise InvalidParameterError(
            f"'max_depth' must be an integer from 1 to 4 (deeper trees stop being readable); "
            f"got {max_depth!r}."
        )
    spec = model.spec_
    if policy.spec.arms != spec.arms or policy.spec.outcome_names != spec.outcome_names:
        raise InvalidParameterError(
            f"'policy' was built for arms {list(policy.spec.arms)} and outcomes "
            f"{list(policy.spec.outcome_names)}, the model for {list(spec.arms)} and "
            f"{list(spec.outcome_names)}; build the policy on the model's spec."
        )
    if is_distributed(data if data is not None else model.data_):
        from pexkit.execution.explain import distill_on_cluster

        return distill_on_cluster(policy, model, model.data_ if data is None else data,
                                  int(max_depth), min_leaf_share, max_bins, random_state)
    data, tau, folds = _effects_for(model, data)
    in_sample = folds is not None
    utilities = policy.utilities(tau)
    black = np.argmax(utilities, axis=1)
    X = model._matrix(data)

    def grow(Xm: FloatArray, rewards: FloatArray) -> PolicyTree:
        return fit_policy_tree(
            Xm, rewards, int(max_depth), min_leaf_share=min_leaf_share, max_bins=max_bins,
            feature_names=list(spec.features),
            action_names=list(spec.arms), categories=model.encoder_.categories,
        )

    tree = grow(X, utilities)
    chosen = tree.choose(X)
    n = data.n_units
    # fidelity out of sample: 5-fold cross-fitting, trees fitted without a fold decide it
    rng = np.random.default_rng(random_state)
    clusters = data.clusters
    if clusters is None:
        split = rng.permutation(n) % FIDELITY_SPLITS
    else:  # whole clusters: a cluster's rows never decide each other's fidelity
        split = (rng.permutation(int(clusters.max()) + 1) % FIDELITY_SPLITS)[clusters]
    held = chosen.copy()
    for part in range(FIDELITY_SPLITS):
        score_rows, fit_rows = np.flatnonzero(split == part), np.flatnonzero(split != part)
        if fit_rows.shape[0] > FIDELITY_MAX_FIT:  # a shallow tree is settled long before
            fit_rows = np.sort(rng.choice(fit_rows, FIDELITY_MAX_FIT, replace=False))
        if score_rows.shape[0] and fit_rows.shape[0]:
            held[score_rows] = grow(X[fit_rows], utilities[fit_rows]).choose(X[score_rows])
    agree = float(np.sum(held == black))

    # value terms: per-unit DR utility lift of every arm vs control
    scores = build_scores(data, model)
    gain = (scores.dr - scores.dr[:, :1, :]) @ policy.signed_weights()  # (n, K)
    if folds is not None:
        scored = np.empty(n, dtype=np.int64)
        for f in np.unique(folds):
            rows = np.flatnonzero(folds == f)
            scored[rows] = grow(X[rows], utilities[rows]).choose(X[rows])
    else:
        scored = chosen
    rows_all = np.arange(n)
    tree_terms, black_terms = gain[rows_all, scored], gain[rows_all, black]
    best = int(np.argmax(gain.mean(axis=0)))
    single_terms = gain[:, best]
    return distilled_policy(
        tree, model, policy, n, agree, best,
        fieller(tree_terms, black_terms, clusters=clusters),
        fieller(tree_terms - single_terms, black_terms - single_terms, clusters=clusters),
        (_lift(tree_terms, clusters), _lift(black_terms, clusters),
         _lift(single_terms, clusters)),
        np.bincount(chosen, minlength=spec.n_treatments) / n,
        "cross-fitted" if in_sample else "held-out",
        fidelity_ci=None if clusters is None else wilson(agree, n, clusters=clusters,
                                                         hits=held == black),
    )


def distilled_policy(
    tree: PolicyTree, model: EffectModel, policy: LinearPolicy, n: int, agree: float,
    best: int, kept: tuple[float, float, float], gain_kept: tuple[float, float, float],
    lifts: tuple[dict[str, float], dict[str, float], dict[str, float]], shares: FloatArray,
    evaluation: str, fidelity_ci: tuple[float, float] | None = None,
) -> DistilledPolicy:
    """A :class:`DistilledPolicy` from its figures: ``kept`` and ``gain_kept`` as
    (ratio, low, high), ``lifts`` of the tree, the black box and all-``best``."""
    spec = model.spec_
    return DistilledPolicy(
        tree=tree,
        model=model,
        fidelity=agree / n,
        fidelity_ci=wilson(agree, n) if fidelity_ci is None else fidelity_ci,
        value_kept=kept[0],
        value_kept_ci=(kept[1], kept[2]),
        gain_kept=gain_kept[0],
        gain_kept_ci=(gain_kept[1], gain_kept[2]),
        baseline=spec.arms[best],
        lifts=dict(zip(("tree", "black box", f"all {spec.arms[best]}"), lifts, strict=True)),
        shares={a: float(s) for a, s in zip(spec.arms, shares, strict=True)},
        policy=policy,
        evaluation=evaluation,
        n_units=n,
    )
