"""Serve a fitted :class:`~pexkit.sequential.agents.OfflineAgent` one decision at a time.

:class:`ServedAgent` answers ``decide(unit, time, state)`` with the agent's
greedy action, explored epsilon-uniformly: with probability ``epsilon`` the
action is drawn uniformly from all ``A`` actions. The draw is a keyed hash of
``(salt, unit, time)`` (:func:`pexkit.serving.assign.bucket`, the hash the
decision service assigns units with), so the same decision is made again on a
replay, in any process. The propensity returned is the probability of the
returned action under the served policy, ``(1 - epsilon) * 1{greedy} +
epsilon / A``: every action keeps at least ``epsilon / A``, so the log the
served policy writes supports off-policy evaluation of the next candidates.

The fast path never builds a DataFrame: the state dict is checked and encoded
into one row with a dict lookup per column (the agent's own
:class:`~pexkit.sequential.log.StateEncoder`, read from its JSON form), and
the Q-values come from the agent's numpy network (CQL, DDQN) or its LightGBM
booster (FQI) on that row. The Q-values equal ``agent.q_values`` on a one-row
frame (to rounding for the networks, exactly for FQI).

:class:`ServedUniform` is the same interface for the uniformly random policy a
team serves before any agent exists (pure exploration, propensity ``1 / A``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidDataError, InvalidParameterError, ModelFormatError
from pexkit.sequential.spec import SequentialSpec
from pexkit.serving.assign import bucket, uniform_arm

if TYPE_CHECKING:  # pragma: no cover
    from pexkit.sequential.agents import OfflineAgent

__all__ = [
    "SequentialDecision",
    "ServedAgent",
    "ServedUniform",
    "StateSchema",
    "time_key",
]

FloatArray = NDArray[np.float64]

DEFAULT_SALT = "pexkit-sequential"
_MAX_ABS = 1e300
_MAX_STEP = 2.0**53  # steps are exact in a float64 below this
# hash purposes: the uniform policy, and epsilon-greedy's coin and its uniform action
_UNIFORM, _EXPLORE, _EXPLORE_ARM = "sequential", "sequential-explore", "sequential-explore-arm"


@dataclass(frozen=True)
class SequentialDecision:
    """One sequential decision.

    Attributes
    ----------
    action : str
        The action's label (``spec.actions``).
    action_index : int
        Its index in ``spec.actions``.
    propensity : float
        P(this action | the state) under the served policy.
    version : int or None
        The decision service's agent version that served it (1: uniform random).
    explored : bool
        Whether the action was drawn uniformly (exploration) rather than chosen
        greedily; every decision of the uniform policy is.
    unit : str or None
    time : int, float, str or None
        The decision's time as stored: a step, or a UTC ISO-8601 timestamp.
    """

    action: str
    action_index: int
    propensity: float
    version: int | None = None
    explored: bool = False
    unit: str | None = None
    time: int | float | str | None = None


def time_key(value: Any, where: str = "time") -> tuple[str, float]:
    """The canonical text and numeric value of a decision time.

    A step is a finite number (``3`` and ``3.0`` are the same time); a
    timestamp is a timezone-aware ISO-8601 string or datetime, kept in UTC
    (its value: seconds since 1970). The text is what the exploration hash and
    the decision service's key see, so ``"2026-03-01T13:00:00+01:00"`` and
    ``"2026-03-01T12:00:00Z"`` are one time.

    Examples
    --------
    >>> time_key(3.0), time_key(2.5)
    (('3', 3.0), ('2.5', 2.5))
    >>> time_key("2026-03-01T13:00:00+01:00")
    ('2026-03-01T12:00:00+00:00', 1772366400.0)
    """
    if isinstance(value, bool) or value is None:
        raise InvalidDataError(
            f"{where}: expected a step (a number) or a timezone-aware ISO-8601 timestamp; "
            f"got {value!r}."
        )
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            x = float(value)
        except OverflowError:
            x = math.inf
        if not (math.isfinite(x) and abs(x) < _MAX_STEP):
            raise InvalidDataError(
                f"{where}: expected a finite step with |step| < 2**53; got {_show(value)}."
            )
        return (str(int(x)) if x.is_integer() else repr(x)), x
    stamp: datetime | None = None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            stamp = None
    if stamp is None or stamp.tzinfo is None or stamp.utcoffset() is None:
        raise InvalidDataError(
            f"{where}: expected a step (a number) or a timezone-aware ISO-8601 timestamp such "
            f"as '2026-03-01T12:00:00Z'; got {_show(value)}."
        )
    try:
        utc = stamp.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidDataError(f"{where}: the timestamp {_show(value)} is out of range.") from None
    return utc.isoformat(), utc.timestamp()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(unit: Any, tkey: str) -> str:
    return f"{unit}\x1f{tkey}"


class StateSchema:
    """Checks a state dict against the spec's state columns and cleans its values.

    Numeric values: numbers (``None`` or NaN when unknown); categorical values:
    strings or integers (kept as text; ``None`` when unknown). Extra keys are
    ignored. Errors are :class:`~pexkit.exceptions.InvalidDataError` naming the
    column and the fix.
    """

    def __init__(self, numeric: Sequence[str], categorical: Sequence[str]) -> None:
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.columns = self.numeric + self.categorical

    @classmethod
    def of(cls, spec: SequentialSpec) -> StateSchema:
        return cls(spec.numeric, spec.categorical)

    def check(self, state: Any, where: str = "state") -> dict[str, Any]:
        """The state's values by column: floats (None: unknown) and category texts."""
        if not isinstance(state, Mapping):
            raise InvalidDataError(
                f"{where}: expected an object of state values by column {list(self.columns)}; "
                f"got {type(state).__name__}."
            )
        missing = [c for c in self.columns if c not in state]
        if missing:
            raise InvalidDataError(
                f"{where}: missing state column(s) {missing}; the spec's state columns are "
                f"{list(self.columns)}. Send every state column (null when unknown)."
            )
        clean: dict[str, Any] = {}
        for col in self.numeric:
            v = state[col]
            if v is None:
                clean[col] = None
                continue
            if isinstance(v, bool | np.bool_) or not isinstance(
                v, int | float | np.integer | np.floating
            ):
                raise InvalidDataError(
                    f"{where}.{col}: expected a number (numeric state column); got {_show(v)} "
                    f"({type(v).__name__}). Send a number, or null when unknown."
                )
            try:
                x = float(v)
            except OverflowError:
                x = math.inf
            if math.isnan(x):
                clean[col] = None
            elif math.isinf(x) or abs(x) > _MAX_ABS:
                raise InvalidDataError(
                    f"{where}.{col}: expected a finite number (|x| <= 1e300); got {_show(v)}."
                )
            else:
                clean[col] = x
        for col in self.categorical:
            v = state[col]
            if v is None:
                clean[col] = None
            elif isinstance(v, str):
                if len(v) > 200:
                    raise InvalidDataError(
                        f"{where}.{col}: a category has at most 200 characters; got {len(v)}."
                    )
                clean[col] = v
            elif isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_):
                clean[col] = str(int(v))
            else:
                raise InvalidDataError(
                    f"{where}.{col}: expected a category (a string or an integer; "
                    f"categorical state column); got {_show(v)} ({type(v).__name__})."
                )
        return clean


