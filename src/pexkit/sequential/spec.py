"""SequentialSpec: what a log of repeated decisions per unit contains."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pexkit.exceptions import SpecError
from pexkit.spec.spec import read_yaml

__all__ = ["Reward", "SequentialSpec"]

_GOALS = ("maximize", "minimize")
_KEYS = ("name", "unit", "time", "action", "rewards", "state", "propensity", "done", "gamma", "gap")


@dataclass(frozen=True)
class Reward:
    """One per-decision reward: a column, whether more is better, and its weight."""

    name: str
    goal: str = "maximize"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.goal not in _GOALS:
            raise SpecError(
                f"reward {self.name!r}: 'goal' must be 'maximize' or 'minimize'; got {self.goal!r}."
            )
        w = float(self.weight)
        if not (math.isfinite(w) and w >= 0):
            raise SpecError(
                f"reward {self.name!r}: 'weight' must be a finite number >= 0; got "
                f"{self.weight!r}. Give 0 to track a reward without optimizing it."
            )

    @property
    def sign(self) -> float:
        """+1 for a reward to maximize, -1 for one to minimize."""
        return 1.0 if self.goal == "maximize" else -1.0


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(str(v) for v in value)
    raise SpecError(f"{what} must be a list of column names; got {value!r}.")


def _reward(item: Any) -> Reward:
    if isinstance(item, str):
        return Reward(item)
    if isinstance(item, Mapping):
        unknown = set(item) - {"name", "goal", "weight"}
        if unknown or "name" not in item:
            raise SpecError(
                f"a reward is a mapping {{name, goal, weight}}; got {dict(item)!r}"
                + (f" (unknown keys {sorted(unknown)})" if unknown else " (no 'name')")
                + "."
            )
        return Reward(
            str(item["name"]), str(item.get("goal", "maximize")), float(item.get("weight", 1.0))
        )
    raise SpecError(f"a reward must be a name or a mapping {{name, goal, weight}}; got {item!r}.")


def parse_gap(value: Any) -> float | None:
    """The episode gap in the time column's units; strings like '2d' are seconds.

    >>> parse_gap(3), parse_gap("2h"), parse_gap(None)
    (3.0, 7200.0, None)
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        gap = float(value)
    else:
        units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
        raw = str(value).strip().lower()
        try:
            gap = float(raw[:-1]) * units[raw[-1]] if raw[-1:] in units else float(raw)
        except ValueError:
            gap = float("nan")
    if not (math.isfinite(gap) and gap > 0):
        raise SpecError(
            f"'gap' must be a positive number (in the time column's units) or a duration "
            f"like '2d' for timestamps; got {value!r}. Remove it to keep each unit's "
            "history as one episode."
        )
    return gap


