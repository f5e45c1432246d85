"""DecisionService: the decision service's logic, independent of HTTP.

It wires the parts, each in its own module: the hot path
(:mod:`~pexkit.service.decisions`), the phase machine
(:mod:`~pexkit.service.phases`), jobs (:mod:`~pexkit.service.jobs`) and their
bodies (:mod:`~pexkit.service.training`), tuning (:mod:`~pexkit.service.tuning`)
and readouts (:mod:`~pexkit.service.readouts`). Every change of an
experiment's state goes through :meth:`DecisionService.mutate`, an atomic
compare-and-swap on the stored state's version, on SQLite and PostgreSQL alike.
Errors are domain errors (:mod:`~pexkit.service.errors`); ``app.py`` maps them
to HTTP.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pandas as pd

from pexkit.data.logged import LoggedData
from pexkit.exceptions import SpecError
from pexkit.service import phases, readouts, training
from pexkit.service.decisions import Decider
from pexkit.service.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from pexkit.service.jobs import JobRunner
from pexkit.service.registry import Registry
from pexkit.service.state import Experiment, ExperimentState, TuneArm
from pexkit.service.validation import (
    check_batch,
    check_finite_json,
    check_id,
    check_name,
    check_number,
    check_text,
    check_time,
)
from pexkit.serving.decision import Decision
from pexkit.spec.spec import ExperimentSpec
from pexkit.store.db import EventStore, StoreUnavailableError, now

__all__ = ["DecisionService"]

JOB_KINDS = ("train", "retrain", "optimize", "tune_round", "distill", "refit")


class DecisionService:
    """Phases, decisions, outcomes, jobs and readouts over an :class:`EventStore`.

    Parameters
    ----------
    store : EventStore
    job_workers : int
        Background job threads (training and optimization); default 1.
    """

    def __init__(self, store: EventStore, job_workers: int = 1) -> None:
        self.store = store
        self.registry = Registry(store)
        self.decider = Decider(self.experiment, self.registry, store)
        self.committer = self.decider.committer
        self.jobs = JobRunner(store, job_workers)

    @property
    def owner(self) -> str:
        return self.jobs.owner

    def close(self) -> None:
        self.jobs.close()
        self.committer.close()
        self.store.close()

    # ------------------------------------------------------------ state
    def experiment(self, name: str) -> Experiment:
        """The stored experiment (raises :class:`NotFoundError`)."""
        row = self.store.experiment(name) if isinstance(name, str) and len(name) <= 64 else None
        if row is None:
            known = self.store.experiment_names()[:20]
            raise NotFoundError(
                f"experiment {name!r:.80} not found; known experiments: {known}. Create it with "
                "POST /v1/experiments."
            )
        return Experiment(
            name=row["name"], spec=row["spec"], tracking=tuple(row["tracking"]),
            salt=row["salt"], version=int(row["version"]),
            state=ExperimentState.from_dict(row["state"]), duplicates=int(row["duplicates"]),
            created_at=row["created_at"],
        )

    def mutate(
        self, name: str, change: Callable[[ExperimentState], ExperimentState], attempts: int = 64
    ) -> ExperimentState:
        """Apply ``change`` to the latest state atomically (compare-and-swap, retried).

        ``change`` must be a pure function of the state it is given: when another
        writer got there first, it is applied again to the newer state.
        """
        for i in range(attempts):
            exp = self.experiment(name)
            new = change(exp.state)
            if self.store.swap_state(name, exp.version, new.to_dict()):
                self.decider.invalidate(name)
                return new
            time.sleep(random.uniform(0, min(0.05, 0.002 * 2**i)))  # noqa: S311 - jitter
        raise ConflictError(f"experiment {name!r} changed {attempts} times while this update "
                            "was applied; retry it.")

    # ------------------------------------------------------------ experiments
    def create_experiment(
        self, spec: dict[str, Any], tracking: list[dict[str, Any]] | None = None,
        holdout: float = 0.03, salt: str | None = None,
    ) -> dict[str, Any]:
        try:
            parsed = ExperimentSpec.from_dict(spec)
        except SpecError as exc:
            raise InvalidRequestError(f"spec: {exc}") from exc
        if not parsed.name:
            raise InvalidRequestError("spec.name is required: the experiment's name in the API.")
        check_name(parsed.name, "spec.name")
        if not parsed.features:
            raise InvalidRequestError(
                "spec.features: a served experiment needs at least one feature to personalize on."
            )
        for i, arm in enumerate(parsed.arms):
            check_text(arm, f"spec.treatment.arms[{i}]")
        for i, out in enumerate(parsed.outcome_names):
            check_text(out, f"spec.outcomes[{i}].name")
        for i, feat in enumerate(parsed.features):
            check_text(feat, f"spec.features[{i}]")
        holdout = phases.check_holdout(holdout)
        tracked: list[dict[str, str]] = []
        for i, item in enumerate(tracking or []):
            name, goal = item.get("name"), item.get("goal", "maximize")
            if not isinstance(name, str) or not name or goal not in ("maximize", "minimize"):
                raise InvalidRequestError(
                    f"tracking[{i}]: expected {{'name': str, 'goal': 'maximize'|'minimize'}}; "
                    f"got {item!r:.120}."
                )
            check_text(name, f"tracking[{i}].name")
            if name in parsed.outcome_names or name in [t["name"] for t in tracked]:
                raise InvalidRequestError(
                    f"tracking[{i}]: {name!r} is already an outcome; list each outcome once."
                )
            tracked.append({"name": name, "goal": goal})
        if salt is not None and (not isinstance(salt, str) or not 8 <= len(salt) <= 64
                                 or not salt.isascii() or not salt.isprintable()):
            raise InvalidRequestError(
                f"salt: expected 8-64 printable ASCII characters; got {salt!r:.80}."
            )
        state = ExperimentState(holdout=holdout)
        row = {
            "name": parsed.name, "spec": parsed.to_dict(), "tracking": tracked,
            "salt": salt or secrets.token_hex(16), "version": 1, "state": state.to_dict(),
            "duplicates": 0, "created_at": now(),
        }
        if not self.store.create_experiment(row):
            raise ConflictError(
                f"experiment {parsed.name!r} already exists; pick another spec.name (or delete "
                f"it with DELETE /v1/experiments/{parsed.name})."
            )
        return self.describe(parsed.name)

    def describe(self, name: str) -> dict[str, Any]:
        exp = self.experiment(name)
        s = exp.state
        return {
            "name": exp.name, "phase": s.phase, "epoch": s.epoch, "version": exp.version,
            "spec": exp.spec, "tracking": list(exp.tracking), "holdout": s.holdout,
            "explore": s.explore, "launched_version": s.launched_version,
            "arms": [{"arm": a.arm, "version": a.version} for a in s.arms],
            "assignments": self.store.count_assignments(name),
            "events": self.store.count_events(name), "duplicates": exp.duplicates,
            "model_id": s.model_id, "ate": list(s.ate) or None,
            "candidates": list(s.candidates), "tune_round": s.tune_round,
            "tuning_space": s.tuning_space,
            "created_at": exp.created_at.isoformat() if exp.created_at else None,
        }

    def list_experiments(self) -> list[dict[str, Any]]:
        return [self.describe(n) for n in self.store.experiment_names()]

    def delete_experiment(self, name: str) -> None:
        self.experiment(name)
        self.store.delete_experiment(name)
        self.decider.invalidate(name)

    def set_phase(self, name: str, phase: str) -> dict[str, Any]:
        self.mutate(name, lambda s: phases.set_phase(s, phase))
        return self.describe(name)

    def start_tune(self, name: str, objectives: list[str] | None = None) -> dict[str, Any]:
        from pexkit.service.tuning import OnlineTuner, TuningSpace

        exp = self.experiment(name)
        state = exp.state
        if not state.candidates or state.tuning_space is None:
            raise ConflictError(
                "tune needs candidate policies; run the 'train' and 'optimize' jobs first."
            )
        spec = ExperimentSpec.from_dict(exp.spec)
        goals = {o.name: o.goal for o in spec.outcomes} | {t["name"]: t["goal"]
                                                           for t in exp.tracking}
        objectives = list(objectives or goals)
        bad = [o for o in objectives if o not in goals]
        if bad or len(set(objectives)) != len(objectives):
            raise InvalidRequestError(
                f"objectives: expected distinct outcomes from {list(goals)}; got {objectives!r:.200}."
            )
        space = TuningSpace.from_dict(state.tuning_space)
        tuner = OnlineTuner.create(spec, space, {o: goals[o] for o in objectives})
        arms = []
        for i, version in enumerate(state.candidates):
            policy, _ = self.registry.linear_policy(name, version)
            arms.append(TuneArm(f"round1-arm{i + 1}", version, tuner.attach(policy)))
        tuner_id = self.registry.put_json(name, "tuner", tuner.dump())
        new = self.mutate(name, lambda s: phases.start_tune(s, arms, objectives, tuner_id,
                                                            s.tuning_space or {}))
        self.store.add_arms(name, new.epoch, [{"arm": a.arm, "version": a.version,
                                               "trial": a.trial} for a in arms])
        return self.describe(name)

    def launch(
        self, name: str, version: int, holdout: float | None = None, explore: float = 0.0
    ) -> dict[str, Any]:
        exp = self.experiment(name)
        holdout = phases.check_holdout(exp.state.holdout if holdout is None else holdout)
        explore = phases.check_explore(explore)
        prow = self.store.policy(name, version) if 0 < version < 2**31 else None
        if prow is None or prow["kind"] not in ("linear", "tree"):
            raise InvalidRequestError(
                f"version: {version!r} is not a linear or tree policy of {name!r}; list them "
                "with GET .../policies."
            )
        self.registry.chooser(name, version)  # compile now: fail here, not on the first decide
        self.mutate(name, lambda s: phases.launch(s, version, holdout, explore))
        return self.describe(name)

    # ------------------------------------------------------------ decide / log
    def decide(self, name: str, requests: list[dict[str, Any]]) -> list[Decision]:
        """Decide for a batch of ``{"unit", "features"}``; sticky within a phase."""
        return self.decider.decide(name, requests)

    async def decide_async(self, name: str, requests: list[dict[str, Any]]) -> list[Decision]:
        return await self.decider.decide_async(name, requests)

    def log(self, name: str, events: list[dict[str, Any]]) -> dict[str, int]:
        """Log outcome events; duplicates (same event_id) are ignored and counted.

        An event may carry ``time``, when it happened (timezone-aware ISO-8601;
        default: when it is received): it goes to the epoch whose decision for
        the unit was the latest at that time, and the outcome's ``window``
        counts from that decision (:mod:`pexkit.service.outcomes`).
        """
        view = self.decider.view(name)
        exp = view.experiment
        allowed = set(view.spec.outcome_names) | {t["name"] for t in exp.tracking}
        check_batch(len(events), "events")
        received = now()
        clean: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, ev in enumerate(events):
            where = f"events[{i}]"
            eid = check_id(ev.get("event_id"), f"{where}.event_id")
            unit = check_id(ev.get("unit"), f"{where}.unit")
            outcome = ev.get("outcome")
            if outcome not in allowed:
                raise InvalidRequestError(
                    f"{where}.outcome: unknown outcome {outcome!r:.80}; this experiment logs "
                    f"{sorted(allowed)}. Add tracked outcomes when creating the experiment."
                )
            value = check_number(ev.get("value"), f"{where}.value")
            at = ev.get("time")
            at = None if at is None else check_time(at, f"{where}.time", received)
            if eid in seen:
                continue
            seen.add(eid)
            clean.append({"event_id": eid, "unit": unit, "outcome": outcome, "value": value,
                          "occurred_at": at})
        epochs = self.store.latest_epochs(name, (e["unit"] for e in clean))
        unknown = sorted({e["unit"] for e in clean if e["unit"] not in epochs})
        if unknown:
            raise InvalidRequestError(
                f"events: units {unknown[:5]} have no decision in {name!r}; outcomes belong to "
                "a decision. Call decide for the unit first. Nothing in this batch was logged.",
            )
        timed = [e for e in clean if e["occurred_at"] is not None]
        seen_at = self.store.exposures(name, {e["unit"] for e in timed}) if timed else {}
        for e in clean:
            e["epoch"] = epochs[e["unit"]]
        for e in timed:  # the epoch whose decision was the latest when the event happened
            for epoch, exposed in seen_at.get(e["unit"], ()):
                exposed = exposed if exposed.tzinfo else exposed.replace(tzinfo=UTC)
                if exposed <= e["occurred_at"]:
                    e["epoch"] = epoch
        try:
            accepted, dup = self.store.log_events(name, clean, len(events) - len(clean))
        except StoreUnavailableError as exc:
            raise UnavailableError(str(exc)) from exc
        return {"accepted": accepted, "duplicates": dup}

    # ------------------------------------------------------------ data and readouts
    def unit_frame(self, name: str, **where: Any) -> tuple[pd.DataFrame, ExperimentSpec, list[str]]:
        return training.unit_frame(self, name, **where)

    def training_data(
        self, name: str, sources: tuple[str, ...] = training.SOURCES
    ) -> LoggedData:
        return training.training_data(self, name, sources)

    def backtest(self, name: str) -> dict[str, Any]:
        return readouts.backtest(self, name)

    def health(self, name: str, **settings: Any) -> dict[str, Any]:
        """Live monitoring of the current phase: traffic, assignment, drift, outcomes, jobs.

        ``settings``: fields of :class:`pexkit.service.monitoring.Settings`.
        """
        from pexkit.service.monitoring import Settings

        return readouts.health(self, name, Settings(**settings))

    def tune_results(self, name: str) -> list[dict[str, Any]]:
        return readouts.tune_results(self, name)

    def tuning(self, name: str) -> dict[str, Any]:
        return readouts.tuning_summary(self, name)

    def front(self, name: str) -> dict[str, Any]:
        front_id = self.experiment(name).state.front_id
        if front_id is None:
            raise NotFoundError(f"{name!r} has no front yet; run an 'optimize' job.")
        return self.registry.json_blob(front_id, "front")

    def policies(self, name: str) -> list[dict[str, Any]]:
        self.experiment(name)
        return [{k: (v.isoformat() if k == "created_at" else v) for k, v in p.items()}
                for p in self.store.policies(name)]

    # ------------------------------------------------------------ jobs
    def submit(self, name: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        exp = self.experiment(name)
        bodies = {"train": training.run_train, "retrain": training.run_train,
                  "optimize": training.run_optimize, "tune_round": training.run_tune_round,
                  "distill": training.run_distill, "refit": training.run_refit}
        if kind not in bodies:
            raise InvalidRequestError(
                f"kind: unknown job kind {kind!r:.40}; expected one of {sorted(bodies)}."
            )
        check_finite_json(params, "params")
        if kind == "tune_round" and exp.state.phase != "tune":
            raise ConflictError("tune_round needs phase 'tune'; start it with POST .../tune.")
        body = bodies[kind]
        job_id = self.jobs.submit(name, kind, params, lambda: body(self, name, params))
        return self.job(job_id)

    def job(self, job_id: int) -> dict[str, Any]:
        return self.jobs.job(job_id)

    def experiment_jobs(self, name: str) -> list[dict[str, Any]]:
        self.experiment(name)
        return [self.job(int(j["id"])) for j in self.store.jobs(name)]

    def wait(self, job_id: int, timeout: float = 600.0) -> dict[str, Any]:
        """Block until a job finishes (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(0.05)
        raise ConflictError(f"job {job_id} still running after {timeout} s.")
