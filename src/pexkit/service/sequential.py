"""Sequential experiments in the decision service: ``/v1/sequential``.

A sequential experiment makes one decision per unit and time (e.g. push a
notification today or not) and serves an offline RL agent
(:class:`~pexkit.sequential.agents.OfflineAgent`) trained on its own log:

1. ``POST /v1/sequential`` creates it from a
   :class:`~pexkit.sequential.spec.SequentialSpec`; until an agent is launched,
   decide serves the uniformly random policy (version 1; propensity ``1 / A``),
   so a team can collect a first log.
2. ``POST /v1/sequential/{name}/decide`` ``{unit, time, state}`` decides and
   stores the decision (with the state and its propensity) before answering.
   There is no stickiness: every (unit, time) is its own decision; asking again
   for a (unit, time) returns the stored decision.
3. ``POST /v1/sequential/{name}/log`` ``{unit, time, reward, value}`` attaches
   a reward to the decision at (unit, time) (``event_id`` makes retries
   harmless; ``done: true`` marks the decision terminal).
4. ``GET /v1/sequential/{name}/log`` exports the decision log in the shape
   ``TransitionLog.from_frame(frame, spec)`` reads with the experiment's spec;
   an agent trained on it is launched with ``POST /v1/sequential/{name}/launch``
   (its JSON form, never a pickle) and serves epsilon-greedily
   (:class:`~pexkit.sequential.serving.ServedAgent`), every action keeping at
   least ``epsilon / A`` for the next round's off-policy evaluation.

The logic (:class:`SequentialService`) is independent of HTTP;
:func:`sequential_router` exposes it with the service's keys and errors.
"""

from __future__ import annotations

import csv
import io
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from pexkit.exceptions import InvalidDataError, PexkitError, SpecError
from pexkit.sequential.serving import (
    SequentialDecision,
    ServedAgent,
    ServedUniform,
    StateSchema,
    time_key,
)
from pexkit.sequential.spec import SequentialSpec
from pexkit.service.auth import authorize
from pexkit.service.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from pexkit.service.validation import (
    LIMITS,
    NAME_PATTERN,
    check_batch,
    check_id,
    check_name,
    check_number,
    check_text,
)
from pexkit.store.db import EventStore, StoreUnavailableError, now

__all__ = [
    "CreateSequential",
    "LaunchSequential",
    "SequentialDecideBatch",
    "SequentialDecideRequest",
    "SequentialDecisionOut",
    "SequentialDecisionsOut",
    "SequentialLogBatch",
    "SequentialLogEvent",
    "SequentialLogOut",
    "SequentialOut",
    "SequentialService",
    "sequential_router",
]

Id = str | int
Time = int | float | str

_TIME_DOC = (
    "The decision's time: a step (a number; 3 and 3.0 are the same) when the experiment "
    "was created with time 'step' (default), or a timezone-aware ISO-8601 timestamp "
    "('2026-03-01T12:00:00Z') with time 'timestamp'."
)


# ------------------------------------------------------------------ request/response models
class CreateSequential(BaseModel):
    name: str = Field(
        max_length=64, description="The experiment's name in the API (1-64 of A-Z a-z 0-9 _ . -)."
    )
    spec: dict[str, Any] = Field(
        description=(
            "A sequential spec (DESIGN.md, 'Sequential decisions'): unit, time, action {column, "
            "actions}, rewards [{name, goal, weight}], state {numeric, categorical}, propensity "
            "(the column the export writes each decision's propensity to; default 'propensity'), "
            "done (optional terminal flag column), gamma, gap."
        )
    )
    epsilon: float = Field(
        0.05,
        description="Exploration of launched agents, 0 < epsilon <= 1: "
        "that share of decisions is drawn uniformly over the actions.",
    )
    time: Literal["step", "timestamp"] = Field(
        "step", description="Decision times are steps (numbers) or timestamps."
    )
    salt: str | None = Field(
        None,
        description="Hash salt of the randomization (8-64 printable "
        "ASCII characters); random when absent.",
    )


class LaunchSequential(BaseModel):
    agent: dict[str, Any] = Field(
        description="A fitted agent: OfflineAgent.to_dict() (JSON, format 'pexkit-offline-agent')."
    )
    epsilon: float | None = Field(
        None,
        description="Exploration while it serves, 0 < epsilon <= 1; default: the experiment's.",
    )


