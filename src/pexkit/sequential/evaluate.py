"""Off-policy evaluation of sequential policies from a decision log.

Every estimator estimates the same quantity: the expected discounted return
``sum_t gamma^t r_t`` of an episode (over the window the log shows: until a
terminal decision or the episode's last logged decision), per reward, had the
decisions been taken by the evaluated policy. ``utility`` is the spec's
weighted sum (``rewards @ utility_weights``). Notation: ``rho_t = pi(a_t | s_t)
/ mu_t`` is the one-step ratio of the evaluated policy to the logged
propensity, ``w_{0:t}`` the product of the ratios up to t.

- ``"pdis"``, per-decision importance sampling (Precup, Sutton and Singh 2000):
  the mean over episodes of ``sum_t gamma^t w_{0:t} r_t``.
- ``"wpdis"``: the weighted version; at each step the weighted reward sum is
  divided by the sum of the episodes' weights (an episode that ended keeps its
  last weight), which trades a small bias for much less variance.
- ``"smis"``, state-marginalized importance sampling (the estimator of the
  notification papers; Xie, Ma and Wang 2019 for the recursion): the state
  distribution ratio ``d^pi_t(s) / d^mu_t(s)`` is estimated from the log, step by
  step, as the regression of ``w_t(s_t) * rho_t`` on the next state
  (``w_{t+1}(s') = E_mu[w_t(s_t) rho_t | s_{t+1} = s']``; cross-fitted LightGBM),
  and each decision is weighted by ``w_t(s_t) * rho_t`` instead of the whole
  product: the variance no longer grows exponentially with the horizon.
- ``"dr"``, sequential doubly robust (Jiang and Li 2016; Thomas and Brunskill
  2016): ``sum_t gamma^t [w_{0:t} (r_t - Q(s_t, a_t)) + w_{0:t-1} V(s_t)]`` with Q
  from cross-fitted fitted-Q evaluation; unbiased with the true propensities
  whatever Q is, and much tighter when Q is good.
- ``"fqe"``, fitted Q evaluation (Le, Voloshin and Yue 2019): the mean of
  ``V(s_0)`` over episodes; no weights, so no variance from them, but its error
  is the model's (its CI does not include the model's estimation error).

Confidence intervals are percentile bootstraps over units (a unit's decisions
are dependent; all of a unit's episodes move together), with the fitted
nuisance models held fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit._progress import progress_bar
from pexkit.exceptions import InvalidParameterError
from pexkit.sequential.fqe import fit_fqe
from pexkit.sequential.log import TransitionLog
from pexkit.sequential.policy import action_probabilities

__all__ = ["ESTIMATORS", "SequentialValue", "SequentialValues", "evaluate_sequential"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ESTIMATORS = ("smis", "pdis", "wpdis", "dr", "fqe")

_SMIS_PARAMS = {
    "objective": "regression",
    "num_leaves": 15,
    "learning_rate": 0.1,
    "min_data_in_leaf": 100,
    "verbose": -1,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
}


@dataclass
class SequentialValue:
    """The estimated value of one sequential policy, per reward and for the utility.

    Attributes
    ----------
    names : tuple of str
        The rewards, then ``"utility"``.
    value, se, ci_low, ci_high : ndarray (R + 1,)
    ess : float
        Effective number of episodes behind the estimate (``(sum a)^2 / sum a^2``
        of each episode's discount-averaged weight; the episode count for FQE).
    replicates : ndarray (B, R + 1)
        Bootstrap replicates (shared resamples across policies evaluated together).
    """

    estimator: str
    names: tuple[str, ...]
    value: FloatArray
    se: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    ess: float
    n_episodes: int
    n_units: int
    alpha: float = 0.05
    replicates: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per reward and ``utility``: value, se, ci_low, ci_high, ess."""
        return pd.DataFrame(
            {
                "value": self.value,
                "se": self.se,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "ess": self.ess,
            },
            index=pd.Index(self.names, name="reward"),
        )

    def __getitem__(self, name: str) -> float:
        return float(self.value[self.names.index(name)])

    @property
    def utility(self) -> float:
        return float(self.value[-1])

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{n}={v:.4g} [{lo:.4g}, {hi:.4g}]"
            for n, v, lo, hi in zip(self.names, self.value, self.ci_low, self.ci_high, strict=True)
        )
        return (
            f"SequentialValue({self.estimator}: {parts}; ESS {self.ess:.0f} of {self.n_episodes})"
        )