class _Served:
    """``decide`` in terms of ``decision`` (shared by the served policies)."""

    def decision(self, unit: Any, time: Any, state: Mapping[str, Any]) -> SequentialDecision:
        raise NotImplementedError

    def decide(self, unit: Any, time: Any, state: Mapping[str, Any]) -> tuple[str, int, float]:
        """``(action label, action index, propensity)`` for one (unit, time, state)."""
        d = self.decision(unit, time, state)
        return d.action, d.action_index, d.propensity


class ServedUniform(_Served):
    """The uniformly random policy over the spec's actions, deterministic per (unit, time).

    Served before any agent is launched: every action has probability ``1 / A``.
    """

    def __init__(self, spec: SequentialSpec, salt: str = DEFAULT_SALT) -> None:
        self.spec = spec
        self.actions = tuple(spec.actions)
        self.salt = _check_salt(salt)
        self.schema = StateSchema.of(spec)
        self.epsilon = 1.0

    def decision(self, unit: Any, time: Any, state: Mapping[str, Any]) -> SequentialDecision:
        self.schema.check(state)
        return self.decisions([unit], [time], [state], checked=True)[0]

    def decisions(
        self,
        units: Sequence[Any],
        times: Sequence[Any],
        states: Sequence[Mapping[str, Any]],
        *,
        checked: bool = False,
    ) -> list[SequentialDecision]:
        """Decisions for many (unit, time, state); ``checked``: the states are clean already."""
        if not checked:
            for i, s in enumerate(states):
                self.schema.check(s, f"states[{i}]")
        A = len(self.actions)
        out = []
        for unit, time in zip(units, times, strict=True):
            tkey, _ = time_key(time)
            a = uniform_arm(self.salt, _UNIFORM, _key(unit, tkey), A)
            out.append(
                SequentialDecision(
                    self.actions[a],
                    a,
                    1.0 / A,
                    explored=True,
                    unit=str(unit),
                    time=_time_out(time, tkey),
                )
            )
        return out


