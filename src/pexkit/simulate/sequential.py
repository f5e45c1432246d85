"""A sequential-decision simulator with ground truth: daily notification volume.

``simulate_notification_volume`` logs one decision per user per day (send a
push or not) under an exploring logging policy with known propensities, and
:class:`SequentialSimulation` rolls the same process forward under any policy
to give its true discounted value (the ground truth for offline RL).

The process, per user (vectorised over users):

- static: ``activity`` (base daily visit probability) and ``platform``
  ("ios", "android", "web": how much a push lifts a visit, how quickly the
  user unsubscribes);
- observed state at each decision: ``fatigue`` (decayed push count),
  ``engagement`` (decayed visit count), ``days_since_visit``,
  ``days_since_push``, ``visits_7d`` and ``pushes_7d`` (rolling sums);
- rewards: ``sessions`` (1 if the user visits that day) and ``pushes`` (1 if
  a push was sent). A push raises today's visit chance, most for dormant users
  and least for very active or fatigued ones. Every push also adds fatigue,
  which lowers future visit chances and raises the chance that the next push
  makes the user unsubscribe; an unsubscribe ends the episode (``churned``).

A policy that maximises today's expected utility sends too often: the
fatigue and the unsubscribes it causes cost more sessions later than the
pushes bring today.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError
from pexkit.sequential.policy import action_probabilities
from pexkit.sequential.spec import SequentialSpec

if TYPE_CHECKING:  # pragma: no cover
    from pexkit.sequential.log import TransitionLog

__all__ = [
    "SequentialSimulation",
    "always",
    "never",
    "simulate_notification_volume",
    "threshold_rule",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
PolicyFn = Callable[[pd.DataFrame], Any]

PLATFORMS = ("ios", "android", "web")
_PLATFORM_SHARES = (0.45, 0.40, 0.15)
_PLATFORM_LIFT = np.array([1.0, 1.15, 0.6])  # a push's visit lift, relative
_PLATFORM_UNSUB = np.array([1.0, 0.8, 1.8])  # unsubscribe hazard, relative

NUMERIC_STATE = (
    "activity",
    "fatigue",
    "engagement",
    "days_since_visit",
    "days_since_push",
    "visits_7d",
    "pushes_7d",
)
CATEGORICAL_STATE = ("platform",)
STATE_COLUMNS = NUMERIC_STATE + CATEGORICAL_STATE

# --- dynamics constants -------------------------------------------------------
_ACTIVITY_LOGIT = (-1.4, 1.0)  # activity = sigmoid(N(mean, sd))
_FATIGUE_DECAY = 0.7  # fatigue_{t+1} = decay * fatigue_t + push weight
_ENGAGEMENT_DECAY = 0.7  # engagement_{t+1} = decay * engagement_t + visit
_HABIT = 0.3  # logit effect of engagement above the user's usual level
_FATIGUE_BASE = 0.2  # logit effect of fatigue on the visit chance
_LIFT = 0.5  # max share of non-visits a push converts (dormant, unfatigued)
_LIFT_FATIGUE = 0.5  # lift *= exp(-_LIFT_FATIGUE * fatigue)
_LIFT_ACTIVITY = 1.5  # lift *= exp(-_LIFT_ACTIVITY * activity)
_DORMANCY_SCALE = 3.0  # dormancy = 1 - exp(-days_since_visit / scale)
_UNSUB_BASE = 0.004  # P(unsubscribe | push, fatigue 0), ios
_UNSUB_FATIGUE = 0.7  # hazard *= exp(_UNSUB_FATIGUE * fatigue)
_BURN_IN = 14  # days of history before t = 0 (random pushes, no unsubscribes)
_BURN_IN_SEND = 0.3
# priority push ("send_high"): more lift, more fatigue, more unsubscribes
_HIGH_LIFT = 1.6
_HIGH_FATIGUE = 2.0
_HIGH_UNSUB = 2.5


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def _logit(p: FloatArray) -> FloatArray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)), dtype=np.float64)


def _col(states: pd.DataFrame, name: str) -> FloatArray:
    if name not in states.columns:
        raise InvalidParameterError(
            f"the states need the column {name!r}; the simulator's state columns are "
            f"{list(STATE_COLUMNS)}."
        )
    return np.asarray(states[name].to_numpy(), dtype=np.float64)


def _platform_codes(states: pd.DataFrame) -> IntArray:
    if "platform" not in states.columns:
        raise InvalidParameterError(
            f"the states need the column 'platform'; the simulator's state columns are "
            f"{list(STATE_COLUMNS)}."
        )
    labels = np.asarray(states["platform"].astype(str).to_numpy())
    codes = np.full(labels.shape[0], -1, dtype=np.int64)
    for k, name in enumerate(PLATFORMS):
        codes[labels == name] = k
    if (codes < 0).any():
        bad = sorted(set(labels[codes < 0].tolist()))[:5]
        raise InvalidParameterError(f"'platform' must be one of {list(PLATFORMS)}; got {bad}.")
    return codes


# ------------------------------------------------------------- true dynamics
def _visit_probability(
    activity: FloatArray,
    platform: IntArray,
    fatigue: FloatArray,
    engagement: FloatArray,
    days_since_visit: FloatArray,
    action: IntArray,
) -> FloatArray:
    """P(visit today | state, action): 0 none, 1 send, 2 send_high."""
    usual = activity / (1.0 - _ENGAGEMENT_DECAY)  # the engagement a user settles at
    base = _sigmoid(_logit(activity) + _HABIT * (engagement - usual) - _FATIGUE_BASE * fatigue)
    dormancy = 1.0 - np.exp(-days_since_visit / _DORMANCY_SCALE)
    lift = (
        _LIFT
        * _PLATFORM_LIFT[platform]
        * np.exp(-_LIFT_FATIGUE * fatigue - _LIFT_ACTIVITY * activity)
        * (0.2 + 0.8 * dormancy)
    )
    lift = lift * np.where(action == 2, _HIGH_LIFT, np.where(action == 1, 1.0, 0.0))
    return np.asarray(base + (1.0 - base) * np.minimum(lift, 1.0), dtype=np.float64)


def _unsubscribe_probability(
    platform: IntArray, fatigue: FloatArray, action: IntArray
) -> FloatArray:
    """P(unsubscribe | state, action); 0 without a push."""
    hazard = _UNSUB_BASE * _PLATFORM_UNSUB[platform] * np.exp(_UNSUB_FATIGUE * fatigue)
    hazard = hazard * np.where(action == 2, _HIGH_UNSUB, np.where(action == 1, 1.0, 0.0))
    return np.asarray(np.minimum(hazard, 1.0), dtype=np.float64)


def _push_weight(action: IntArray) -> FloatArray:
    return np.where(action == 2, _HIGH_FATIGUE, np.where(action == 1, 1.0, 0.0)).astype(np.float64)


# ----------------------------------------------------------- reference policies
def always(action: int = 1) -> PolicyFn:
    """A policy that always takes ``action`` (an action index; 1 = "send").

    >>> import pandas as pd
    >>> always(1)(pd.DataFrame({"fatigue": [0.0, 2.0]}))
    array([1, 1])
    """
    a = int(action)

    def policy(states: pd.DataFrame) -> IntArray:
        return np.full(len(states), a, dtype=np.int64)

    return policy


def never() -> PolicyFn:
    """A policy that never sends (always action 0, "none")."""
    return always(0)


def threshold_rule(
    max_fatigue: float,
    min_days_since_visit: float = 0,
    *,
    max_activity: float = 1.0,
    min_days_since_push: float = 0,
    action: int = 1,
) -> PolicyFn:
    """Send (``action``) when every condition holds, else do nothing (action 0).

    The conditions: ``fatigue <= max_fatigue``, ``days_since_visit >=
    min_days_since_visit``, ``activity <= max_activity`` and ``days_since_push
    >= min_days_since_push``. A small family for brute-force search.

    >>> import pandas as pd
    >>> states = pd.DataFrame({"fatigue": [0.2, 2.0], "days_since_visit": [3, 3],
    ...                        "activity": [0.1, 0.1], "days_since_push": [2, 2]})
    >>> threshold_rule(1.0, 2)(states)
    array([1, 0])
    """
    a = int(action)

    def policy(states: pd.DataFrame) -> IntArray:
        ok = (
            (_col(states, "fatigue") <= max_fatigue)
            & (_col(states, "days_since_visit") >= min_days_since_visit)
            & (_col(states, "activity") <= max_activity)
            & (_col(states, "days_since_push") >= min_days_since_push)
        )
        return np.where(ok, a, 0).astype(np.int64)

    return policy


# ------------------------------------------------------------------ the rollout
class _Users:
    """The simulated users' static features and dynamic state (arrays over users)."""

    def __init__(self, n: int, rng: np.random.Generator, horizon: int, min_horizon: int) -> None:
        self.n = n
        self.activity = _sigmoid(rng.normal(_ACTIVITY_LOGIT[0], _ACTIVITY_LOGIT[1], n))
        self.platform = rng.choice(len(PLATFORMS), size=n, p=_PLATFORM_SHARES).astype(np.int64)
        self.horizon = (
            np.full(n, horizon, dtype=np.int64)
            if min_horizon == horizon
            else rng.integers(min_horizon, horizon + 1, size=n).astype(np.int64)
        )
        self.fatigue = np.zeros(n)
        self.engagement = self.activity / (1.0 - _ENGAGEMENT_DECAY)
        self.days_since_visit = np.minimum(rng.geometric(self.activity) - 1, 30).astype(np.float64)
        self.days_since_push = np.full(n, 30.0)
        self.visit_hist = np.zeros((n, 7))
        self.push_hist = np.zeros((n, 7))
        self.visits_7d = np.zeros(n)
        self.pushes_7d = np.zeros(n)
        self.day = 0
        everyone = np.arange(n)
        # a history before t = 0: random pushes, no unsubscribes
        for _ in range(_BURN_IN):
            send = (rng.random(n) < _BURN_IN_SEND).astype(np.int64)
            p = _visit_probability(
                self.activity,
                self.platform,
                self.fatigue,
                self.engagement,
                self.days_since_visit,
                send,
            )
            self.advance(everyone, send, (rng.random(n) < p).astype(np.float64))

    def states(self, idx: IntArray) -> pd.DataFrame:
        """The observed state columns of users ``idx``."""
        return pd.DataFrame(
            {
                "activity": self.activity[idx],
                "fatigue": self.fatigue[idx],
                "engagement": self.engagement[idx],
                "days_since_visit": self.days_since_visit[idx],
                "days_since_push": self.days_since_push[idx],
                "visits_7d": self.visits_7d[idx],
                "pushes_7d": self.pushes_7d[idx],
                "platform": np.asarray(PLATFORMS, dtype=object)[self.platform[idx]],
            }
        )

    def step_probabilities(self, idx: IntArray, action: IntArray) -> tuple[FloatArray, FloatArray]:
        """P(visit) and P(unsubscribe) of users ``idx`` under ``action``."""
        visit = _visit_probability(
            self.activity[idx],
            self.platform[idx],
            self.fatigue[idx],
            self.engagement[idx],
            self.days_since_visit[idx],
            action,
        )
        return visit, _unsubscribe_probability(self.platform[idx], self.fatigue[idx], action)

    def advance(self, idx: IntArray, action: IntArray, visit: FloatArray) -> None:
        """Move users ``idx`` to the next day after ``action`` and ``visit``."""
        pushed = (action > 0).astype(np.float64)
        slot = self.day % 7
        self.fatigue[idx] = _FATIGUE_DECAY * self.fatigue[idx] + _push_weight(action)
        self.engagement[idx] = _ENGAGEMENT_DECAY * self.engagement[idx] + visit
        self.days_since_visit[idx] = np.where(visit > 0, 0.0, self.days_since_visit[idx] + 1)
        self.days_since_push[idx] = np.where(pushed > 0, 0.0, self.days_since_push[idx] + 1)
        self.visits_7d[idx] += visit - self.visit_hist[idx, slot]
        self.pushes_7d[idx] += pushed - self.push_hist[idx, slot]
        self.visit_hist[idx, slot] = visit
        self.push_hist[idx, slot] = pushed
        self.day += 1