@dataclass
class SequentialValues:
    """Several policies evaluated on the same log with the same bootstrap resamples."""

    values: dict[str, SequentialValue]

    def __getitem__(self, name: str) -> SequentialValue:
        return self.values[name]

    def __iter__(self) -> Any:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def to_frame(self) -> pd.DataFrame:
        """Long frame: one row per (policy, reward)."""
        frames = [v.to_frame().reset_index().assign(policy=k) for k, v in self.values.items()]
        out = pd.concat(frames, ignore_index=True)
        return out[["policy", "reward", "value", "se", "ci_low", "ci_high", "ess"]]

    def difference(self, a: str, b: str) -> pd.DataFrame:
        """``a - b`` per reward with a paired bootstrap CI (the resamples are shared)."""
        va, vb = self.values[a], self.values[b]
        reps = va.replicates - vb.replicates
        lo, hi = np.quantile(reps, [va.alpha / 2, 1 - va.alpha / 2], axis=0)
        return pd.DataFrame(
            {
                "value": va.value - vb.value,
                "se": reps.std(axis=0, ddof=1),
                "ci_low": lo,
                "ci_high": hi,
            },
            index=pd.Index(va.names, name="reward"),
        )


# ---------------------------------------------------------------- weights
def _cumulative_weights(log: TransitionLog, rho: FloatArray) -> FloatArray:
    """w_{0:t}: the product of one-step ratios within each episode, up to and including t."""
    zero = rho <= 0
    logs = np.log(np.where(zero, 1.0, rho))
    starts, lengths = log.episode_starts, log.lengths
    csum = np.cumsum(logs)
    zsum = np.cumsum(zero.astype(np.int64))
    before = np.r_[0.0, csum][starts]
    zbefore = np.r_[0, zsum][starts]
    w = np.exp(csum - np.repeat(before, lengths))
    w[(zsum - np.repeat(zbefore, lengths)) > 0] = 0.0
    return np.asarray(w, dtype=np.float64)


def _folds(log: TransitionLog, n_folds: int, seed: int) -> IntArray:
    """Fold of every row; a unit's rows share a fold."""
    units = log.episode_units
    n_units = int(units.max()) + 1 if units.size else 0
    rng = np.random.default_rng(seed)
    unit_fold = rng.permutation(n_units) % n_folds
    return np.asarray(np.repeat(unit_fold[units], log.lengths), dtype=np.int64)