class SequentialSpec:
    """The description of a log of sequential decisions (one row per decision).

    Parameters
    ----------
    unit : str
        Column with the unit (user) id.
    time : str
        Column ordering a unit's decisions: an integer step or a timestamp.
    action : mapping
        ``{"column": ..., "actions": [...]}``: the logged action and the labels
        of every action, in a fixed order (action indices follow it).
    rewards : sequence
        Reward columns observed after each decision: names or mappings
        ``{name, goal, weight}``. The utility is ``sum(weight * sign * reward)``
        as in :class:`~pexkit.LinearPolicy`.
    state : mapping
        ``{"numeric": [...], "categorical": [...]}``: what the decision sees.
    propensity : str or None
        Column with P(logged action | state) under the logging policy; ``"estimate"``
        fits a cross-fitted model of the behaviour policy instead.
    done : str or None
        Column flagging terminal decisions (an unsubscribe ends the episode).
    gamma : float
        Discount per decision, in [0, 1].
    gap : number or str, optional
        A new episode starts when two decisions of a unit are further apart than
        this (in the time column's units; a duration like ``"2d"`` for timestamps).
    name : str

    Examples
    --------
    >>> spec = SequentialSpec.from_dict({
    ...     "unit": "user", "time": "t",
    ...     "action": {"column": "action", "actions": ["none", "send"]},
    ...     "rewards": [{"name": "visits"}, {"name": "pushes", "goal": "minimize", "weight": 0.1}],
    ...     "state": {"numeric": ["fatigue"]}, "propensity": "p", "gamma": 0.9})
    >>> spec.actions, spec.reward_names, spec.utility_weights
    (('none', 'send'), ('visits', 'pushes'), (1.0, -0.1))
    """

    def __init__(
        self,
        *,
        unit: str,
        time: str,
        action: Mapping[str, Any],
        rewards: Sequence[Any],
        state: Mapping[str, Any] | None = None,
        propensity: str | None = None,
        done: str | None = None,
        gamma: float = 0.9,
        gap: Any = None,
        name: str = "sequential",
    ) -> None:
        for key, value in (("unit", unit), ("time", time)):
            if not isinstance(value, str) or not value:
                raise SpecError(
                    f"'{key}' must name a column (the {'unit id' if key == 'unit' else 'decision time'}); "
                    f"got {value!r}."
                )
        if not isinstance(action, Mapping) or "column" not in action or "actions" not in action:
            raise SpecError(
                "'action' must be a mapping {column, actions}: the column holding the logged "
                f"action and the list of action labels; got {action!r}."
            )
        unknown = set(action) - {"column", "actions"}
        if unknown:
            raise SpecError(
                f"'action' has unknown keys {sorted(unknown)}; expected column, actions."
            )
        actions = _names(action["actions"], "'action.actions'")
        if len(actions) < 2 or len(set(actions)) != len(actions):
            raise SpecError(
                f"'action.actions' must list at least two distinct action labels; got {list(actions)}."
            )
        if isinstance(rewards, str | Mapping) or not isinstance(rewards, Sequence) or not rewards:
            raise SpecError(
                "'rewards' must be a non-empty list of reward columns (names or "
                f"{{name, goal, weight}}); got {rewards!r}."
            )
        parsed = tuple(_reward(r) for r in rewards)
        names = [r.name for r in parsed]
        if len(set(names)) != len(names):
            raise SpecError(f"'rewards' names a column twice: {names}.")
        if all(r.weight == 0 for r in parsed):
            raise SpecError(
                "every reward has weight 0; give at least one reward a positive weight."
            )
        state = state or {}
        if not isinstance(state, Mapping) or set(state) - {"numeric", "categorical"}:
            raise SpecError(
                f"'state' must be a mapping {{numeric: [...], categorical: [...]}}; got {state!r}."
            )
        numeric = _names(state.get("numeric"), "'state.numeric'")
        categorical = _names(state.get("categorical"), "'state.categorical'")
        if not numeric and not categorical:
            raise SpecError(
                "'state' lists no columns; a sequential policy decides from the unit's state, "
                "so name at least one numeric or categorical state column."
            )
        try:
            g = float(gamma)
        except (TypeError, ValueError):
            g = float("nan")
        if not (0.0 <= g <= 1.0):
            raise SpecError(f"'gamma' must be a number in [0, 1]; got {gamma!r}.")
        cols = [unit, time, str(action["column"]), *names, *numeric, *categorical]
        for extra in (propensity, done):
            if extra is not None and extra != "estimate":
                cols.append(str(extra))
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise SpecError(
                f"the spec uses the column(s) {dup} for two roles; give each role its own column."
            )
        self.name = str(name)
        self.unit = unit
        self.time = time
        self.action = str(action["column"])
        self.actions = actions
        self.rewards = parsed
        self.numeric = numeric
        self.categorical = categorical
        self.propensity = None if propensity is None else str(propensity)
        self.done = None if done is None else str(done)
        self.gamma = g
        self.gap = parse_gap(gap)

    # ------------------------------------------------------------ properties
    @property
    def state_columns(self) -> tuple[str, ...]:
        """Numeric then categorical state columns."""
        return self.numeric + self.categorical

    @property
    def reward_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rewards)

    @property
    def utility_weights(self) -> tuple[float, ...]:
        """Signed weights: utility = rewards @ utility_weights."""
        return tuple(r.sign * float(r.weight) for r in self.rewards)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    def with_weights(self, weights: Mapping[str, float]) -> SequentialSpec:
        """A copy whose reward weights are replaced by ``weights`` (missing names keep theirs)."""
        unknown = set(weights) - set(self.reward_names)
        if unknown:
            raise SpecError(
                f"weights name unknown rewards {sorted(unknown)}; rewards are {list(self.reward_names)}."
            )
        raw = self.to_dict()
        for item in raw["rewards"]:
            if item["name"] in weights:
                item["weight"] = float(weights[item["name"]])
        return SequentialSpec.from_dict(raw)

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """The YAML form as a plain dict."""
        out: dict[str, Any] = {
            "name": self.name,
            "unit": self.unit,
            "time": self.time,
            "action": {"column": self.action, "actions": list(self.actions)},
            "rewards": [
                {"name": r.name, "goal": r.goal, "weight": float(r.weight)} for r in self.rewards
            ],
            "state": {"numeric": list(self.numeric), "categorical": list(self.categorical)},
            "propensity": self.propensity,
            "done": self.done,
            "gamma": self.gamma,
        }
        if self.gap is not None:
            out["gap"] = self.gap
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SequentialSpec:
        """Build a spec from its YAML form (a mapping)."""
        if not isinstance(raw, Mapping):
            raise SpecError(
                f"a sequential spec must be a mapping with unit, time, action, rewards and state; "
                f"got {type(raw).__name__}."
            )
        unknown = set(raw) - set(_KEYS)
        if unknown:
            raise SpecError(
                f"the sequential spec has unknown keys {sorted(unknown)}; allowed keys are {list(_KEYS)}."
            )
        missing = [k for k in ("unit", "time", "action", "rewards") if k not in raw]
        if missing:
            raise SpecError(
                f"the sequential spec has no {missing}; it needs unit, time, action, rewards and "
                "state (see 'Sequential decisions' in the README)."
            )
        return cls(
            name=str(raw.get("name", "sequential")),
            unit=raw["unit"],
            time=raw["time"],
            action=raw["action"],
            rewards=raw["rewards"],
            state=raw.get("state"),
            propensity=raw.get("propensity"),
            done=raw.get("done"),
            gamma=raw.get("gamma", 0.9),
            gap=raw.get("gap"),
        )

    @classmethod
    def from_yaml(cls, source: str | Path) -> SequentialSpec:
        """Read a spec from a YAML file path (or a YAML string)."""
        return cls.from_dict(read_yaml(source))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The YAML form; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SequentialSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(yaml.safe_dump(self.to_dict()))

    def __repr__(self) -> str:
        return (
            f"SequentialSpec(name={self.name!r}, actions={list(self.actions)}, "
            f"rewards={list(self.reward_names)}, state={list(self.state_columns)}, gamma={self.gamma})"
        )