def _time_out(time: Any, tkey: str) -> int | float | str:
    if isinstance(time, int | float | np.integer | np.floating) and not isinstance(time, bool):
        x = float(time)
        return int(x) if x.is_integer() else x
    return tkey


def _check_salt(salt: Any) -> str:
    if not isinstance(salt, str) or not salt:
        raise InvalidParameterError(f"'salt' must be a non-empty string; got {salt!r}.")
    return salt


class ServedAgent(_Served):
    """A fitted offline agent served epsilon-greedily, one (unit, time, state) at a time.

    Parameters
    ----------
    agent : OfflineAgent or mapping
        A fitted :class:`~pexkit.sequential.agents.OfflineAgent`, or its
        :meth:`~pexkit.sequential.agents.OfflineAgent.to_dict` (JSON) form.
    epsilon : float
        Share of decisions drawn uniformly over all actions, in [0, 1]. Every
        action then has probability at least ``epsilon / A``; 0 serves the
        greedy action only (a log without support for other actions).
    salt : str
        Key of the exploration hash: the same (salt, unit, time) explores the
        same way in every process and on every replay.

    Attributes
    ----------
    agent : OfflineAgent
    spec : SequentialSpec
        The agent's training spec (actions and state columns).
    actions : tuple of str

    Examples
    --------
    >>> served = ServedAgent(agent, epsilon=0.05, salt="notif-2026")  # doctest: +SKIP
    >>> served.decide("user-1", 3, {"fatigue": 0.4, "platform": "ios", ...})  # doctest: +SKIP
    ('none', 0, 0.975)
    """

    def __init__(self, agent: Any, epsilon: float = 0.05, salt: str = DEFAULT_SALT) -> None:
        from pexkit.sequential.agents import OfflineAgent  # the client imports this module

        self.agent: OfflineAgent
        if isinstance(agent, OfflineAgent):
            raw = agent.to_dict()
            self.agent = agent
        elif isinstance(agent, Mapping):
            raw = dict(agent)
            self.agent = OfflineAgent.from_dict(raw)  # checks the format, version and shapes
        else:
            raise InvalidParameterError(
                "'agent' must be a fitted OfflineAgent or its to_dict() form; got "
                f"{type(agent).__name__}."
            )
        eps = (
            float(epsilon)
            if isinstance(epsilon, int | float) and not isinstance(epsilon, bool)
            else float("nan")
        )
        if not 0.0 <= eps <= 1.0:
            raise InvalidParameterError(f"'epsilon' must be a number in [0, 1]; got {epsilon!r}.")
        self.epsilon = eps
        self.salt = _check_salt(salt)
        self.spec: SequentialSpec = self.agent.spec_
        self.actions = tuple(self.spec.actions)
        self.schema = StateSchema.of(self.spec)
        try:
            enc = raw["encoder"]
            self._numeric = tuple(str(c) for c in enc["numeric"])
            self._mean = [float(m) for m in enc["mean"]]
            self._scale = [float(v) for v in enc["scale"]]
            if len(self._mean) != len(self._numeric) or len(self._scale) != len(self._numeric):
                raise ValueError("one mean and one scale per numeric column")
            width = len(self._numeric)
            self._levels: list[tuple[str, dict[str, int]]] = []
            for col in enc["categorical"]:
                levels = [str(v) for v in enc["categories"][col]]
                self._levels.append((str(col), {v: width + j for j, v in enumerate(levels)}))
                width += len(levels)
            model = raw["model"]
            self.kind = str(model["kind"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFormatError(
                f"an offline agent: its encoder or model is incomplete ({type(exc).__name__}: "
                f"{exc}). Re-train it and save it again."
            ) from None
        self.width = width
        self._lock = threading.Lock()
        self._layers: list[tuple[FloatArray, FloatArray]] = []
        self._booster: Any = None
        self._offset = 0.0
        try:
            if self.kind == "mlp":
                for layer in model["layers"]:
                    W = np.asarray(layer["weight"], dtype=np.float64)
                    self._layers.append(
                        (
                            W.reshape(len(layer["weight"]), -1),
                            np.asarray(layer["bias"], dtype=np.float64),
                        )
                    )
            else:
                import lightgbm as lgb

                self._offset = float(model.get("offset", 0.0))
                self._booster = lgb.Booster(model_str=model["booster"])
        except Exception as exc:  # noqa: BLE001 - from_dict read it: a format this module lacks
            raise ModelFormatError(
                f"an offline agent: its {self.kind!r} model cannot be served ({type(exc).__name__}: "
                f"{exc}). Re-train the agent with this pexkit version."
            ) from None
        self._self_check()

    def _self_check(self) -> None:
        """The fast path must agree with ``agent.q_values``: checked once, on probe states."""
        import pandas as pd

        probes = []
        for k in range(2):
            state: dict[str, Any] = {
                c: m + k for c, m in zip(self._numeric, self._mean, strict=True)
            }
            for col, index in self._levels:
                levels = sorted(index, key=index.__getitem__)
                state[col] = levels[k % len(levels)] if levels else None
            probes.append(state)
        try:
            fast = np.array([self.q_row(s) for s in probes])
            slow = self.agent.q_values(pd.DataFrame(probes, columns=list(self.spec.state_columns)))
        except Exception as exc:  # noqa: BLE001 - a corrupt agent fails here, not on a request
            raise ModelFormatError(
                f"an offline agent: it cannot compute Q-values ({type(exc).__name__}: {exc}). "
                "Re-train it and save it again."
            ) from None
        if fast.shape != np.shape(slow) or not np.allclose(fast, slow, rtol=1e-9, atol=1e-9):
            raise ModelFormatError(
                f"ServedAgent: its fast path gives Q-values {fast.tolist()} where the agent gives "
                f"{np.asarray(slow).tolist()}; the agent's JSON form changed in a way "
                "pexkit.sequential.serving does not know. Serve it with a pexkit version whose "
                "serving matches its agents."
            )

    # ------------------------------------------------------------ encoding
    def encode(self, clean: Mapping[str, Any], out: FloatArray | None = None) -> FloatArray:
        """One checked state (:meth:`StateSchema.check`) as the agent's encoded row."""
        scaled = self.kind == "mlp"
        x = np.zeros(self.width) if out is None else out
        for i, col in enumerate(self._numeric):
            v = clean[col]
            if v is None:
                x[i] = 0.0 if scaled else math.nan
            elif scaled:
                x[i] = (v - self._mean[i]) / self._scale[i]
            else:
                x[i] = v
        for col, index in self._levels:
            v = clean[col]
            j = index.get(v if isinstance(v, str) else str(v))
            if j is not None:
                x[j] = 1.0
        return x

    def _q(self, X: FloatArray) -> FloatArray:
        """(n, A) Q-values of encoded rows."""
        if self.kind == "mlp":
            h = X
            last = len(self._layers) - 1
            for i, (W, b) in enumerate(self._layers):
                h = h @ W + b
                if i < last:
                    np.maximum(h, 0.0, out=h)
            return h
        n, A = X.shape[0], len(self.actions)
        Z = np.zeros((n * A, self.width + A))
        Z[:, : self.width] = np.repeat(X, A, axis=0)
        Z[np.arange(n * A), self.width + np.tile(np.arange(A), n)] = 1.0
        extra = {"num_threads": 1} if n * A < 2_000 else {}
        with self._lock:  # one booster, many request threads
            raw = np.asarray(self._booster.predict(Z, **extra), dtype=np.float64)
        return (self._offset + raw).reshape(n, A)  # as OfflineAgent.q_values

    def q_row(self, state: Mapping[str, Any]) -> FloatArray:
        """(A,) Q-values of one state dict (checked), without pandas."""
        q: FloatArray = self._q(self.encode(self.schema.check(state))[None, :])[0]
        return q

    # ------------------------------------------------------------ deciding
    def _pick(self, unit: Any, time: Any, greedy: int) -> SequentialDecision:
        tkey, _ = time_key(time)
        key = _key(unit, tkey)
        A, eps = len(self.actions), self.epsilon
        explored = eps > 0.0 and bucket(self.salt, _EXPLORE, key) < eps
        a = uniform_arm(self.salt, _EXPLORE_ARM, key, A) if explored else greedy
        p = eps / A
        if a == greedy:  # as OfflineAgent.probabilities: eps / A, plus 1 - eps on the greedy one
            p += 1.0 - eps
        return SequentialDecision(
            self.actions[a], a, p, explored=explored, unit=str(unit), time=_time_out(time, tkey)
        )

    def decision(self, unit: Any, time: Any, state: Mapping[str, Any]) -> SequentialDecision:
        """The decision for one (unit, time, state), with whether it explored."""
        q = self.q_row(state)
        return self._pick(unit, time, int(np.argmax(q)))

    def decide(self, unit: Any, time: Any, state: Mapping[str, Any]) -> tuple[str, int, float]:
        """``(action label, action index, propensity)`` for one (unit, time, state)."""
        d = self.decision(unit, time, state)
        return d.action, d.action_index, d.propensity

    def decisions(
        self,
        units: Sequence[Any],
        times: Sequence[Any],
        states: Sequence[Mapping[str, Any]],
        *,
        checked: bool = False,
    ) -> list[SequentialDecision]:
        """Decisions for many (unit, time, state) with one forward pass.

        ``checked``: the states are already clean (:meth:`StateSchema.check`).
        """
        n = len(states)
        if not (len(units) == len(times) == n):
            raise InvalidParameterError(
                f"'units', 'times' and 'states' must have the same length; got {len(units)}, "
                f"{len(times)} and {n}."
            )
        X = np.zeros((n, self.width))
        for i, s in enumerate(states):
            self.encode(s if checked else self.schema.check(s, f"states[{i}]"), X[i])
        greedy = np.argmax(self._q(X), axis=1).tolist() if n else []
        return [self._pick(u, t, g) for u, t, g in zip(units, times, greedy, strict=True)]

    def __repr__(self) -> str:
        return (
            f"ServedAgent({self.agent.algorithm}, actions={list(self.actions)}, "
            f"epsilon={self.epsilon})"
        )