class _StateRatio:
    """The cross-fitted recursion for ``w_t(s_t) ~ d^pi_t(s) / d^mu_t(s)``.

    Each step's regression of ``w_t(s_t) rho_t`` on the next state is one
    regression tree (LightGBM, one round, learning rate 1: its leaf values are
    the mean target of the leaf's rows), grown on one fold of units and applied
    to the other. A bootstrap replicate recomputes the leaf means with the
    replicate's unit multiplicities through the whole recursion, so the CIs
    carry the ratio's estimation error, not only the reward noise.
    """

    def __init__(
        self,
        log: TransitionLog,
        rho: FloatArray,
        seed: int,
        n_folds: int = 2,
        max_steps: int = 200,
        min_leaf: int = 25,
        max_leaves: int = 32,
    ) -> None:
        import lightgbm as lgb

        self.log, self.rho, self.n_folds, self.max_steps = log, rho, n_folds, max_steps
        params = {
            **_SMIS_PARAMS,
            "seed": int(seed),
            "num_leaves": int(max_leaves),
            "min_data_in_leaf": int(min_leaf),
            "learning_rate": 1.0,
            "boost_from_average": False,
            "lambda_l2": 0.0,
        }
        step, nxt = log.step, log.next_index
        folds = _folds(log, n_folds, seed)
        # per step: src rows, and for every dst row (next of src) its leaf in the
        # tree grown on the other fold; the tree's training rows' leaves per fold
        self.plan: list[tuple[IntArray, NDArray[np.int64], NDArray[np.int64], IntArray]] = []
        last = min(int(step.max()) if log.n_decisions else 0, max_steps)
        w = np.ones(log.n_decisions)
        for t in range(last):
            src = np.flatnonzero((step == t) & (nxt >= 0))
            if src.size == 0:
                break
            dst = nxt[src]
            y = w[src] * rho[src]
            fold = folds[dst]
            # leaf[f, i]: leaf of dst row i in the tree grown on fold f's rows (-1: none)
            leaf = np.full((n_folds, src.size), -1, dtype=np.int64)
            for f in range(n_folds):
                tr = fold == f
                if tr.sum() >= 2 * min_leaf and np.ptp(y[tr]) > 0:
                    booster = lgb.train(
                        params,
                        lgb.Dataset(log.X[dst[tr]], label=y[tr], params={"verbose": -1}),
                        num_boost_round=1,
                    )
                    leaf[f] = np.asarray(booster.predict(log.X[dst], pred_leaf=True)).reshape(-1)
                else:
                    leaf[f] = 0
            self.plan.append((src, dst, leaf, fold))
            w[dst] = self._step(src, leaf, fold, y, np.ones(src.size))
        self.w = self._carry(w)

    def _step(
        self, src: IntArray, leaf: NDArray[np.int64], fold: IntArray, y: FloatArray, m: FloatArray
    ) -> FloatArray:
        """Cross-fitted leaf means of y (weights m) at each dst row."""
        out = np.empty(src.size)
        n_leaves = int(leaf.max()) + 1
        for f in range(self.n_folds):
            tr = fold == f
            num = np.bincount(leaf[f, tr], weights=m[tr] * y[tr], minlength=n_leaves)
            den = np.bincount(leaf[f, tr], weights=m[tr], minlength=n_leaves)
            overall = (m[tr] * y[tr]).sum() / m[tr].sum() if m[tr].sum() > 0 else 1.0
            means = np.where(den > 0, num / np.where(den > 0, den, 1.0), overall)
            # rows of the other folds use this fold's tree
            apply = fold != f if self.n_folds > 1 else tr
            if self.n_folds == 2:
                out[apply] = means[leaf[f, apply]]
            else:  # average of the other folds' trees
                out[apply] = out[apply] if f else 0.0
                out[apply] += means[leaf[f, apply]] / (self.n_folds - 1)
        return out

    def _carry(self, w: FloatArray) -> FloatArray:
        step = self.log.step
        if self.log.n_decisions and int(step.max()) > self.max_steps:
            # beyond max_steps the ratio is carried forward along each episode
            late = np.flatnonzero(step > self.max_steps)
            w[late] = w[late - (step[late] - self.max_steps)]
        return w

    def replicate(self, m_row: FloatArray) -> FloatArray:
        """The recursion's ratios with unit multiplicities ``m_row`` (per row)."""
        w = np.ones(self.log.n_decisions)
        for src, dst, leaf, fold in self.plan:
            y = w[src] * self.rho[src]
            w[dst] = self._step(src, leaf, fold, y, m_row[dst])
        return self._carry(w)


# ---------------------------------------------------------------- bootstrap
def _multiplicities(log: TransitionLog, n_bootstrap: int, seed: int) -> FloatArray:
    """(B, E) episode multiplicities from resampling units with replacement."""
    units = log.episode_units
    n_units = int(units.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_bootstrap, n_units))
    counts = np.zeros((n_bootstrap, n_units))
    for b in range(n_bootstrap):
        counts[b] = np.bincount(draws[b], minlength=n_units)
    return counts[:, units]


def _ess(log: TransitionLog, weights: FloatArray) -> float:
    disc = log.discount()
    per = np.add.reduceat(disc * weights, log.episode_starts) / np.add.reduceat(
        disc, log.episode_starts
    )
    total = float(per.sum())
    sq = float((per**2).sum())
    return total**2 / sq if sq > 0 else 0.0


class _Estimate:
    """Per-estimator point estimate and bootstrap replicates for (n, R) reward columns."""

    def __init__(
        self, point: FloatArray, replicate: Callable[[FloatArray], FloatArray], ess: float
    ) -> None:
        self.point = point
        self.replicate = replicate
        self.ess = ess


def _mean_type(log: TransitionLog, per_row: FloatArray, ess: float) -> _Estimate:
    contrib = np.add.reduceat(per_row, log.episode_starts, axis=0)  # (E, R)

    def rep(m: FloatArray) -> FloatArray:
        return np.asarray((m @ contrib) / m.sum(axis=1, keepdims=True), dtype=np.float64)

    return _Estimate(contrib.mean(axis=0), rep, ess)