class SequentialDecideRequest(BaseModel):
    unit: Id = Field(description="Unit id: a string of 1-200 characters or an integer < 2**63.")
    time: Time = Field(description=_TIME_DOC)
    state: dict[str, Any] = Field(
        description="Every state column of the spec: numbers for "
        "numeric ones, strings for categorical ones (null when "
        "unknown)."
    )


class SequentialDecideBatch(BaseModel):
    requests: list[SequentialDecideRequest] = Field(
        min_length=1, description="At most PEXKIT_MAX_BATCH (10,000)."
    )


class SequentialDecisionOut(BaseModel):
    unit: str
    time: Time = Field(description="The decision's time as stored (a step, or UTC ISO-8601).")
    action: str = Field(description="The action's label.")
    action_index: int = Field(description="Its index in spec.action.actions.")
    propensity: float = Field(description="P(this action | state) under the served policy.")
    version: int = Field(description="The agent version that decided (1: uniform random).")
    explored: bool = Field(description="Drawn uniformly (exploration) rather than greedily.")


class SequentialDecisionsOut(BaseModel):
    decisions: list[SequentialDecisionOut]


class SequentialLogEvent(BaseModel):
    unit: Id
    time: Time = Field(description="The time of the decision the reward followed.")
    reward: str | None = Field(
        None,
        max_length=200,
        description="A reward of the spec; omit it (and value) to only mark the decision done.",
    )
    value: float | int | bool | None = Field(
        None, description="The reward's value; the export sums a decision's values per reward."
    )
    event_id: Id | None = Field(
        None, description="Client-chosen id; a retried event with the same id is counted once."
    )
    done: bool = Field(
        False,
        description="Marks the decision terminal (the spec's done "
        "column), e.g. the user unsubscribed after it.",
    )


class SequentialLogBatch(BaseModel):
    events: list[SequentialLogEvent] = Field(
        min_length=1, description="At most PEXKIT_MAX_BATCH (10,000)."
    )


class SequentialLogResult(BaseModel):
    accepted: int
    duplicates: int


class SequentialVersionOut(BaseModel):
    version: int
    kind: Literal["uniform", "agent"]
    epsilon: float
    live: bool
    summary: dict[str, Any] = Field(
        description="The agent: algorithm, gamma, reward weights, transitions it was trained on."
    )
    created_at: str | None


class SequentialOut(BaseModel):
    name: str
    spec: dict[str, Any]
    epsilon: float = Field(description="The default exploration of a launch.")
    time: Literal["step", "timestamp"]
    live_version: int = Field(description="The version deciding now (1: uniform random).")
    versions: list[SequentialVersionOut]
    decisions: int
    reward_events: int
    created_at: str | None


class SequentialLogOut(BaseModel):
    columns: list[str] = Field(
        description="unit, time, action, propensity, the state "
        "columns, each reward, done (the spec's column names)."
    )
    rows: list[list[Any]] = Field(
        description="One row per decision, by unit and time; a "
        "reward is the sum of its logged values (0 when none)."
    )
    spec: dict[str, Any]
    time: Literal["step", "timestamp"]


