"""Evaluate one policy, or many in one pass, off-policy with confidence intervals."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from pexkit._stats import cluster_codes, mean_se, refit_spread
from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation.estimators import DM_NO_CI, get_estimator
from pexkit.evaluation.kernels import batch_cluster_se, batch_sums, policy_sums
from pexkit.evaluation.scores import PolicyScores, build_scores
from pexkit.exceptions import InvalidParameterError
from pexkit.execution import is_distributed
from pexkit.policy import LinearPolicy
from pexkit.policy.linear import _batch_params, _check_tau, choose_batch

__all__ = ["PolicyValue", "PolicyValues", "evaluate_policies", "evaluate_policy"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class PolicyValue:
    """A policy's estimated value and lift vs all-control, per outcome.

    Attributes
    ----------
    outcomes : tuple of str
    value, value_se, lift, lift_se : ndarray of shape (n_outcomes,)
    value_ci, lift_ci : ndarray of shape (n_outcomes, 2)
        Normal (influence-function) CIs, or bootstrap percentile CIs when
        ``n_bootstrap > 0`` was asked for.
    share : dict
        Fraction of units the policy sends to each treatment.
    estimator : str
    alpha : float
    """

    outcomes: tuple[str, ...]
    value: FloatArray
    value_se: FloatArray
    lift: FloatArray
    lift_se: FloatArray
    value_ci: FloatArray
    lift_ci: FloatArray
    share: dict[str, float]
    estimator: str
    alpha: float = 0.05
    n_units: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def normal(
        cls, spec: Any, value: FloatArray, value_se: FloatArray, lift: FloatArray,
        lift_se: FloatArray, share: FloatArray, estimator: str, alpha: float, n: int,
    ) -> PolicyValue:
        """Estimates with normal (influence-function) CIs at level ``1 - alpha``."""
        z = float(stats.norm.ppf(1 - alpha / 2))
        return cls(
            outcomes=spec.outcome_names,
            value=value,
            value_se=value_se,
            lift=lift,
            lift_se=lift_se,
            value_ci=np.column_stack([value - z * value_se, value + z * value_se]),
            lift_ci=np.column_stack([lift - z * lift_se, lift + z * lift_se]),
            share={a: float(s) for a, s in zip(spec.arms, share, strict=True)},
            estimator=estimator,
            alpha=alpha,
            n_units=n,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per outcome: value, value_se, value_ci_low, value_ci_high, lift, ..."""
        frame = pd.DataFrame(
            {
                "value": self.value,
                "value_se": self.value_se,
                "value_ci_low": self.value_ci[:, 0],
                "value_ci_high": self.value_ci[:, 1],
                "lift": self.lift,
                "lift_se": self.lift_se,
                "lift_ci_low": self.lift_ci[:, 0],
                "lift_ci_high": self.lift_ci[:, 1],
            },
            index=pd.Index(list(self.outcomes), name="outcome"),
        )
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict keyed by outcome."""
        records = self.to_frame().to_dict(orient="index")
        return {
            "estimator": self.estimator,
            "alpha": self.alpha,
            "share": self.share,
            "outcomes": {
                str(name): {str(k): float(v) for k, v in row.items()}
                for name, row in records.items()
            },
        }

    def __getitem__(self, outcome: str) -> dict[str, float]:
        if outcome not in self.outcomes:
            raise KeyError(f"unknown outcome {outcome!r}; have {list(self.outcomes)}")
        m = self.outcomes.index(outcome)
        return {
            "value": float(self.value[m]),
            "value_se": float(self.value_se[m]),
            "value_ci_low": float(self.value_ci[m, 0]),
            "value_ci_high": float(self.value_ci[m, 1]),
            "lift": float(self.lift[m]),
            "lift_se": float(self.lift_se[m]),
            "lift_ci_low": float(self.lift_ci[m, 0]),
            "lift_ci_high": float(self.lift_ci[m, 1]),
        }


@dataclass(frozen=True)
class PolicyValues:
    """Values of P policies evaluated in one pass; arrays of shape (P, n_outcomes)."""

    outcomes: tuple[str, ...]
    value: FloatArray
    value_se: FloatArray
    lift: FloatArray
    lift_se: FloatArray
    shares: FloatArray
    estimator: str
    alpha: float = 0.05

    def __len__(self) -> int:
        return int(self.value.shape[0])

    def ci(self, which: str = "lift") -> FloatArray:
        """Normal CIs, shape (P, n_outcomes, 2), for ``'lift'`` or ``'value'``."""
        z = float(stats.norm.ppf(1 - self.alpha / 2))
        est, se = (self.lift, self.lift_se) if which == "lift" else (self.value, self.value_se)
        return np.stack([est - z * se, est + z * se], axis=-1)

    def to_frame(self) -> pd.DataFrame:
        """Long frame: one row per (policy, outcome)."""
        lift_ci = self.ci("lift")
        value_ci = self.ci("value")
        P, M = self.value.shape
        return pd.DataFrame(
            {
                "policy": np.repeat(np.arange(P), M),
                "outcome": np.tile(list(self.outcomes), P),
                "value": self.value.ravel(),
                "value_se": self.value_se.ravel(),
                "value_ci_low": value_ci[..., 0].ravel(),
                "value_ci_high": value_ci[..., 1].ravel(),
                "lift": self.lift.ravel(),
                "lift_se": self.lift_se.ravel(),
                "lift_ci_low": lift_ci[..., 0].ravel(),
                "lift_ci_high": lift_ci[..., 1].ravel(),
            }
        )


def _resolve_scores(
    data: LoggedData, model: EffectModel | None, scores: PolicyScores | None
) -> PolicyScores:
    if scores is not None:
        return scores
    if model is None:
        raise InvalidParameterError(
            "pass 'model' (a fitted EffectModel) or precomputed 'scores' to evaluate "
            "a policy."
        )
    return build_scores(data, model)


def _effects_for(data: LoggedData, model: EffectModel | None) -> FloatArray:
    if model is None:
        raise InvalidParameterError(
            "evaluating a LinearPolicy needs the EffectModel that predicts its "
            "effects; pass model=..."
        )
    return model.effects_for(data)  # out-of-fold on the rows the model was fitted on


def _as_probs(actions: Any, n: int, n_treat: int) -> tuple[IntArray | None, FloatArray | None]:
    arr = np.asarray(actions)
    if arr.ndim == 1:
        if arr.shape[0] != n:
            raise InvalidParameterError(
                f"'actions' must have one entry per unit ({n}); got {arr.shape[0]}."
            )
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise InvalidParameterError(
                    "'actions' of shape (n,) must be treatment indices (integers); "
                    "pass action probabilities with shape (n, K) for a stochastic policy."
                )
            arr = arr.astype(np.int64)
        if arr.min() < 0 or arr.max() >= n_treat:
            raise InvalidParameterError(
                f"'actions' must be treatment indices in [0, {n_treat - 1}]; got values "
                f"from {arr.min()} to {arr.max()}."
            )
        return arr.astype(np.int64), None
    if arr.ndim == 2:
        if arr.shape != (n, n_treat):
            raise InvalidParameterError(
                f"action probabilities must have shape ({n}, {n_treat}); got {arr.shape}."
            )
        probs = arr.astype(np.float64)
        if (probs < -1e-12).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
            raise InvalidParameterError(
                "action probabilities must be >= 0 and sum to 1 in each row; got row "
                f"sums from {probs.sum(axis=1).min():.4g} to {probs.sum(axis=1).max():.4g}."
            )
        return None, probs
    raise InvalidParameterError(
        f"'actions' must be indices (n,) or probabilities (n, K); got shape {arr.shape}."
    )


def _moments(
    sums: FloatArray, n: int, n_out: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Means and standard errors from sums of v, v^2, d, d^2 (each n_out wide)."""
    M = n_out
    s_v, s_vv, s_d, s_dd = (sums[:, i * M : (i + 1) * M] for i in range(4))
    value, lift = s_v / n, s_d / n
    denom = max(n - 1, 1)
    value_se = np.sqrt(np.maximum(s_vv - n * value**2, 0.0) / denom / n)
    lift_se = np.sqrt(np.maximum(s_dd - n * lift**2, 0.0) / denom / n)
    return value, value_se, lift, lift_se