def _wpdis(log: TransitionLog, w: FloatArray, rewards: FloatArray, ess: float) -> _Estimate:
    step = log.step
    L = int(step.max()) + 1
    disc = log.spec.gamma ** np.arange(L, dtype=np.float64)
    ends = log.episode_starts + log.lengths - 1
    final_w = w[ends]
    lengths = log.lengths

    def value(m_ep: FloatArray) -> FloatArray:
        m_row = np.repeat(m_ep, lengths)
        den = np.bincount(step, weights=m_row * w, minlength=L)
        carried = np.cumsum(np.bincount(lengths, weights=m_ep * final_w, minlength=L + 1))[:L]
        den = den + carried
        out = np.empty(rewards.shape[1])
        safe = np.where(den > 0, den, 1.0)
        for r in range(rewards.shape[1]):
            num = np.bincount(step, weights=m_row * w * rewards[:, r], minlength=L)
            out[r] = float(np.sum(disc * np.where(den > 0, num / safe, 0.0)))
        return out

    def rep(m: FloatArray) -> FloatArray:
        return np.stack([value(row) for row in m])

    return _Estimate(value(np.ones(log.n_episodes)), rep, ess)


def _prepare(policy: Any, log: TransitionLog, epsilon: float) -> tuple[FloatArray, FloatArray]:
    probs = action_probabilities(policy, log.states, log.n_actions, epsilon=epsilon)
    rho = probs[np.arange(log.n_decisions), log.actions] / log.propensity
    return probs, rho


def _estimate(
    estimator: str,
    probs: FloatArray,
    rho: FloatArray,
    log: TransitionLog,
    seed: int,
    fqe_options: Mapping[str, Any],
) -> _Estimate:
    rewards = log.rewards
    disc = log.discount()[:, None]
    if estimator == "pdis":
        w = _cumulative_weights(log, rho)
        return _mean_type(log, disc * w[:, None] * rewards, _ess(log, w))
    if estimator == "wpdis":
        w = _cumulative_weights(log, rho)
        return _wpdis(log, w, rewards, _ess(log, w))
    if estimator == "smis":
        ratio = _StateRatio(log, rho, seed)
        u = ratio.w * rho
        per_row = disc * rewards

        def smis_rep(m: FloatArray) -> FloatArray:
            out = np.empty((m.shape[0], rewards.shape[1]))
            for b, m_ep in enumerate(m):
                m_row = np.repeat(m_ep, log.lengths)
                u_b = ratio.replicate(m_row) * rho
                out[b] = (m_row * u_b) @ per_row / m_ep.sum()
            return out

        return _Estimate((u @ per_row) / log.n_episodes, smis_rep, _ess(log, u))
    # dr and fqe need Q: cross-fitted FQE (each unit's Q from models that never saw it)
    folds = _folds(log, 2, seed + 1)
    q = np.zeros((log.n_decisions, log.n_actions, rewards.shape[1]))
    for f in range(2):
        part = fit_fqe(
            log,
            probs,
            rewards,
            folds != f,
            gamma=log.spec.gamma,
            random_state=seed,
            **dict(fqe_options),
        )
        q[folds == f] = part[folds == f]
    v = np.einsum("na,nar->nr", probs, q)
    if estimator == "fqe":
        first = np.zeros(log.n_decisions)
        first[log.episode_starts] = 1.0
        return _mean_type(log, first[:, None] * v, float(log.n_episodes))
    w = _cumulative_weights(log, rho)
    w_prev = np.r_[1.0, w[:-1]]
    w_prev[log.episode_starts] = 1.0
    q_logged = q[np.arange(log.n_decisions), log.actions]
    per_row = disc * (w[:, None] * (rewards - q_logged) + w_prev[:, None] * v)
    return _mean_type(log, per_row, _ess(log, w))