# ------------------------------------------------------------------ logic
def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class SequentialService:
    """Sequential experiments over an :class:`~pexkit.store.db.EventStore`.

    Served agents are cached per process by (experiment, version), at most
    ``PEXKIT_MAX_CACHED_MODELS``; the live version is read from the store on
    every request, so a launch takes effect at once on every server.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._served: OrderedDict[tuple[str, str, int], Any] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ experiments
    def _row(self, name: str) -> dict[str, Any]:
        row = self.store.sequential(name) if isinstance(name, str) and len(name) <= 64 else None
        if row is None:
            known = self.store.sequential_names()[:20]
            raise NotFoundError(
                f"sequential experiment {name!r:.80} not found; known sequential experiments: "
                f"{known}. Create it with POST /v1/sequential."
            )
        return row

    def create(
        self,
        name: str,
        spec: dict[str, Any],
        epsilon: float = 0.05,
        time: str = "step",
        salt: str | None = None,
    ) -> dict[str, Any]:
        check_name(name, "name")
        raw = dict(spec)
        raw.setdefault("name", name)
        try:
            parsed = SequentialSpec.from_dict(raw)
        except (SpecError, TypeError, ValueError) as exc:
            raise InvalidRequestError(f"spec: {exc}") from exc
        if parsed.propensity == "estimate":
            raise InvalidRequestError(
                "spec.propensity: the service knows each decision's propensity and exports it; "
                "name its column (e.g. 'propensity') instead of 'estimate'."
            )
        if parsed.propensity is None:
            full = parsed.to_dict()
            full["propensity"] = "propensity"
            try:
                parsed = SequentialSpec.from_dict(full)
            except SpecError as exc:
                raise InvalidRequestError(
                    f"spec.propensity: the export writes each decision's propensity to the "
                    f"column 'propensity', which the spec uses for another role ({exc}); name "
                    "the propensity column in the spec."
                ) from exc
        for i, label in enumerate(parsed.actions):
            check_text(label, f"spec.action.actions[{i}]")
        for i, reward in enumerate(parsed.reward_names):
            check_text(reward, f"spec.rewards[{i}].name")
        columns = [
            parsed.unit,
            parsed.time,
            parsed.action,
            str(parsed.propensity),
            *parsed.state_columns,
        ] + ([parsed.done] if parsed.done else [])
        for col in columns:
            check_text(col, "spec: column name")
        eps = self._epsilon(epsilon, "epsilon")
        if time not in ("step", "timestamp"):
            raise InvalidRequestError(f"time: expected 'step' or 'timestamp'; got {time!r:.40}.")
        if salt is not None and (
            not isinstance(salt, str)
            or not 8 <= len(salt) <= 64
            or not salt.isascii()
            or not salt.isprintable()
        ):
            raise InvalidRequestError(
                f"salt: expected 8-64 printable ASCII characters; got {salt!r:.80}."
            )
        row = {
            "name": name,
            "spec": parsed.to_dict(),
            "salt": salt or secrets.token_hex(16),
            "epsilon": eps,
            "time_kind": time,
            "created_at": now(),
        }
        if not self.store.create_sequential(row):
            raise ConflictError(
                f"sequential experiment {name!r} already exists; pick another name."
            )
        return self.describe(name)

    @staticmethod
    def _epsilon(value: Any, where: str) -> float:
        eps = check_number(value, where)
        if not 0.0 < eps <= 1.0:
            raise InvalidRequestError(
                f"{where}: expected 0 < epsilon <= 1; got {value!r:.40}. A served agent explores "
                "that share of decisions uniformly, so every action keeps probability >= "
                "epsilon / A and the next round can evaluate new agents off-policy (0.05 is a "
                "common choice)."
            )
        return eps

    def describe(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        live = int(row["live_version"])
        n_dec, n_rew = self.store.count_sequential(name)
        return {
            "name": row["name"],
            "spec": row["spec"],
            "epsilon": float(row["epsilon"]),
            "time": row["time_kind"],
            "live_version": live,
            "versions": [
                {
                    "version": int(v["version"]),
                    "kind": v["kind"],
                    "epsilon": float(v["epsilon"]),
                    "live": int(v["version"]) == live,
                    "summary": v["summary"],
                    "created_at": _iso(v["created_at"]),
                }
                for v in self.store.sequential_versions(name)
            ],
            "decisions": n_dec,
            "reward_events": n_rew,
            "created_at": _iso(row["created_at"]),
        }

    def launch(
        self, name: str, agent: dict[str, Any], epsilon: float | None = None
    ) -> dict[str, Any]:
        """Store ``agent`` (OfflineAgent.to_dict()) as the next version and serve it."""
        row = self._row(name)
        spec = SequentialSpec.from_dict(row["spec"])
        eps = self._epsilon(row["epsilon"] if epsilon is None else epsilon, "epsilon")
        try:  # plain JSON, as stored (NaN and infinities become null: PostgreSQL's JSON has none)
            agent = orjson.loads(orjson.dumps(agent))
        except TypeError as exc:  # orjson.JSONEncodeError: e.g. an integer over 64 bits
            raise InvalidRequestError(f"agent: not storable as JSON ({exc}).") from None
        try:
            served = ServedAgent(agent, epsilon=eps, salt=row["salt"])
        except PexkitError as exc:
            raise InvalidRequestError(f"agent: {exc}") from exc
        theirs = served.spec
        problems = []
        if tuple(theirs.actions) != tuple(spec.actions):
            problems.append(
                f"its actions are {list(theirs.actions)}, the experiment's "
                f"{list(spec.actions)} (same labels in the same order)"
            )
        for role in ("numeric", "categorical"):
            mine, other = set(getattr(spec, role)), set(getattr(theirs, role))
            if mine != other:
                problems.append(
                    f"its {role} state columns differ: missing {sorted(mine - other)}, extra "
                    f"{sorted(other - mine)}"
                )
        if problems:
            raise InvalidRequestError(
                f"agent: it does not fit experiment {name!r}: "
                + "; ".join(problems)
                + ". Train it on this experiment's log (GET .../log) with its spec."
            )
        a = served.agent
        fit = a.summary_ or {}
        summary: dict[str, Any] = {
            "algorithm": a.algorithm,
            "gamma": a.gamma_,
            "weights": dict(a.weights_),
            **{k: fit[k] for k in ("transitions", "terminal", "seconds") if k in fit},
        }
        summary = orjson.loads(orjson.dumps(summary))
        version = self.store.launch_sequential(name, agent, eps, summary)
        self._remember((name, _iso(row["created_at"]) or "", version), served)
        return self.describe(name)

    # ------------------------------------------------------------ serving
    def _remember(self, key: tuple[str, str, int], policy: Any) -> None:
        with self._lock:
            self._served[key] = policy
            self._served.move_to_end(key)
            while len(self._served) > LIMITS.max_cached_models:
                self._served.popitem(last=False)

    def _policy(self, row: dict[str, Any]) -> ServedAgent | ServedUniform:
        version = int(row["live_version"])
        key = (row["name"], _iso(row["created_at"]) or "", version)
        with self._lock:
            hit = self._served.get(key)
            if hit is not None:
                self._served.move_to_end(key)
                return hit  # type: ignore[no-any-return]
        stored = self.store.sequential_agent(row["name"], version)
        policy: ServedAgent | ServedUniform
        if stored is None or stored["kind"] == "uniform":
            policy = ServedUniform(SequentialSpec.from_dict(row["spec"]), salt=row["salt"])
        else:
            policy = ServedAgent(
                stored["agent"], epsilon=float(stored["epsilon"]), salt=row["salt"]
            )
        self._remember(key, policy)
        return policy

    @staticmethod
    def _time(row: dict[str, Any], value: Any, where: str) -> tuple[str, float]:
        kind = row["time_kind"]
        if kind == "step" and isinstance(value, str | bool):
            raise InvalidRequestError(
                f"{where}: this experiment's times are steps (numbers); got {value!r:.80}. "
                "Create the experiment with time: 'timestamp' to decide at timestamps."
            )
        if kind == "timestamp" and not isinstance(value, str):
            raise InvalidRequestError(
                f"{where}: this experiment's times are timezone-aware ISO-8601 timestamps "
                f"(e.g. '2026-03-01T12:00:00Z'); got {value!r:.80}."
            )
        try:
            return time_key(value, where)
        except InvalidDataError as exc:
            raise InvalidRequestError(str(exc)) from None

    @staticmethod
    def _time_out(row: dict[str, Any], key: str, value: float) -> int | float | str:
        if row["time_kind"] == "timestamp":
            return key
        return int(value) if float(value).is_integer() else float(value)

    def decide(self, name: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Decide (and store) for ``[{unit, time, state}]``; a stored (unit, time) is returned."""
        check_batch(len(requests), "requests")
        row = self._row(name)
        try:
            policy = self._policy(row)
        except PexkitError as exc:
            raise ConflictError(
                f"the live agent of {name!r} (version {row['live_version']}) cannot be loaded: "
                f"{exc}. Launch a working agent."
            ) from exc
        spec = SequentialSpec.from_dict(row["spec"])
        schema = StateSchema.of(spec)
        keys: list[tuple[str, str]] = []
        first: dict[tuple[str, str], tuple[Any, float, dict[str, Any]]] = {}
        for i, req in enumerate(requests):
            where = f"requests[{i}]"
            unit = check_id(req.get("unit"), f"{where}.unit")
            tkey, tval = self._time(row, req.get("time"), f"{where}.time")
            try:
                state = schema.check(req.get("state"), f"{where}.state")
            except InvalidDataError as exc:
                raise InvalidRequestError(str(exc)) from None
            keys.append((unit, tkey))
            if (unit, tkey) not in first:  # the first of repeats in a batch wins
                first[(unit, tkey)] = (tval if row["time_kind"] == "step" else tkey, tval, state)
        todo = list(first)
        if spec.done is not None:
            self._refuse_after_end(name, spec, {k: first[k][1] for k in todo})
        made: list[SequentialDecision] = policy.decisions(
            [u for u, _ in todo],
            [first[k][0] for k in todo],
            [first[k][2] for k in todo],
            checked=True,
        )
        version = int(row["live_version"])
        rows = [
            {
                "unit": u,
                "time": tk,
                "time_value": first[(u, tk)][1],
                "action": d.action_index,
                "propensity": d.propensity,
                "version": version,
                "explored": d.explored,
                "state": first[(u, tk)][2],
            }
            for (u, tk), d in zip(todo, made, strict=True)
        ]
        try:
            stored = self.store.commit_sequential_decisions(name, rows)
        except StoreUnavailableError as exc:
            raise UnavailableError(str(exc)) from exc
        actions = spec.actions
        out = []
        for unit, tkey in keys:
            s = stored[(unit, tkey)]
            a = int(s["action"])
            out.append(
                {
                    "unit": unit,
                    "time": self._time_out(row, tkey, s["time_value"]),
                    "action": actions[a],
                    "action_index": a,
                    "propensity": float(s["propensity"]),
                    "version": int(s["version"]),
                    "explored": bool(s["explored"]),
                }
            )
        return out

    def _refuse_after_end(self, name: str, spec: SequentialSpec,
                          new: dict[tuple[str, str], float]) -> None:
        """Refuse decisions after a unit's terminal one in the same episode (``gap``).

        TransitionLog refuses such a log, so one of them would make the whole
        export unreadable; a decision more than ``gap`` later starts a new
        episode and is fine.
        """
        stored = self.store.sequential_times(name, {u for u, _ in new})
        for (unit, tkey), value in new.items():
            for end, done in stored.get(unit, ()):
                if done and end < value and (spec.gap is None or value - end <= spec.gap):
                    raise ConflictError(
                        f"requests: unit {unit!r} ended its episode with a terminal decision "
                        f"(done) before {tkey}; a decision after it in the same episode would "
                        "make the decision log unreadable. Stop deciding for this unit"
                        + (f", or decide more than the spec's gap ({spec.gap:g}) after its end "
                           "to start a new episode." if spec.gap is not None else
                           "; to let units come back, create the experiment with a 'gap' "
                           "(a longer pause starts a new episode).")
                    )

    def log(self, name: str, events: list[dict[str, Any]]) -> dict[str, int]:
        """Attach reward events to stored decisions; duplicates (same event_id) count once."""
        check_batch(len(events), "events")
        row = self._row(name)
        spec = SequentialSpec.from_dict(row["spec"])
        rewards = list(spec.reward_names)
        clean: list[dict[str, Any]] = []
        seen: set[str] = set()
        dropped = 0
        for i, ev in enumerate(events):
            where = f"events[{i}]"
            unit = check_id(ev.get("unit"), f"{where}.unit")
            tkey, _ = self._time(row, ev.get("time"), f"{where}.time")
            reward, value, done = ev.get("reward"), ev.get("value"), bool(ev.get("done", False))
            if reward is not None:
                if reward not in rewards:
                    raise InvalidRequestError(
                        f"{where}.reward: unknown reward {reward!r:.80}; this experiment's "
                        f"rewards are {rewards} (its spec's)."
                    )
                if value is None:
                    raise InvalidRequestError(f"{where}.value: give the reward's value.")
                value = check_number(value, f"{where}.value")
            elif value is not None:
                raise InvalidRequestError(
                    f"{where}.reward: a value needs the reward it belongs to; one of {rewards}."
                )
            elif not done:
                raise InvalidRequestError(
                    f"{where}: nothing to log; give reward and value, or done: true."
                )
            if done and spec.done is None:
                raise InvalidRequestError(
                    f"{where}.done: the spec of {name!r} has no 'done' column, so decisions "
                    "cannot be marked terminal; create the experiment with spec.done (e.g. "
                    "'churned')."
                )
            eid = ev.get("event_id")
            if eid is not None:
                eid = check_id(eid, f"{where}.event_id")
                if eid in seen:
                    dropped += 1
                    continue
                seen.add(eid)
            clean.append(
                {
                    "unit": unit,
                    "time": tkey,
                    "reward": reward,
                    "value": value,
                    "event_id": eid,
                    "done": done,
                }
            )
        wanted = {(e["unit"], e["time"]) for e in clean}
        found = self.store.sequential_decisions(name, wanted)
        missing = sorted(wanted - set(found))
        if missing:
            raise NotFoundError(
                f"events: no decision of {name!r} at (unit, time) {missing[:5]}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                + "; a reward belongs to the decision it followed. Decide first (POST "
                f"/v1/sequential/{name}/decide), or send the decision's own time. Nothing in "
                "this batch was logged."
            )
        ends = [(e["unit"], found[(e["unit"], e["time"])]["time_value"], e["time"])
                for e in clean if e["done"]]
        if ends:
            stored = self.store.sequential_times(name, {u for u, _, _ in ends})
            for unit, end, tkey in ends:
                later = [v for v, _ in stored.get(unit, ()) if end < v
                         and (spec.gap is None or v - end <= spec.gap)]
                if later:
                    raise ConflictError(
                        f"events: unit {unit!r} has decisions after {tkey} in the same episode, "
                        "so that decision cannot be terminal (done). Mark the unit's last "
                        "decision done instead. Nothing in this batch was logged."
                    )
        try:
            accepted, dup = self.store.log_sequential_rewards(name, clean, dropped)
        except StoreUnavailableError as exc:
            raise UnavailableError(str(exc)) from exc
        return {"accepted": accepted, "duplicates": dup}

    def export(self, name: str) -> dict[str, Any]:
        """The decision log: columns and rows in the shape TransitionLog.from_frame reads."""
        row = self._row(name)
        spec = SequentialSpec.from_dict(row["spec"])
        decisions, totals = self.store.sequential_log(name)
        sums: dict[tuple[str, str], dict[str, float]] = {}
        for unit, time, reward, total in totals:
            sums.setdefault((unit, time), {})[reward] = float(total)
        states = list(spec.state_columns)
        columns = [
            spec.unit,
            spec.time,
            spec.action,
            str(spec.propensity),
            *states,
            *spec.reward_names,
        ] + ([spec.done] if spec.done else [])
        rows = []
        for d in decisions:
            got = sums.get((d["unit"], d["time"]), {})
            state = d["state"] or {}
            line = [
                d["unit"],
                self._time_out(row, d["time"], d["time_value"]),
                spec.actions[int(d["action"])],
                float(d["propensity"]),
                *[state.get(c) for c in states],
                *[got.get(r, 0.0) for r in spec.reward_names],
            ]
            if spec.done:
                line.append(1 if d["done"] else 0)
            rows.append(line)
        return {"columns": columns, "rows": rows, "spec": row["spec"], "time": row["time_kind"]}

    def export_csv(self, name: str) -> str:
        doc = self.export(name)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(doc["columns"])
        writer.writerows(["" if v is None else v for v in line] for line in doc["rows"])
        return buf.getvalue()


# ------------------------------------------------------------------ HTTP
Name = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN,
        max_length=64,
        description="Sequential experiment name (A-Z a-z 0-9 _ . -).",
    ),
]


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def sequential_router(
    store_of: Callable[[], EventStore], responses: Callable[..., dict[int | str, dict[str, Any]]]
) -> APIRouter:
    """The ``/v1/sequential`` routes over the store ``store_of()`` returns.

    ``responses(*codes)`` documents the error statuses as the rest of the API does.
    """
    router = APIRouter(prefix="/v1/sequential", tags=["sequential"])
    held: dict[str, Any] = {}
    lock = threading.Lock()

    def svc() -> SequentialService:
        store = store_of()
        with lock:
            if held.get("store") is not store:
                held["store"], held["svc"] = store, SequentialService(store)
            return held["svc"]  # type: ignore[no-any-return]

    def key(request: Request) -> Any:
        return request.scope.get("state", {}).get("key")

    @router.post("", status_code=201, response_model=SequentialOut, responses=responses(403, 409))
    def create_sequential(body: CreateSequential, request: Request) -> dict[str, Any]:
        """Create a sequential experiment; it serves the uniform random policy until a launch."""
        authorize(key(request), "admin")
        return svc().create(body.name, body.spec, body.epsilon, body.time, body.salt)

    @router.get("/{name}", response_model=SequentialOut, responses=responses(403, 404))
    def get_sequential(name: Name, request: Request) -> dict[str, Any]:
        """A sequential experiment: spec, exploration, versions (the live one), counts."""
        authorize(key(request), "read", name)
        return svc().describe(name)

    @router.post("/{name}/launch", response_model=SequentialOut, responses=responses(403, 404, 409))
    def launch_sequential(name: Name, body: LaunchSequential, request: Request) -> dict[str, Any]:
        """Store an agent (OfflineAgent.to_dict()) as a new version and serve it now.

        Its actions and state columns must be the experiment's; it serves its greedy
        action with epsilon-uniform exploration.
        """
        authorize(key(request), "admin", name)
        return svc().launch(name, body.agent, body.epsilon)

    @router.post(
        "/{name}/decide", response_model=SequentialDecisionOut, responses=responses(403, 404, 409)
    )
    def decide_sequential(name: Name, body: SequentialDecideRequest, request: Request) -> Response:
        """Decide for one (unit, time) from its state; stored before the answer.

        A (unit, time) decided before gets its stored decision back.
        """
        authorize(key(request), "decide", name)
        out = svc().decide(name, [body.model_dump()])
        return _json(out[0])

    @router.post(
        "/{name}/decide/batch",
        response_model=SequentialDecisionsOut,
        responses=responses(403, 404, 409),
    )
    def decide_sequential_batch(
        name: Name, body: SequentialDecideBatch, request: Request
    ) -> Response:
        """Decide for many (unit, time, state) in one call (at most PEXKIT_MAX_BATCH)."""
        authorize(key(request), "decide", name)
        return _json({"decisions": svc().decide(name, [r.model_dump() for r in body.requests])})

    @router.post("/{name}/log", response_model=SequentialLogResult, responses=responses(403, 404))
    def log_sequential(name: Name, body: SequentialLogEvent, request: Request) -> dict[str, int]:
        """Log a reward of the decision at (unit, time) (idempotent on event_id)."""
        authorize(key(request), "log", name)
        return svc().log(name, [body.model_dump()])

    @router.post(
        "/{name}/log/batch", response_model=SequentialLogResult, responses=responses(403, 404)
    )
    def log_sequential_batch(
        name: Name, body: SequentialLogBatch, request: Request
    ) -> dict[str, int]:
        """Log many reward events in one transaction (at most PEXKIT_MAX_BATCH)."""
        authorize(key(request), "log", name)
        return svc().log(name, [e.model_dump() for e in body.events])

    csv_doc: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The decision log (JSON, or CSV with format=csv).",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    }

    @router.get(
        "/{name}/log", response_model=SequentialLogOut, responses={**responses(403, 404), **csv_doc}
    )
    def sequential_log(
        name: Name,
        request: Request,
        format: Annotated[
            Literal["json", "csv"],
            Query(  # noqa: A002 - the query's name
                description="json (columns and rows) or csv (a header row, then the rows)."
            ),
        ] = "json",
    ) -> Response:
        """The decision log, one row per decision, for TransitionLog.from_frame(frame, spec).

        Columns (the spec's names): unit, time, action label, propensity, the state
        columns, each reward (the sum of its logged values; 0 when none) and done
        (when the spec has a done column).
        """
        authorize(key(request), "read", name)
        if format == "csv":
            return Response(svc().export_csv(name), media_type="text/csv; charset=utf-8")
        return _json(svc().export(name))

    return router
