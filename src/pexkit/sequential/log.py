"""TransitionLog: a validated log of sequential decisions, one row per decision.

Each row is a decision: the unit's state, the logged action with its
propensity, the rewards that followed and whether the episode ended. The next
state of a row is the same unit's next row in the same episode; a unit's
history splits into episodes where two decisions are further apart than the
spec's ``gap``. Histories of different lengths are the normal case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit.exceptions import InvalidDataError
from pexkit.sequential.spec import SequentialSpec

__all__ = ["StateEncoder", "TransitionLog"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _fail(column: str, expected: str, found: str, fix: str, row: Any = None) -> None:
    where = "" if row is None else f" (first at {row})"
    raise InvalidDataError(f"column {column!r}: expected {expected}; found {found}{where}. {fix}")


class StateEncoder:
    """Turns state columns into a float matrix, the same way each time.

    Numeric columns pass through (``scaled=True`` standardizes them with the
    log's means and standard deviations, for neural networks); each categorical
    column becomes one indicator column per level seen in the log (unseen levels
    are all zeros). Round-trips through :meth:`to_dict` (JSON, no pickles).
    """

    def __init__(
        self,
        numeric: tuple[str, ...],
        categorical: tuple[str, ...],
        categories: dict[str, list[str]],
        mean: list[float],
        scale: list[float],
    ) -> None:
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.categories = {k: list(v) for k, v in categories.items()}
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, frame: pd.DataFrame, spec: SequentialSpec) -> StateEncoder:
        cats = {
            c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in spec.categorical
        }
        num = (
            frame[list(spec.numeric)].to_numpy(dtype=np.float64)
            if spec.numeric
            else np.empty((len(frame), 0))
        )
        mean = np.nanmean(num, axis=0) if len(frame) else np.zeros(num.shape[1])
        scale = np.nanstd(num, axis=0) if len(frame) else np.ones(num.shape[1])
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return cls(spec.numeric, spec.categorical, cats, mean.tolist(), scale.tolist())

    @property
    def names(self) -> list[str]:
        """Column names of the encoded matrix."""
        return list(self.numeric) + [
            f"{c}={v}" for c in self.categorical for v in self.categories[c]
        ]

    @property
    def width(self) -> int:
        return len(self.names)

    def transform(self, states: pd.DataFrame, *, scaled: bool = False) -> FloatArray:
        """(n, width) float matrix of ``states`` (a frame with the state columns)."""
        missing = [c for c in (*self.numeric, *self.categorical) if c not in states.columns]
        if missing:
            raise InvalidDataError(
                f"state columns {missing} are missing; expected every state column "
                f"{list(self.numeric) + list(self.categorical)}; found {list(states.columns)[:20]}."
            )
        n = len(states)
        parts: list[FloatArray] = []
        if self.numeric:
            try:
                num = states[list(self.numeric)].to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                bad = [c for c in self.numeric if not pd.api.types.is_numeric_dtype(states[c])]
                raise InvalidDataError(
                    f"state columns {bad}: expected numbers; found non-numeric values. Declare them "
                    "under state.categorical in the spec, or convert them to numbers."
                ) from None
            if scaled:
                num = (num - self.mean) / self.scale
            parts.append(np.nan_to_num(num, nan=0.0) if scaled else num)
        for col in self.categorical:
            levels = self.categories[col]
            values = states[col].astype(str).to_numpy()
            parts.append(
                (values[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(np.float64)
            )
        return np.column_stack(parts) if parts else np.empty((n, 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "categories": self.categories,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StateEncoder:
        return cls(
            tuple(raw["numeric"]),
            tuple(raw["categorical"]),
            raw["categories"],
            raw["mean"],
            raw["scale"],
        )


class TransitionLog:
    """A validated log of sequential decisions.

    Build it with :meth:`from_frame` (pandas or polars) or :meth:`from_path`
    (CSV or Parquet). Rows are sorted by (unit, time); the next state of a row
    is the unit's next row in the same episode.

    Attributes
    ----------
    spec : SequentialSpec
    frame : DataFrame
        The sorted log (the spec's columns).
    actions : ndarray of int, shape (n,)
        Index of the logged action in ``spec.actions``.
    propensity : ndarray, shape (n,)
        P(logged action | state) under the logging policy (estimated and
        cross-fitted when the spec says ``propensity: estimate``).
    rewards : ndarray, shape (n, R)
    done : ndarray of bool, shape (n,)
        Terminal decisions (the episode ends there for good).
    episode : ndarray of int, shape (n,)
        Episode index, 0..n_episodes-1, in order.
    step : ndarray of int, shape (n,)
        Position of the decision in its episode (0 at the first).
    next_index : ndarray of int, shape (n,)
        Row of the next decision in the same episode, -1 at an episode's last row.
    X : ndarray, shape (n, d)
        Encoded states (:class:`StateEncoder`).

    Examples
    --------
    >>> import pandas as pd
    >>> spec = SequentialSpec.from_dict({
    ...     "unit": "user", "time": "t", "action": {"column": "a", "actions": ["none", "send"]},
    ...     "rewards": ["visits"], "state": {"numeric": ["fatigue"]}, "propensity": "p"})
    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 2], "t": [0, 1, 0, 1, 2],
    ...                    "a": ["send", "none", "none", "send", "send"], "p": 0.5,
    ...                    "visits": [1, 0, 0, 1, 1], "fatigue": [0, 1, 0, 0, 1.0]})
    >>> log = TransitionLog.from_frame(df, spec)
    >>> log.n_decisions, log.n_episodes, log.next_index.tolist()
    (5, 2, [1, -1, 3, 4, -1])
    """

    def __init__(
        self,
        spec: SequentialSpec,
        frame: pd.DataFrame,
        actions: IntArray,
        propensity: FloatArray,
        rewards: FloatArray,
        done: NDArray[np.bool_],
        episode: IntArray,
        encoder: StateEncoder | None = None,
        propensity_info: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.frame = frame.reset_index(drop=True)
        self.actions = actions
        self.propensity = propensity
        self.rewards = rewards
        self.done = done
        self.episode = episode
        self.encoder = encoder if encoder is not None else StateEncoder.fit(self.frame, spec)
        self.propensity_info = propensity_info or {"method": f"logged column {spec.propensity!r}"}
        n = len(episode)
        starts = np.r_[True, episode[1:] != episode[:-1]] if n else np.zeros(0, dtype=bool)
        self.episode_starts = np.flatnonzero(starts)
        self.lengths = np.diff(np.r_[self.episode_starts, n]).astype(np.int64)
        self.step = np.arange(n) - np.repeat(self.episode_starts, self.lengths)
        last = np.r_[self.episode_starts[1:] - 1, n - 1] if n else np.zeros(0, dtype=np.int64)
        nxt = np.arange(1, n + 1, dtype=np.int64)
        nxt[last] = -1
        self.next_index = nxt
        self.X = self.encoder.transform(self.frame)

    # ------------------------------------------------------------ sizes
    @property
    def n_decisions(self) -> int:
        return int(len(self.actions))

    @property
    def n_episodes(self) -> int:
        return int(len(self.episode_starts))

    @property
    def n_actions(self) -> int:
        return self.spec.n_actions

    @property
    def states(self) -> pd.DataFrame:
        """The state columns of every decision."""
        return self.frame[list(self.spec.state_columns)]

    @property
    def utility(self) -> FloatArray:
        """Per-decision utility: rewards @ the spec's signed weights."""
        return np.asarray(self.rewards @ np.asarray(self.spec.utility_weights), dtype=np.float64)

    @property
    def remaining(self) -> FloatArray:
        """Time from each decision to the end of the log (the latest time in it).

        In the time column's units (seconds for timestamps). Exogenous: it says
        how much of a unit's future the log can still show, which makes a
        finite-window value (what the estimators estimate) Markov.
        """
        t = self.frame[self.spec.time]
        if pd.api.types.is_datetime64_any_dtype(t):
            return np.asarray((t.max() - t).dt.total_seconds().to_numpy(), dtype=np.float64)
        vals = t.to_numpy(dtype=np.float64)
        return np.asarray(vals.max() - vals, dtype=np.float64)

    @property
    def episode_units(self) -> IntArray:
        """Unit index (0..n_units-1) of every episode."""
        codes = pd.factorize(self.frame[self.spec.unit])[0]
        return np.asarray(codes[self.episode_starts], dtype=np.int64)

    def discount(self) -> FloatArray:
        """gamma ** step for every decision."""
        return np.asarray(self.spec.gamma ** self.step.astype(np.float64))

    def next_states(self) -> pd.DataFrame:
        """States of each row's next decision (rows without one are omitted: see ``next_index``)."""
        return self.states.iloc[self.next_index[self.next_index >= 0]].reset_index(drop=True)

    def episode_returns(self, values: FloatArray | None = None) -> FloatArray:
        """Discounted sum per episode of ``values`` (default: the rewards, (E, R))."""
        vals = self.rewards if values is None else values
        disc = self.discount()
        weighted = vals * (disc[:, None] if vals.ndim == 2 else disc)
        return np.asarray(np.add.reduceat(weighted, self.episode_starts, axis=0), dtype=np.float64)

    def subset(self, episodes: IntArray) -> TransitionLog:
        """A log of the given episodes (indices; repeats allowed, for the bootstrap)."""
        rows = np.concatenate(
            [
                np.arange(s, s + n)
                for s, n in zip(self.episode_starts[episodes], self.lengths[episodes], strict=True)
            ]
        )
        new_episode = np.repeat(np.arange(len(episodes)), self.lengths[episodes])
        return TransitionLog(
            self.spec,
            self.frame.iloc[rows],
            self.actions[rows],
            self.propensity[rows],
            self.rewards[rows],
            self.done[rows],
            new_episode,
            self.encoder,
            self.propensity_info,
        )

    def __repr__(self) -> str:
        return (
            f"TransitionLog({self.n_decisions} decisions, {self.n_episodes} episodes, "
            f"actions={list(self.spec.actions)}, rewards={list(self.spec.reward_names)})"
        )

    # ------------------------------------------------------------ loading
    @classmethod
    def from_path(cls, path: str | Path, spec: SequentialSpec, *, single: str = "error") -> TransitionLog:
        """Read a CSV or Parquet log (``single`` as in :meth:`from_frame`)."""
        path = Path(path)
        if not path.exists():
            raise InvalidDataError(
                f"log file {str(path)!r} does not exist; pass the path of a CSV or Parquet log."
            )
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            return cls.from_frame(pd.read_parquet(path), spec, single=single)
        if suffix in (".csv", ".txt"):
            try:
                frame = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                raise InvalidDataError(
                    f"log file {str(path)!r}: expected a header row and data rows; found an empty file."
                ) from None
            return cls.from_frame(frame, spec, single=single)
        raise InvalidDataError(
            f"log file {str(path)!r}: expected a .csv or .parquet file; found {suffix!r}."
        )

    @classmethod
    def from_frame(cls, frame: Any, spec: SequentialSpec, *, single: str = "error") -> TransitionLog:
        """Validate a decision log and build the transitions.

        ``single`` says what to do with an episode of one decision that is not
        terminal (no transition: e.g. a user first seen on the log's last day):
        ``"error"`` (the default: say so) or ``"drop"`` (leave those decisions out).
        """
        if single not in ("error", "drop"):
            raise InvalidDataError(f"'single' must be 'error' or 'drop'; got {single!r}.")
        if not isinstance(spec, SequentialSpec):
            raise InvalidDataError(
                f"'spec' must be a SequentialSpec; got {type(spec).__name__}. Build one with "
                "px.SequentialSpec.from_dict(...) or from_yaml(...)."
            )
        if not isinstance(frame, pd.DataFrame):
            to_pandas = getattr(frame, "to_pandas", None)
            if to_pandas is None:
                raise InvalidDataError(
                    f"the log must be a pandas or polars DataFrame; got {type(frame).__name__}."
                )
            frame = to_pandas()
        if len(frame) == 0:
            raise InvalidDataError("the log has no rows; expected one row per decision.")
        roles = {spec.unit: "unit", spec.time: "time", spec.action: "action"}
        roles.update(dict.fromkeys(spec.reward_names, "reward"))
        roles.update(dict.fromkeys(spec.state_columns, "state"))
        if spec.done is not None:
            roles[spec.done] = "done"
        if spec.propensity not in (None, "estimate"):
            roles[str(spec.propensity)] = "propensity"
        missing = [f"{c} ({role})" for c, role in roles.items() if c not in frame.columns]
        if missing:
            raise InvalidDataError(
                f"the log lacks the spec's columns {missing}; found columns {list(frame.columns)[:20]}. "
                "Rename the columns or fix the spec."
            )
        if spec.propensity is None:
            raise InvalidDataError(
                "the spec has no 'propensity': off-policy learning and evaluation need P(logged action "
                "| state) under the logging policy. Log it and name its column in the spec, or set "
                "'propensity: estimate' to fit a model of the logging policy (less trustworthy)."
            )
        df = frame[list(roles)].copy()
        if df[spec.unit].isna().any():
            _fail(
                spec.unit,
                "a unit id on every row",
                "missing ids",
                "Drop those rows or fill the ids.",
                f"row {int(np.flatnonzero(df[spec.unit].isna().to_numpy())[0])}",
            )
        time = df[spec.time]
        if not (pd.api.types.is_numeric_dtype(time) or pd.api.types.is_datetime64_any_dtype(time)):
            parsed = pd.to_datetime(time, errors="coerce", utc=True)
            if parsed.isna().any():
                _fail(
                    spec.time,
                    "integer steps or timestamps",
                    f"values such as {time[parsed.isna()].iloc[0]!r}",
                    "Convert the column to numbers or ISO-8601 timestamps.",
                )
            df[spec.time] = parsed
        if df[spec.time].isna().any():
            _fail(
                spec.time,
                "a time on every row",
                "missing times",
                "Drop those rows or fill the times.",
            )
        # the log's row order is not trusted: sort each unit's decisions by time
        df = df.sort_values([spec.unit, spec.time], kind="stable").reset_index(drop=True)
        dup = df.duplicated([spec.unit, spec.time], keep=False).to_numpy()
        if dup.any():
            row = df.loc[np.flatnonzero(dup)[0]]
            _fail(
                f"{spec.unit}, {spec.time}",
                "one decision per (unit, time)",
                f"{int(dup.sum())} rows that share a (unit, time), such as ({row[spec.unit]!r}, {row[spec.time]!r})",
                "Keep one decision per unit and time (deduplicate the export), or use a finer time.",
            )
        labels = df[spec.action].astype(str)
        index = {a: i for i, a in enumerate(spec.actions)}
        actions = labels.map(index)
        if actions.isna().any():
            bad = sorted(labels[actions.isna()].unique().tolist())[:5]
            _fail(
                spec.action,
                f"one of the spec's actions {list(spec.actions)}",
                f"{bad}",
                "Add the labels to action.actions in the spec, or fix the log.",
            )
        act = actions.to_numpy(dtype=np.int64)
        rewards = np.empty((len(df), len(spec.rewards)))
        for j, name in enumerate(spec.reward_names):
            col = pd.to_numeric(df[name], errors="coerce")
            bad_mask = col.isna().to_numpy() | ~np.isfinite(
                col.to_numpy(dtype=np.float64, na_value=np.nan)
            )
            if bad_mask.any():
                i = int(np.flatnonzero(bad_mask)[0])
                _fail(
                    name,
                    "a finite number on every decision (the reward that followed it)",
                    f"{int(bad_mask.sum())} missing or non-numeric values such as {df[name].iloc[i]!r}",
                    "A decision with no event has reward 0: fill missing rewards with 0 if that is what "
                    "they mean, or drop those decisions.",
                    f"sorted row {i}",
                )
            rewards[:, j] = col.to_numpy(dtype=np.float64)
        for col in spec.numeric:
            if not (pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col])):
                _fail(
                    col,
                    "a numeric state column",
                    f"values such as {df[col].iloc[0]!r}",
                    f"Declare {col!r} under state.categorical in the spec, or convert it to numbers.",
                )
        # episodes: a new unit, or a gap longer than the spec's
        unit_codes = pd.factorize(df[spec.unit])[0]
        new = np.r_[True, unit_codes[1:] != unit_codes[:-1]]
        if spec.gap is not None:
            t = df[spec.time]
            if pd.api.types.is_datetime64_any_dtype(t):
                secs = (
                    (t - pd.Timestamp(0, tz=getattr(t.dt, "tz", None)))
                    .dt.total_seconds()
                    .to_numpy()
                )
            else:
                secs = t.to_numpy(dtype=np.float64)
            new |= np.r_[False, np.diff(secs) > spec.gap]
        episode = np.cumsum(new) - 1
        last = np.r_[new[1:], True]
        done = np.zeros(len(df), dtype=bool)
        if spec.done is not None:
            raw_done = pd.to_numeric(df[spec.done], errors="coerce")
            if raw_done.isna().any() or not raw_done.isin([0, 1]).all():
                _fail(
                    spec.done,
                    "0/1 (or true/false) terminal flags",
                    f"values {sorted(df[spec.done].astype(str).unique())[:5]}",
                    "Mark terminal decisions (e.g. an unsubscribe) with 1 and every other decision with 0.",
                )
            done = raw_done.to_numpy(dtype=np.float64) == 1
            early = done & ~last
            if early.any():
                i = int(np.flatnonzero(early)[0])
                _fail(
                    spec.done,
                    "a terminal flag only on an episode's last decision",
                    f"decisions after a terminal one for unit {df[spec.unit].iloc[i]!r}",
                    "A terminal decision ends the episode: drop the unit's later decisions, or set "
                    "'gap' so that a comeback starts a new episode.",
                    f"sorted row {i}",
                )
        lengths = np.diff(np.r_[np.flatnonzero(new), len(df)])
        lone = (lengths == 1) & ~done[np.flatnonzero(new)]
        if lone.any() and single == "drop":
            keep = ~np.repeat(lone, lengths)
            kept = df[keep].reset_index(drop=True)
            if kept.empty:
                raise InvalidDataError("every episode of the log has one decision; nothing to learn from.")
            return cls.from_frame(kept, spec, single="error")
        if lone.any():
            i = int(np.flatnonzero(new)[np.flatnonzero(lone)[0]])
            raise InvalidDataError(
                f"column {spec.unit!r}: expected at least two decisions per episode (a transition needs a "
                f"next state) unless the first is terminal; found {int(lone.sum())} episodes with one "
                f"decision, such as unit {df[spec.unit].iloc[i]!r}. Pass single='drop' to leave them "
                "out, or mark terminal decisions in the 'done' column."
            )
        info: dict[str, Any] | None = None
        if spec.propensity == "estimate":
            from pexkit.data.propensity import estimate_propensity

            enc = StateEncoder.fit(df, spec)
            prop, info = estimate_propensity(enc.transform(df), act, spec.actions, categorical=[])
            info = {**info, "method": "estimated: " + str(info["method"])}
        else:
            p = pd.to_numeric(df[str(spec.propensity)], errors="coerce").to_numpy(dtype=np.float64)
            bad_p = ~np.isfinite(p) | (p <= 0) | (p > 1)
            if bad_p.any():
                i = int(np.flatnonzero(bad_p)[0])
                _fail(
                    str(spec.propensity),
                    "P(logged action | state) in (0, 1]",
                    f"{int(bad_p.sum())} values outside it such as {df[str(spec.propensity)].iloc[i]!r}",
                    "Log the probability the logging policy gave the action it took; a policy that "
                    "never explores (probability 0 or 1 everywhere) cannot be evaluated off-policy.",
                    f"sorted row {i}",
                )
            prop = p
        return cls(spec, df, act, prop, rewards, done, episode.astype(np.int64), None, info)