def evaluate_sequential(
    policy: Any,
    log: TransitionLog,
    estimator: str = "dr",
    *,
    epsilon: float = 0.0,
    n_bootstrap: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
    fqe_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> Any:
    """Estimate a sequential policy's value from a decision log, with bootstrap CIs.

    Parameters
    ----------
    policy : agent, callable, array, or a mapping ``{name: policy}``
        An :class:`~pexkit.OfflineAgent`, a callable ``states -> actions`` (or
        probabilities), an array of actions or probabilities per logged
        decision. A mapping evaluates several policies on the same bootstrap
        resamples and returns :class:`SequentialValues`.
    log : TransitionLog
    estimator : {"smis", "pdis", "wpdis", "dr", "fqe"}
        See the module docstring. ``"dr"`` is the default: unbiased with
        logged propensities and the tightest when the Q model is good.
    epsilon : float
        Evaluate the policy with this much uniform exploration mixed in (what
        it would serve with).
    n_bootstrap : int
        Bootstrap resamples of units for the CIs.
    alpha : float
        1 - the CI level.
    random_state : int
        Seeds the cross-fitting folds, the models and the bootstrap.
    fqe_options : mapping, optional
        LightGBM settings of fitted Q evaluation (:data:`~pexkit.sequential.fqe.FQE_DEFAULTS`).

    Returns
    -------
    SequentialValue or SequentialValues
        ``.to_frame()``: one row per reward and ``utility`` with value, se,
        ci_low, ci_high and the effective sample size.

    Examples
    --------
    >>> import numpy as np, pandas as pd, pexkit as px
    >>> spec = px.SequentialSpec.from_dict({
    ...     "unit": "u", "time": "t", "action": {"column": "a", "actions": ["none", "send"]},
    ...     "rewards": ["visit"], "state": {"numeric": ["x"]}, "propensity": "p", "gamma": 0.9})
    >>> rng = np.random.default_rng(0)
    >>> n = 400
    >>> df = pd.DataFrame({"u": np.repeat(np.arange(n), 3), "t": np.tile([0, 1, 2], n),
    ...                    "x": rng.normal(size=3 * n), "p": 0.5,
    ...                    "a": rng.choice(["none", "send"], 3 * n)})
    >>> df["visit"] = (df["a"] == "send") + rng.normal(0, 0.1, 3 * n)
    >>> log = px.TransitionLog.from_frame(df, spec)
    >>> val = px.evaluate_sequential(lambda s: np.ones(len(s), dtype=int), log, "pdis")
    >>> round(val["visit"], 1)  # always send: 1 + 0.9 + 0.81
    2.7
    """
    if not isinstance(log, TransitionLog):
        raise InvalidParameterError(
            f"'log' must be a TransitionLog; got {type(log).__name__}. Build it with "
            "px.TransitionLog.from_frame(df, spec)."
        )
    if estimator not in ESTIMATORS:
        raise InvalidParameterError(
            f"'estimator' must be one of {list(ESTIMATORS)}; got {estimator!r}."
        )
    if not (isinstance(n_bootstrap, int | np.integer) and n_bootstrap >= 20):
        raise InvalidParameterError(f"'n_bootstrap' must be an integer >= 20; got {n_bootstrap!r}.")
    if not 0 < float(alpha) < 1:
        raise InvalidParameterError(f"'alpha' must be in (0, 1); got {alpha!r}.")
    many = isinstance(policy, Mapping)
    policies: dict[str, Any] = dict(policy) if many else {"policy": policy}
    if not policies:
        raise InvalidParameterError("'policy' is an empty mapping; give at least one policy.")
    weights = np.asarray(log.spec.utility_weights)
    names = (*log.spec.reward_names, "utility")
    m = _multiplicities(log, int(n_bootstrap), random_state)
    units = int(log.episode_units.max()) + 1
    out: dict[str, SequentialValue] = {}
    with progress_bar(len(policies), f"evaluating ({estimator})", progress) as bar:
        for key, pol in policies.items():
            probs, rho = _prepare(pol, log, epsilon)
            est = _estimate(estimator, probs, rho, log, random_state, fqe_options or {})
            point = np.r_[est.point, est.point @ weights]
            reps = est.replicate(m)
            reps = np.column_stack([reps, reps @ weights])
            lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
            out[str(key)] = SequentialValue(
                estimator,
                names,
                point,
                reps.std(axis=0, ddof=1),
                lo,
                hi,
                est.ess,
                log.n_episodes,
                units,
                float(alpha),
                reps,
            )
            bar.advance()
    return SequentialValues(out) if many else out["policy"]