def _draw_actions(probs: FloatArray, u: FloatArray) -> IntArray:
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = np.inf  # rows sum to 1 up to rounding
    return np.asarray((u[:, None] >= cum).sum(axis=1), dtype=np.int64)


def _rollout(
    policy: Callable[[pd.DataFrame], FloatArray],
    n: int,
    seed: int,
    horizon: int,
    min_horizon: int,
    record: bool,
) -> tuple[dict[str, FloatArray], list[pd.DataFrame]]:
    """Run the process for ``n`` fresh users under ``policy`` (states -> (m, A) probabilities).

    Returns the (n, horizon) reward arrays per user and day, and the recorded
    decision rows (one frame per day; empty unless ``record``). The random
    numbers of user i on day t are the same whatever the policy (common random
    numbers), so two policies' values differ less by chance.
    """
    rng = np.random.default_rng(seed)
    users = _Users(n, rng, horizon, min_horizon)
    alive = np.ones(n, dtype=bool)
    sessions = np.zeros((n, horizon))
    pushes = np.zeros((n, horizon))
    rows: list[pd.DataFrame] = []
    for t in range(horizon):
        u_action, u_visit, u_unsub = rng.random(n), rng.random(n), rng.random(n)
        alive &= users.horizon > t
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        states = policy_input = users.states(idx)
        probs = policy(policy_input)
        action = _draw_actions(probs, u_action[idx])
        p_visit, p_unsub = users.step_probabilities(idx, action)
        visit = (u_visit[idx] < p_visit).astype(np.float64)
        churn = u_unsub[idx] < p_unsub
        sessions[idx, t] = visit
        pushes[idx, t] = (action > 0).astype(np.float64)
        if record:
            states.insert(0, "user", idx)
            states.insert(1, "t", t)
            states.insert(2, "action", action)
            states.insert(3, "p_logged", probs[np.arange(idx.size), action])
            states["sessions"] = visit
            states["pushes"] = pushes[idx, t]
            states["churned"] = churn.astype(np.int64)
            rows.append(states)
        users.advance(idx, action, visit)
        alive[idx[churn]] = False
    return {"sessions": sessions, "pushes": pushes}, rows