def evaluate_policy(
    policy: Any,
    data: LoggedData,
    model: EffectModel | None = None,
    estimator: Any = "dr",
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    random_state: int = 0,
    scores: PolicyScores | None = None,
    baseline: Any = None,
) -> PolicyValue:
    """Estimate a policy's value and lift vs all-control (or all-``baseline``) for every outcome.

    Parameters
    ----------
    policy : ndarray of shape (n_units,) or (n_units, n_treatments), or LinearPolicy
        Treatment indices (deterministic), action probabilities (stochastic),
        or a policy applied to the model's effects.
    data : LoggedData
        The log to evaluate on.
    model : EffectModel, optional
        Fitted model; supplies outcome predictions (and effects for a LinearPolicy).
    estimator : {"dr", "ips", "snips", "sndr", "switch-dr", "dm"} or SwitchDR
        ``"dm"`` gives no standard error or interval (NaN; the reason is in
        ``extra["no_ci"]``).
    alpha : float
        1 - confidence level.
    n_bootstrap : int
        When > 0, percentile CIs from that many Poisson-bootstrap resamples.
    random_state : int
        Seed of the bootstrap.
    scores : PolicyScores, optional
        Precomputed scores (skips building them).
    baseline : str or int, optional
        The arm the lift is measured against (label or index; default the
        control): "lift vs sending everyone this arm", e.g. the best single
        treatment, or any arm of a log without a control. ``"logged"``: against
        the logging policy itself (its value is the mean observed outcome), e.g.
        a bandit's log.

    Returns
    -------
    PolicyValue

    Notes
    -----
    DR: ``value_m = mean_i sum_k p_ik G_ikm``; lift subtracts ``G_i0m``;
    ``se = sd(terms) / sqrt(n)``.
    """
    est = get_estimator(estimator)
    if not 0 < alpha < 1:
        raise InvalidParameterError(f"'alpha' must be in (0, 1); got {alpha!r}.")
    if is_distributed(data):
        if baseline is not None and baseline not in (0, data.spec.arms[0]):
            raise InvalidParameterError(
                "on a cluster, lifts are against the control arm; 'baseline' is not supported "
                "there yet. Evaluate in one process, or subtract all-baseline's value."
            )
        if scores is not None or model is None:
            raise InvalidParameterError(
                "on a cluster, evaluate_policy uses the fitted model's scores, which stay on "
                "the workers: pass model=... and no scores."
            )
        if est.name not in ("dr", "ips", "dm", "snips"):
            raise InvalidParameterError(
                f"on a cluster, evaluate_policy offers the estimators dr, ips, snips and dm; "
                f"got {est.name!r}. Evaluate it in one process."
            )
        from pexkit.execution.dask import evaluate_policy as on_cluster

        return _honest(on_cluster(policy, cast(Any, data), model, alpha, est.name,
                                  int(n_bootstrap), random_state))
    sc = _resolve_scores(data, model, scores)
    n, n_treat = sc.n_units, sc.spec.n_treatments
    logged = isinstance(baseline, str) and baseline == LOGGED and LOGGED not in sc.spec.arms
    base = 0 if baseline is None or logged else _arm_index(sc.spec, baseline)
    if isinstance(policy, LinearPolicy):
        policy = policy.choose(_effects_for(data, model))
    actions, probs = _as_probs(policy, n, n_treat)
    clusters = getattr(data, "clusters", None)
    if (actions is not None and est.is_linear and n_bootstrap == 0 and clusters is None
            and base == 0 and not logged):
        # one compiled pass over the rows: sums of v, v^2, d, d^2
        sums = policy_sums(est.table(sc), actions)
        value, value_se, lift, lift_se = _moments(sums.reshape(1, -1), n, sc.spec.n_outcomes)
        value, value_se, lift, lift_se = value[0], value_se[0], lift[0], lift_se[0]
        share = np.bincount(actions, minlength=n_treat) / n
    else:
        if probs is None:
            probs = np.zeros((n, n_treat))
            probs[np.arange(n), actions] = 1.0
        value_terms, lift_terms = est.terms(sc, probs, base)
        if logged:  # against what the logging policy got: the observed outcomes
            lift_terms = value_terms - sc.logged_values()
        share = probs.mean(axis=0)
        value = value_terms.mean(axis=0)
        lift = lift_terms.mean(axis=0)
        value_se = mean_se(value_terms, clusters)
        lift_se = mean_se(lift_terms, clusters)
    out = PolicyValue.normal(sc.spec, value, value_se, lift, lift_se, share, est.name, alpha, n)
    if n_bootstrap > 0:
        value_ci, lift_ci = _bootstrap(value_terms, lift_terms, n_bootstrap, alpha, random_state,
                                       clusters)
        out = replace(out, value_ci=value_ci, lift_ci=lift_ci,
                      extra={"n_bootstrap": n_bootstrap})
    if base != 0 or logged:
        out = replace(out, extra={**out.extra,
                                  "baseline": "the logging policy" if logged else sc.spec.arms[base]})
    if getattr(data, "outcome_draws", None):
        taken = (actions == data.treatment if probs is None
                 else probs[np.arange(n), data.treatment])
        w = taken / data.propensity
        base_w = np.ones(n) if logged else (data.treatment == base) / data.propensity
        value_e, lift_e = refit_errors(data, w[None, :], base_w)
        out = _widen(out, value_e[0], lift_e[0])
    return _honest(out)