# ------------------------------------------------------------------ simulation
class SequentialSimulation:
    """A simulated log of daily notification decisions, with its ground truth.

    Built by :func:`simulate_notification_volume`; :meth:`true_value` rolls
    the same process forward under any policy.

    Attributes
    ----------
    frame : DataFrame
        One row per decision, sorted by (``user``, ``t``): ``user``, ``t``,
        ``action`` (label), ``p_logged`` (the logging policy's probability of
        the logged action), the state columns, the rewards ``sessions`` and
        ``pushes``, and ``churned`` (1 on the decision after which the user
        unsubscribed; that is the user's last row).
    spec_dict : dict
        The log's sequential spec as a plain dict.
    actions : tuple of str
        ``("none", "send")``, or ``("none", "send", "send_high")`` with ``priority``.
    horizon, min_horizon : int
        Each user's observation window is drawn uniformly from
        ``min_horizon..horizon`` days (both equal by default).
    gamma, push_cost, exploration : float
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        actions: tuple[str, ...],
        horizon: int,
        min_horizon: int,
        gamma: float,
        push_cost: float,
        exploration: float,
        logging_policy: Callable[[pd.DataFrame], FloatArray],
    ) -> None:
        self.frame = frame
        self.actions = actions
        self.horizon = horizon
        self.min_horizon = min_horizon
        self.gamma = gamma
        self.push_cost = push_cost
        self.exploration = exploration
        self._logging_policy = logging_policy

    # ------------------------------------------------------------- the log
    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @property
    def spec_dict(self) -> dict[str, Any]:
        """The log's sequential spec (plain dict, the YAML form)."""
        return {
            "name": "notification-volume",
            "unit": "user",
            "time": "t",
            "action": {"column": "action", "actions": list(self.actions)},
            "rewards": [
                {"name": "sessions", "goal": "maximize", "weight": 1.0},
                {"name": "pushes", "goal": "minimize", "weight": float(self.push_cost)},
            ],
            "state": {"numeric": list(NUMERIC_STATE), "categorical": list(CATEGORICAL_STATE)},
            "propensity": "p_logged",
            "done": "churned",
            "gamma": float(self.gamma),
        }

    @cached_property
    def spec(self) -> SequentialSpec:
        """The log's :class:`~pexkit.sequential.spec.SequentialSpec`."""
        return SequentialSpec.from_dict(self.spec_dict)

    @cached_property
    def log(self) -> TransitionLog:
        """The frame as a validated ``TransitionLog``."""
        from pexkit.sequential.log import TransitionLog

        return TransitionLog.from_frame(self.frame, self.spec)

    @property
    def logging_policy(self) -> Callable[[pd.DataFrame], FloatArray]:
        """The policy that generated the log: states -> (n, A) action probabilities."""
        return self._logging_policy

    # ---------------------------------------------------- reference policies
    always = staticmethod(always)
    never = staticmethod(never)
    threshold_rule = staticmethod(threshold_rule)

    def true_myopic_policy(self) -> PolicyFn:
        """The greedy policy on the true expected utility of today alone.

        It knows the real visit probabilities, so it sends exactly when a push
        adds more expected sessions today than it costs (``push_cost``), and it
        ignores fatigue, unsubscribes and the days after.
        """
        n_actions, cost = self.n_actions, float(self.push_cost)

        def policy(states: pd.DataFrame) -> IntArray:
            n = len(states)
            cols = (
                _col(states, "activity"),
                _platform_codes(states),
                _col(states, "fatigue"),
                _col(states, "engagement"),
                _col(states, "days_since_visit"),
            )
            utility = np.empty((n, n_actions))
            for a in range(n_actions):
                visit = _visit_probability(*cols, np.full(n, a, dtype=np.int64))
                utility[:, a] = visit - cost * (a > 0)
            return np.asarray(np.argmax(utility, axis=1), dtype=np.int64)

        return policy

    # ------------------------------------------------------------ ground truth
    def true_value(
        self, policy: Any, n_units: int = 20_000, seed: int = 12345, epsilon: float = 0.0
    ) -> pd.DataFrame:
        """The policy's true value: Monte Carlo rollouts of the same process.

        ``n_units`` fresh users (same static-feature, history and window
        distributions as the log, drawn from ``seed``) each follow ``policy``
        for their window or until they unsubscribe.

        Parameters
        ----------
        policy : agent, callable or array
            Anything :func:`~pexkit.sequential.policy.action_probabilities`
            accepts; it sees the state columns of the users still active each day.
        n_units : int
        seed : int
        epsilon : float
            Uniform exploration mixed into the policy, in [0, 1].

        Returns
        -------
        DataFrame
            Index: the reward names and ``"utility"``; columns ``value`` (the
            mean over users of the discounted return ``sum_t gamma^t r_t``) and
            ``se`` (its standard error over users).
        """
        n = _positive_int(n_units, "n_units")
        if not 0.0 <= float(epsilon) <= 1.0:
            raise InvalidParameterError(f"'epsilon' must be in [0, 1]; got {epsilon!r}.")
        n_actions = self.n_actions

        def probs(states: pd.DataFrame) -> FloatArray:
            return action_probabilities(policy, states, n_actions, epsilon=float(epsilon))

        rewards, _ = _rollout(probs, n, int(seed), self.horizon, self.min_horizon, record=False)
        discount = self.gamma ** np.arange(self.horizon)
        returns = {name: r @ discount for name, r in rewards.items()}
        returns["utility"] = returns["sessions"] - self.push_cost * returns["pushes"]
        names = list(returns)
        values = np.array([returns[k].mean() for k in names])
        se = np.array([returns[k].std(ddof=1) / np.sqrt(n) if n > 1 else np.nan for k in names])
        return pd.DataFrame({"value": values, "se": se}, index=pd.Index(names, name="reward"))

    def __repr__(self) -> str:
        return (
            f"SequentialSimulation(users={self.frame['user'].nunique()}, "
            f"decisions={len(self.frame)}, actions={list(self.actions)}, gamma={self.gamma})"
        )