def refit_errors(data: LoggedData, weights: FloatArray, base_weights: FloatArray
                 ) -> tuple[FloatArray, FloatArray]:
    """Each estimand's error from the log's estimated outcomes (a surrogate index): (P, M) twice.

    ``weights`` (P, n): each policy's inverse-propensity weights; ``base_weights``
    (n,): the lift's baseline. Zero for outcomes that were observed (see
    :attr:`LoggedData.outcome_draws` and :func:`pexkit._stats.refit_spread`).
    """
    P, M = weights.shape[0], data.spec.n_outcomes
    value_e, lift_e = np.zeros((P, M)), np.zeros((P, M))
    for name, draws in data.outcome_draws.items():
        m = data.spec.outcome_index(name)
        v = refit_spread(draws, weights)
        v0 = refit_spread(draws, base_weights[None, :])
        value_e[:, m] = v.std(axis=1, ddof=1)
        lift_e[:, m] = (v - v0).std(axis=1, ddof=1)
    return value_e, lift_e


def _widen(out: PolicyValue, value_e: FloatArray, lift_e: FloatArray) -> PolicyValue:
    """``out`` with its SEs and CIs also carrying errors ``value_e``, ``lift_e`` (in quadrature)."""
    z = float(stats.norm.ppf(1 - out.alpha / 2))

    def ci(est: FloatArray, bounds: FloatArray, e: FloatArray) -> FloatArray:
        lo = est - np.sqrt((est - bounds[:, 0]) ** 2 + (z * e) ** 2)
        hi = est + np.sqrt((bounds[:, 1] - est) ** 2 + (z * e) ** 2)
        return np.column_stack([lo, hi])

    return replace(
        out, value_se=np.hypot(out.value_se, value_e), lift_se=np.hypot(out.lift_se, lift_e),
        value_ci=ci(out.value, out.value_ci, value_e), lift_ci=ci(out.lift, out.lift_ci, lift_e),
        extra={**out.extra, "lift_se_outcome_model": dict(zip(out.outcomes, lift_e.tolist(),
                                                              strict=True))},
    )