# -------------------------------------------------------------- entry point
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidParameterError(f"'{name}' must be a positive integer (>= 1); got {value!r}.")
    return int(value)


def _in_range(value: Any, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    ok = (lo < x if lo_open else lo <= x) and x <= hi
    if isinstance(value, bool) or not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise InvalidParameterError(f"'{name}' must be a number in {interval}; got {value!r}.")
    return x


def _builtin_logging_policy(
    n_actions: int, exploration: float
) -> Callable[[pd.DataFrame], FloatArray]:
    """Sends more to the less active, less fatigued and longer-absent users.

    A share ``2 * exploration`` of the probability is spread uniformly over the
    actions, so with two actions every probability lies in
    ``[exploration, 1 - exploration]``.
    """

    def policy(states: pd.DataFrame) -> FloatArray:
        activity = _col(states, "activity")
        fatigue = _col(states, "fatigue")
        dsv = np.minimum(_col(states, "days_since_visit"), 7.0)
        score = 0.3 - 2.0 * activity - 0.6 * fatigue + 0.25 * dsv
        logits = np.zeros((len(states), n_actions))
        logits[:, 1] = score
        if n_actions == 3:
            logits[:, 2] = score - 1.0 - 0.3 * fatigue
        logits -= logits.max(axis=1, keepdims=True)
        soft = np.exp(logits)
        soft /= soft.sum(axis=1, keepdims=True)
        mix = 2.0 * exploration
        return np.asarray((1.0 - mix) * soft + mix / n_actions, dtype=np.float64)

    return policy


def simulate_notification_volume(
    n_units: int = 20_000,
    seed: int = 0,
    *,
    horizon: int = 30,
    min_horizon: int | None = None,
    gamma: float = 0.9,
    push_cost: float = 0.05,
    exploration: float = 0.1,
    priority: bool = False,
    logging_policy: Any = None,
) -> SequentialSimulation:
    """Simulate a log of daily push-notification decisions with known dynamics.

    Each user gets one decision a day, ``t = 0..horizon - 1``, until their
    window ends or they unsubscribe. The utility of a decision is
    ``sessions - push_cost * pushes``; the spec's ``gamma`` discounts it over days.

    Parameters
    ----------
    n_units : int
        Number of users (>= 1).
    seed : int
    horizon : int
        Days in a user's observation window (>= 1).
    min_horizon : int, optional
        With it, each user's window is drawn uniformly from
        ``min_horizon..horizon`` days (default: every window is ``horizon``).
    gamma : float
        Discount per day, in [0, 1].
    push_cost : float
        Utility cost of one push, in sessions (>= 0).
    exploration : float
        In (0, 0.5]: the built-in logging policy spreads ``2 * exploration``
        of its probability uniformly over the actions (with two actions every
        action has probability >= ``exploration``). Small values give a log
        with narrow support.
    priority : bool
        Three actions ``none, send, send_high`` instead of ``none, send``; a
        high-priority push lifts visits more and costs more fatigue and unsubscribes.
    logging_policy : policy, optional
        Replaces the built-in logging policy: anything
        :func:`~pexkit.sequential.policy.action_probabilities` accepts.

    Returns
    -------
    SequentialSimulation

    Examples
    --------
    >>> sim = simulate_notification_volume(n_units=200, seed=0)
    >>> sim.spec.actions, int(sim.frame.groupby("user")["t"].min().max())
    (('none', 'send'), 0)
    >>> value = sim.true_value(sim.never(), n_units=200)
    >>> list(value.index), list(value.columns)
    (['sessions', 'pushes', 'utility'], ['value', 'se'])
    """
    n = _positive_int(n_units, "n_units")
    h = _positive_int(horizon, "horizon")
    h_min = h if min_horizon is None else _positive_int(min_horizon, "min_horizon")
    if h_min > h:
        raise InvalidParameterError(
            f"'min_horizon' must be in [1, horizon={h}]; got {min_horizon!r}."
        )
    g = _in_range(gamma, "gamma", 0.0, 1.0)
    eps = _in_range(exploration, "exploration", 0.0, 0.5, lo_open=True)
    try:
        cost = float(push_cost)
    except (TypeError, ValueError):
        cost = float("nan")
    if isinstance(push_cost, bool) or not (np.isfinite(cost) and cost >= 0):
        raise InvalidParameterError(
            f"'push_cost' must be a finite number >= 0 (sessions per push); got {push_cost!r}."
        )
    actions = ("none", "send", "send_high") if priority else ("none", "send")
    n_actions = len(actions)
    if logging_policy is None:
        behaviour = _builtin_logging_policy(n_actions, eps)
    else:
        custom = logging_policy

        def behaviour(states: pd.DataFrame) -> FloatArray:
            return action_probabilities(custom, states, n_actions)

    _, rows = _rollout(behaviour, n, int(seed), h, h_min, record=True)
    frame = pd.concat(rows, ignore_index=True)
    frame = frame.sort_values(["user", "t"], kind="stable", ignore_index=True)
    p_logged = frame["p_logged"].to_numpy()
    if not (np.all(np.isfinite(p_logged)) and np.all(p_logged > 0)):
        raise InvalidParameterError(
            "'logging_policy' gave a logged action probability 0 (or not finite); every "
            "logged action needs a probability in (0, 1] for off-policy evaluation. Mix in "
            "exploration so that every action the policy can take has a positive probability."
        )
    frame["action"] = np.asarray(actions, dtype=object)[frame["action"].to_numpy()]
    return SequentialSimulation(
        frame,
        actions=actions,
        horizon=h,
        min_horizon=h_min,
        gamma=g,
        push_cost=cost,
        exploration=eps,
        logging_policy=behaviour,
    )