LOGGED = "logged"  # baseline= value: the logging policy


def _arm_index(spec: Any, arm: Any) -> int:
    """The index of arm ``arm`` (a label, or an index into ``spec.arms``)."""
    if isinstance(arm, int | np.integer) and not isinstance(arm, bool):
        if not 0 <= int(arm) < spec.n_treatments:
            raise InvalidParameterError(
                f"'baseline' index must be in [0, {spec.n_treatments - 1}]; got {arm}."
            )
        return int(arm)
    return int(spec.treatment_index(arm))


def _honest(out: PolicyValue) -> PolicyValue:
    """The direct method's value without intervals (see ``DM_NO_CI``); others unchanged."""
    if out.estimator != "dm":
        return out
    nan = np.full_like(out.value, np.nan)
    ci = np.full((len(out.value), 2), np.nan)
    return replace(out, value_se=nan, lift_se=nan.copy(), value_ci=ci, lift_ci=ci.copy(),
                   extra={**out.extra, "no_ci": DM_NO_CI})


def _bootstrap(
    value_terms: FloatArray, lift_terms: FloatArray, n_boot: int, alpha: float, seed: int,
    clusters: IntArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Poisson-bootstrap percentile CIs of the means of the per-row terms.

    Rows are iid, so above 20,000 rows they are first summed into 4,000 random
    groups (themselves iid) and the groups are resampled: the same bootstrap
    distribution of a mean, at a cost independent of n. With ``clusters`` the
    clusters are resampled (each whole), in random groups of clusters when
    there are more than ``BOOT_GROUPS`` of them.
    """
    rng = np.random.default_rng(seed)
    n = value_terms.shape[0]
    both = np.concatenate([value_terms, lift_terms], axis=1)
    if clusters is not None:
        codes, G = cluster_codes(clusters)
        group = codes if G <= BOOT_GROUPS else np.asarray(
            rng.integers(0, BOOT_GROUPS, G), dtype=np.int64)[codes]
        sums, counts = group_sums(group, both)
    elif n > BOOT_GROUP_ROWS:
        group = np.asarray(rng.integers(0, BOOT_GROUPS, n), dtype=np.int64)
        sums, counts = group_sums(group, both)
    else:
        sums, counts = both, np.ones(n)
    return resample(sums, counts, n_boot, alpha, rng, value_terms.shape[1])


BOOT_GROUP_ROWS = 20_000  # above this, rows are summed into BOOT_GROUPS random groups
BOOT_GROUPS = 4_000


def group_sums(group: IntArray, terms: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-group sums of the columns of ``terms`` and the group sizes (sums over rows add up)."""
    sums = np.stack([np.bincount(group, weights=col, minlength=BOOT_GROUPS) for col in terms.T],
                    axis=1).astype(np.float64)
    return sums, np.bincount(group, minlength=BOOT_GROUPS).astype(np.float64)


def resample(
    sums: FloatArray, counts: FloatArray, n_boot: int, alpha: float, rng: np.random.Generator,
    M: int,
) -> tuple[FloatArray, FloatArray]:
    """Poisson-bootstrap percentile CIs of ``sum / count`` over resampled groups (or rows)."""
    chunk = max(1, min(n_boot, 2**24 // max(sums.shape[0], 1)))
    draws = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        weights = rng.poisson(1.0, size=(b, sums.shape[0])).astype(np.float64)
        draws.append((weights @ sums) / (weights @ counts)[:, None])
    boot = np.concatenate(draws)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return np.column_stack([lo[:M], hi[:M]]), np.column_stack([lo[M:], hi[M:]])


def evaluate_policies(
    policies: Any,
    data: LoggedData,
    model: EffectModel | None = None,
    estimator: str = "dr",
    *,
    alpha: float = 0.05,
    scores: PolicyScores | None = None,
    tau: FloatArray | None = None,
) -> PolicyValues:
    """Evaluate P deterministic policies in one pass.

    Parameters
    ----------
    policies : ndarray of shape (P, n_units) of treatment indices, ndarray of
        shape (P, (M-1) + (K-1) M) of flat policy parameters, or list of LinearPolicy
    data, model, estimator, alpha, scores
        As in :func:`evaluate_policy`; ``estimator`` must be linear (dr, ips, dm).
    tau : ndarray of shape (n_units, n_treatments, n_outcomes), optional
        Effects that parameter vectors or policies are applied to (default: the
        model's out-of-fold effects on its fitting data, else its predictions).

    Returns
    -------
    PolicyValues

    Notes
    -----
    Parameter vectors and policies never materialize their actions: a compiled
    kernel walks the rows in cache-sized blocks and, per row, picks every
    policy's arm and adds its DR terms (see :mod:`pexkit.evaluation.kernels`).
    """
    est = get_estimator(estimator)
    if not est.is_linear:
        raise InvalidParameterError(
            f"evaluate_policies needs a linear estimator (dr, ips, dm); got "
            f"{estimator!r}. Call evaluate_policy per policy for snips."
        )
    if is_distributed(data):
        arr = None if isinstance(policies, list | tuple) else np.asarray(policies)
        if est.name != "dr" or scores is not None or tau is not None or model is None or (
            arr is not None and not np.issubdtype(arr.dtype, np.floating)
        ):
            raise InvalidParameterError(
                "on a cluster, evaluate_policies takes LinearPolicy objects or parameter "
                "vectors with model=..., estimator='dr', no scores or tau (actions per unit "
                "would have to come to this process)."
            )
        from pexkit.execution.dask import ClusterEvaluator

        values: PolicyValues = ClusterEvaluator(model, cast(Any, data)).evaluate(
            policies if arr is None else arr
        )
        return values
    sc = _resolve_scores(data, model, scores)
    n, n_treat, n_out = sc.n_units, sc.spec.n_treatments, sc.spec.n_outcomes
    table = est.table(sc)
    clusters = getattr(data, "clusters", None)
    arr = None if isinstance(policies, list | tuple) else np.asarray(policies)
    chosen: IntArray | None = None
    if arr is None or (arr.ndim == 2 and arr.shape[1] != n and np.issubdtype(arr.dtype, np.floating)):
        effects = tau if tau is not None else _effects_for(data, model)
        _check_tau(sc.spec, effects)
        sw, const = _batch_params(sc.spec, policies if arr is None else arr)
        sums = batch_sums(effects, table, sw, const)
        if clusters is not None:
            cluster_se = batch_cluster_se(effects, table, sw, const, clusters, sums)
    else:
        actions = arr if arr.ndim == 2 else arr[None, :]
        if actions.ndim != 2 or actions.shape[1] != n:
            raise InvalidParameterError(
                f"'policies' as actions must have shape (P, {n}); got {actions.shape}."
            )
        if actions.min() < 0 or actions.max() >= n_treat:
            raise InvalidParameterError(
                f"'policies' actions must be in [0, {n_treat - 1}]; got values from "
                f"{actions.min()} to {actions.max()}."
            )
        chosen = actions.astype(np.int64)
        sums = np.stack(
            [
                np.concatenate([policy_sums(table, a), np.bincount(a, minlength=n_treat)])
                for a in actions.astype(np.int64)
            ]
        )
        if clusters is not None:
            rows = np.arange(n)
            v = [table[rows, a, :] for a in actions.astype(np.int64)]
            cluster_se = (np.stack([mean_se(x, clusters) for x in v]),
                          np.stack([mean_se(x - table[:, 0, :], clusters) for x in v]))
    value, value_se, lift, lift_se = _moments(sums, n, n_out)
    if clusters is not None:
        value_se, lift_se = cluster_se
    if getattr(data, "outcome_draws", None):  # an estimated outcome's own error
        if chosen is None:
            chosen = choose_batch(sc.spec, effects, policies if arr is None else arr)
        w = (chosen == data.treatment[None, :]) / data.propensity[None, :]
        value_e, lift_e = refit_errors(data, w, (data.treatment == 0) / data.propensity)
        value_se, lift_se = np.hypot(value_se, value_e), np.hypot(lift_se, lift_e)
    if est.name == "dm":  # no honest interval (DM_NO_CI)
        value_se, lift_se = np.full_like(value_se, np.nan), np.full_like(lift_se, np.nan)
    shares = sums[:, 4 * n_out :] / n
    return PolicyValues(
        outcomes=sc.spec.outcome_names,
        value=value,
        value_se=value_se,
        lift=lift,
        lift_se=lift_se,
        shares=shares,
        estimator=est.name,
        alpha=alpha,
    )
