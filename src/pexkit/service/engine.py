"""The decision service's logic, independent of HTTP.

:class:`DecisionService` owns the phases (randomize -> tune -> launched), the
decide and log paths, the background jobs (train, optimize, tune rounds,
retrain) and the backtest. The FastAPI app (:mod:`pexkit.service.app`) only
maps requests to these methods and :class:`RequestError` to status codes.
"""

from __future__ import annotations

import math
import os
import pickle
import secrets
import socket
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pexkit._stats import Z95
from pexkit.data.logged import LoggedData
from pexkit.effects.model import EffectModel
from pexkit.exceptions import PexkitError, SpecError
from pexkit.optimize.optimize import optimize_policies
from pexkit.policy.linear import LinearPolicy
from pexkit.serving.assign import bucket, uniform_arm
from pexkit.serving.compiled import compile_policy
from pexkit.spec.spec import ExperimentSpec
from pexkit.store.db import EventStore, GroupCommitter, now

__all__ = ["DecisionService", "RequestError"]

PHASES = ("randomize", "tune", "launched", "stopped")
HOLDOUT_RANGE = (0.02, 0.05)


class RequestError(PexkitError, ValueError):
    """A request the service refuses; ``status`` is its HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Decision:
    unit: str
    treatment: str
    treatment_index: int
    policy_version: int
    propensity: float
    holdout: bool
    arm: str | None
    phase: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spec_of(row: dict[str, Any]) -> ExperimentSpec:
    return ExperimentSpec.from_dict(row["spec"])


class _Chooser:
    """A compiled policy version: encoded features -> treatment indices."""

    def __init__(self, kind: str, impl: Any) -> None:
        self.kind = kind
        self.impl = impl
        if kind == "tree":  # lookups for the features the tree uses, in matrix order
            spec = impl.model.spec_
            cats = impl.model.encoder_.categories
            self._cols = [
                (f, {str(c): float(i) for i, c in enumerate(cats[f])} if f in spec.categorical
                 else None)
                for f in impl.features
            ]

    def choose_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        if self.kind == "linear":
            return np.asarray(self.impl.choose_matrix(self.impl.encode_records(records)))
        X = np.empty((len(records), len(self._cols)))
        for i, rec in enumerate(records):
            for j, (f, lookup) in enumerate(self._cols):
                v = rec.get(f)
                if v is None:
                    X[i, j] = np.nan
                elif lookup is None:
                    X[i, j] = float(v)
                else:
                    X[i, j] = lookup.get(str(v), np.nan)
        if not self._cols:  # a one-leaf tree
            return np.full(len(records), int(self.impl.tree.action[0]), dtype=np.int64)
        return np.asarray(self.impl.choose_matrix(X))


class DecisionService:
    """Phases, decisions, outcomes, jobs and backtests over an :class:`EventStore`.

    Parameters
    ----------
    store : EventStore
    job_workers : int
        Background job threads (training and optimization); default 1.
    """

    def __init__(self, store: EventStore, job_workers: int = 1) -> None:
        self.store = store
        self._choosers: dict[tuple[str, int], _Chooser] = {}
        self._models: dict[int, EffectModel] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=job_workers, thread_name_prefix="pexkit-job")
        self._committer = GroupCommitter(store)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._fail_orphaned_jobs()

    def _fail_orphaned_jobs(self) -> None:
        """Jobs whose server process (on this host) died can never finish: say so."""
        host = socket.gethostname()
        for job in self.store.unfinished_jobs():
            owner = job.get("owner") or ""
            owner_host, _, pid = owner.rpartition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
            self.store.update_job(
                int(job["id"]), status="failed", finished_at=now(),
                error=f"the server process that ran this job ({owner}) ended before it "
                "finished; submit the job again.",
            )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._committer.close()
        self.store.close()

    # ------------------------------------------------------------ experiments
    def _experiment(self, name: str, with_state: bool = True) -> dict[str, Any]:
        row = self.store.experiment(name, with_state)
        if row is None:
            known = [e["name"] for e in self.store.experiments()][:20]
            raise RequestError(
                404,
                f"experiment {name!r} not found; known experiments: {known}. "
                "Create it with POST /v1/experiments.",
            )
        return row

    def create_experiment(
        self, spec: dict[str, Any], tracking: list[dict[str, Any]] | None = None,
        holdout: float = 0.03, salt: str | None = None,
    ) -> dict[str, Any]:
        try:
            parsed = ExperimentSpec.from_dict(spec)
        except SpecError as exc:
            raise RequestError(422, f"spec: {exc}") from exc
        if not parsed.name:
            raise RequestError(422, "spec.name is required: the experiment's name in the API.")
        if not parsed.features:
            raise RequestError(
                422, "spec.features: a served experiment needs at least one feature to personalize on."
            )
        self._check_holdout(holdout)
        tracked = []
        for i, item in enumerate(tracking or []):
            name, goal = item.get("name"), item.get("goal", "maximize")
            if not isinstance(name, str) or not name or goal not in ("maximize", "minimize"):
                raise RequestError(
                    422,
                    f"tracking[{i}]: expected {{'name': str, 'goal': 'maximize'|'minimize'}}; "
                    f"got {item!r}.",
                )
            if name in parsed.outcome_names:
                raise RequestError(
                    422, f"tracking[{i}]: {name!r} is already a spec outcome; list it once."
                )
            tracked.append({"name": name, "goal": goal})
        if salt is not None and (not isinstance(salt, str) or not 8 <= len(salt) <= 64):
            raise RequestError(422, f"salt: expected 8-64 characters; got {salt!r}.")
        row = {
            "name": parsed.name, "spec": parsed.to_dict(), "tracking": tracked,
            "phase": "randomize", "salt": salt or secrets.token_hex(16), "epoch": 1,
            "holdout": float(holdout), "launched_version": None, "arms": [],
            "state": {"epochs": {"1": "randomize"}}, "duplicates": 0, "created_at": now(),
        }
        if not self.store.create_experiment(row):
            raise RequestError(
                409, f"experiment {parsed.name!r} already exists; pick another spec.name."
            )
        return self.describe(parsed.name)

    def describe(self, name: str) -> dict[str, Any]:
        row = self._experiment(name)
        state = row["state"]
        return {
            "name": row["name"], "phase": row["phase"], "epoch": row["epoch"],
            "spec": row["spec"], "tracking": row["tracking"], "holdout": row["holdout"],
            "launched_version": row["launched_version"], "arms": row["arms"],
            "assignments": self.store.count_assignments(name),
            "events": self.store.count_events(name), "duplicates": row["duplicates"],
            "model_id": state.get("model_id"), "ate": state.get("ate"),
            "candidates": state.get("candidates", []),
            "created_at": row["created_at"].isoformat() if row["created_at"] else None,
        }

    def set_phase(self, name: str, phase: str) -> dict[str, Any]:
        row = self._experiment(name)
        if phase not in ("randomize", "stopped"):
            raise RequestError(
                422,
                f"phase {phase!r}: this endpoint moves to 'randomize' or 'stopped'; use "
                "POST .../tune to tune and POST .../launch to launch.",
            )
        epoch = row["epoch"] + 1
        state = {**row["state"], "epochs": {**row["state"]["epochs"], str(epoch): phase}}
        self.store.update_experiment(name, phase=phase, epoch=epoch, arms=[], state=state)
        return self.describe(name)

    @staticmethod
    def _check_holdout(holdout: Any) -> None:
        lo, hi = HOLDOUT_RANGE
        if not isinstance(holdout, int | float) or not (lo <= float(holdout) <= hi):
            raise RequestError(
                422,
                f"holdout: expected a fraction between {lo} and {hi} (2-5% of units keep "
                f"random treatments to backtest the policy); got {holdout!r}.",
            )

    # ------------------------------------------------------------ policies
    def _model(self, model_id: int) -> EffectModel:
        with self._lock:
            model = self._models.get(model_id)
        if model is None:
            model = pickle.loads(self.store.model_blob(model_id))  # noqa: S301 - our own store
            with self._lock:
                self._models[model_id] = model
        return model

    def chooser(self, name: str, version: int) -> _Chooser:
        """The compiled policy of a version: built once per process, then cached."""
        key = (name, version)
        with self._lock:
            hit = self._choosers.get(key)
        if hit is not None:
            return hit
        prow = self.store.policy(name, version)
        if prow is None:
            raise RequestError(404, f"policy version {version} of {name!r} not found.")
        if prow["kind"] == "linear":
            model = self._model(int(prow["model_id"]))
            policy = LinearPolicy(
                model.spec_, weights=prow["params"]["weights"], biases=prow["params"]["biases"]
            )
            chooser = _Chooser("linear", compile_policy(policy, model))
        elif prow["kind"] == "tree":
            distilled = pickle.loads(self.store.model_blob(int(prow["model_id"])))  # noqa: S301
            chooser = _Chooser("tree", distilled.compile())
        else:
            raise RequestError(409, f"policy version {version} is {prow['kind']!r}; not servable.")
        with self._lock:
            self._choosers[key] = chooser
        return chooser

    # ------------------------------------------------------------ decide
    def _check_features(
        self, spec: ExperimentSpec, features: Any, where: str
    ) -> dict[str, Any]:
        if not isinstance(features, dict):
            raise RequestError(
                422, f"{where}.features: expected an object of feature values; got "
                f"{type(features).__name__}."
            )
        missing = [f for f in spec.features if f not in features]
        if missing:
            raise RequestError(
                422,
                f"{where}.features: missing {missing}; the spec's features are "
                f"{list(spec.features)}. Send every feature (null when unknown).",
            )
        clean: dict[str, Any] = {}
        for f in spec.numeric:
            v = features[f]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise RequestError(
                    422, f"{where}.features.{f}: expected a number; got {v!r} "
                    f"({type(v).__name__}). Send numbers for numeric features."
                )
            if v is not None and not math.isfinite(float(v)):
                raise RequestError(422, f"{where}.features.{f}: expected a finite number; got {v!r}.")
            clean[f] = None if v is None else float(v)
        for f in spec.categorical:
            v = features[f]
            if v is not None and not isinstance(v, str | int) or isinstance(v, bool):
                raise RequestError(
                    422, f"{where}.features.{f}: expected a string category; got {v!r} "
                    f"({type(v).__name__})."
                )
            clean[f] = None if v is None else str(v)
        return clean

    def decide(self, name: str, requests: list[dict[str, Any]]) -> list[Decision]:
        """Decide for a batch of ``{"unit", "features"}``; sticky within a phase."""
        row = self._experiment(name, with_state=False)
        phase = row["phase"]
        if phase not in ("randomize", "tune", "launched"):
            raise RequestError(
                409,
                f"experiment {name!r} is in phase {phase!r}; decide needs randomize, tune or "
                f"launched. Restart it with POST /v1/experiments/{name}/phase.",
            )
        spec = _spec_of(row)
        units: list[str] = []
        feats: list[dict[str, Any]] = []
        for i, req in enumerate(requests):
            unit = req.get("unit")
            if not isinstance(unit, str | int) or isinstance(unit, bool) or unit == "":
                raise RequestError(422, f"requests[{i}].unit: expected a non-empty id; got {unit!r}.")
            units.append(str(unit))
            feats.append(self._check_features(spec, req.get("features"), f"requests[{i}]"))
        K = spec.n_treatments
        salt, epoch = row["salt"], row["epoch"]
        rows: list[dict[str, Any]] = []
        base = {"experiment": name, "epoch": epoch, "phase": phase}
        if phase == "randomize":
            for u, f in zip(units, feats, strict=True):
                t = uniform_arm(salt, "randomize", u, K)
                rows.append({**base, "unit": u, "treatment": t, "propensity": 1.0 / K,
                             "policy_version": 1, "arm": None, "holdout": False, "features": f})
        elif phase == "tune":
            arms = row["arms"]
            choices = np.stack(
                [self.chooser(name, a["version"]).choose_records(feats) for a in arms]
            )  # (q, n)
            for i, (u, f) in enumerate(zip(units, feats, strict=True)):
                a = uniform_arm(salt, f"tune:{epoch}", u, len(arms))
                t = int(choices[a, i])
                prop = float(np.mean(choices[:, i] == t))  # P(T = t | x) over random arms
                rows.append({**base, "unit": u, "treatment": t, "propensity": prop,
                             "policy_version": arms[a]["version"], "arm": arms[a]["arm"],
                             "holdout": False, "features": f})
        else:
            version = int(row["launched_version"])
            hold = [bucket(salt, "holdout", u) < row["holdout"] for u in units]
            served = [i for i, h in enumerate(hold) if not h]
            chosen = (
                self.chooser(name, version).choose_records([feats[i] for i in served])
                if served else np.zeros(0, dtype=np.int64)
            )
            pick = dict(zip(served, chosen.tolist(), strict=True))
            for i, (u, f) in enumerate(zip(units, feats, strict=True)):
                if hold[i]:
                    t = uniform_arm(salt, "holdout-arm", u, K)
                    rows.append({**base, "unit": u, "treatment": t, "propensity": 1.0 / K,
                                 "policy_version": 1, "arm": "holdout", "holdout": True,
                                 "features": f})
                else:
                    rows.append({**base, "unit": u, "treatment": int(pick[i]), "propensity": 1.0,
                                 "policy_version": version, "arm": "policy", "holdout": False,
                                 "features": f})
        # one row per unit (a batch may repeat a unit: the first occurrence wins)
        unique: dict[str, dict[str, Any]] = {}
        for r in rows:
            unique.setdefault(r["unit"], r)
        stored = self._committer.assign(list(unique.values()))
        out = []
        for u in units:
            s = stored[u]
            out.append(Decision(
                unit=u, treatment=spec.arms[s["treatment"]], treatment_index=int(s["treatment"]),
                policy_version=int(s["policy_version"]), propensity=float(s["propensity"]),
                holdout=bool(s["holdout"]), arm=s["arm"], phase=s["phase"],
            ))
        return out

    # ------------------------------------------------------------ log
    def log(self, name: str, events: list[dict[str, Any]]) -> dict[str, int]:
        """Log outcome events; duplicates (same event_id) are ignored and counted."""
        row = self._experiment(name, with_state=False)
        spec = _spec_of(row)
        allowed = list(spec.outcome_names) + [t["name"] for t in row["tracking"]]
        clean: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, ev in enumerate(events):
            where = f"events[{i}]"
            eid, unit, outcome, value = (
                ev.get("event_id"), ev.get("unit"), ev.get("outcome"), ev.get("value")
            )
            if not isinstance(eid, str | int) or isinstance(eid, bool) or str(eid) == "":
                raise RequestError(
                    422, f"{where}.event_id: expected a non-empty id, unique per event (retries "
                    f"reuse it); got {eid!r}."
                )
            if not isinstance(unit, str | int) or isinstance(unit, bool) or str(unit) == "":
                raise RequestError(422, f"{where}.unit: expected a non-empty id; got {unit!r}.")
            if outcome not in allowed:
                raise RequestError(
                    422, f"{where}.outcome: unknown outcome {outcome!r}; this experiment logs "
                    f"{allowed}. Add tracked outcomes when creating the experiment."
                )
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, int | float) or not math.isfinite(float(value)):
                raise RequestError(422, f"{where}.value: expected a finite number; got {value!r}.")
            if str(eid) in seen:
                continue
            seen.add(str(eid))
            clean.append({"event_id": str(eid), "unit": str(unit), "outcome": outcome,
                          "value": float(value)})
        epochs = self.store.latest_epochs(name, (e["unit"] for e in clean))
        unknown = sorted({e["unit"] for e in clean if e["unit"] not in epochs})
        if unknown:
            raise RequestError(
                422,
                f"events: units {unknown[:5]} have no decision in {name!r}; outcomes belong to "
                "a decision. Call decide for the unit first. Nothing in this batch was logged.",
            )
        for e in clean:
            e["epoch"] = epochs[e["unit"]]
        accepted, dup = self.store.log_events(name, clean, len(events) - len(clean))
        return {"accepted": accepted, "duplicates": dup}

    # ------------------------------------------------------------ data
    def unit_frame(self, name: str, **where: Any) -> tuple[pd.DataFrame, ExperimentSpec, list[str]]:
        """Assignments joined with per-unit outcome sums (absent outcome = 0)."""
        row = self._experiment(name)
        spec = _spec_of(row)
        outs = list(spec.outcome_names) + [t["name"] for t in row["tracking"]]
        assigned = self.store.assignments(name, **where)
        if not assigned:
            return pd.DataFrame(), spec, outs
        frame = pd.DataFrame.from_records(
            [{k: v for k, v in a.items() if k != "features"} for a in assigned]
        )
        feats = pd.DataFrame.from_records([a["features"] for a in assigned])
        frame = pd.concat([frame.reset_index(drop=True), feats], axis=1)
        totals = self.store.outcome_totals(name, sorted(frame["epoch"].unique().tolist()))
        if totals:
            tot = pd.DataFrame(totals, columns=["epoch", "unit", "outcome", "value"])
            wide = tot.pivot_table(
                index=["epoch", "unit"], columns="outcome", values="value", aggfunc="sum"
            ).reset_index()
            frame = frame.merge(wide, on=["epoch", "unit"], how="left")
        for o in outs:
            frame[o] = frame[o].fillna(0.0).astype(float) if o in frame else 0.0
        return frame, spec, outs

    def training_data(self, name: str) -> LoggedData:
        """Every uniformly randomized unit: the randomize phase plus launch holdouts."""
        frame, spec, _ = self.unit_frame(name)
        if frame.empty:
            raise RequestError(409, f"experiment {name!r} has no decisions yet; nothing to train on.")
        uniform = frame[(frame["phase"] == "randomize") | frame["holdout"].astype(bool)]
        uniform = uniform.drop_duplicates("unit", keep="last")
        if len(uniform) < 20 * spec.n_treatments:
            raise RequestError(
                409,
                f"experiment {name!r} has {len(uniform)} randomized units; training needs at "
                f"least {20 * spec.n_treatments}. Decide for more units first.",
            )
        unit_col = spec.unit or "unit"
        log = uniform[["unit", "treatment", "propensity", *spec.features, *spec.outcome_names]].copy()
        log[spec.treatment] = np.asarray(spec.arms)[log["treatment"].to_numpy(int)]
        log = log.drop(columns=["treatment"]).rename(columns={"unit": unit_col})
        for f in spec.categorical:
            log[f] = log[f].astype(object)
        raw = spec.to_dict()
        raw["unit"] = unit_col
        raw["propensity"] = "propensity"
        return LoggedData.from_frame(log.reset_index(drop=True), ExperimentSpec.from_dict(raw))

    # ------------------------------------------------------------ jobs
    def submit(self, name: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        self._experiment(name)
        runners = {"train": self._job_train, "retrain": self._job_train,
                   "optimize": self._job_optimize, "tune_round": self._job_tune_round,
                   "distill": self._job_distill}
        if kind not in runners:
            raise RequestError(
                422, f"kind: unknown job kind {kind!r}; expected one of {sorted(runners)}."
            )
        if kind == "tune_round" and self._experiment(name)["phase"] != "tune":
            raise RequestError(409, "tune_round needs phase 'tune'; start it with POST .../tune.")
        job_id = self.store.add_job(name, kind, params, owner=self.owner)
        self._pool.submit(self._run_job, job_id, name, runners[kind], params)
        return self.job(job_id)

    def job(self, job_id: int) -> dict[str, Any]:
        row = self.store.job(job_id)
        if row is None:
            raise RequestError(404, f"job {job_id} not found.")
        for key in ("created_at", "finished_at"):
            row[key] = row[key].isoformat() if row[key] else None
        return row

    def _run_job(self, job_id: int, name: str, fn: Any, params: dict[str, Any]) -> None:
        self.store.update_job(job_id, status="running")
        try:
            result = fn(name, params)
        except Exception as exc:  # noqa: BLE001 - reported through the job's status
            msg = str(exc) if isinstance(exc, PexkitError) else traceback.format_exc(limit=5)
            self.store.update_job(job_id, status="failed", error=msg, finished_at=now())
            return
        self.store.update_job(job_id, status="succeeded", result=result, finished_at=now())

    def wait(self, job_id: int, timeout: float = 600.0) -> dict[str, Any]:
        """Block until a job finishes (for tests and scripts)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(0.05)
        raise RequestError(504, f"job {job_id} still running after {timeout} s.")

    def _job_train(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        data = self.training_data(name)
        allowed = {"learner", "n_folds", "random_state", "base", "base_params"}
        bad = sorted(set(params) - allowed)
        if bad:
            raise RequestError(422, f"params {bad}: unknown; train takes {sorted(allowed)}.")
        kw = {k: v for k, v in params.items() if k in allowed}
        kw.setdefault("random_state", 0)
        model = EffectModel(**kw).fit(data)
        ate = model.ate()
        summary = {
            "n_units": int(data.n_units),
            "chosen": {f"{r['treatment']}/{r['outcome']}": r["learner"]
                       for r in model.selection_.to_dict(orient="records")},
            "ate": ate.to_dict(orient="records"),
        }
        model_id = self.store.add_model(name, pickle.dumps(model), summary)
        row = self._experiment(name)
        self.store.update_experiment(
            name, state={**row["state"], "model_id": model_id, "ate": summary["ate"]}
        )
        with self._lock:
            self._models[model_id] = model
        return {"model_id": model_id, **summary}

    def _job_optimize(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        row = self._experiment(name)
        model_id = row["state"].get("model_id")
        if model_id is None:
            raise RequestError(409, "optimize needs a trained model; run a 'train' job first.")
        model = self._model(int(model_id))
        q = params.get("q", 4)
        if not isinstance(q, int) or not 1 <= q <= 16:
            raise RequestError(422, f"params.q: expected 1-16 candidate policies; got {q!r}.")
        front = optimize_policies(
            model, method=params.get("method", "sobol"), budget=int(params.get("budget", 1000)),
            random_state=int(params.get("random_state", 0)), progress=False,
        )

        def tunable(pol: LinearPolicy) -> bool:
            # Ax tunes the vector with w_1 = 1: the first outcome's weight must be positive
            w = pol.weight_vector
            return bool(w[0] > 1e-3 * max(float(w.max()), 1e-12))

        chosen = front.select(q=q)
        versions = []
        skipped = 0
        for i, pol in enumerate(chosen.policies):
            if not tunable(pol):
                skipped += 1
                continue
            versions.append(self.store.add_policy(
                name, "linear", pol.to_dict(), int(model_id), f"candidate {i + 1}"
            ))
        utility = LinearPolicy(model.spec_)
        if params.get("include_utility", True) and tunable(utility):
            # the spec's default utility (its outcome weights, no biases) as one more arm
            versions.append(self.store.add_policy(
                name, "linear", utility.to_dict(), int(model_id), "utility (spec weights)"
            ))
        usable = [p.to_vector() for p in front.policies if tunable(p)]
        if not usable:
            raise RequestError(
                409, f"no policy on the front gives the first outcome "
                f"({model.spec_.outcome_names[0]!r}) a positive weight, so none can be tuned; "
                "list an outcome the team wants to improve first in the spec."
            )
        vecs = np.stack(usable)
        lo, hi = vecs.min(axis=0), vecs.max(axis=0)
        pad = np.maximum(0.1 * (hi - lo), 1e-3)
        bounds = np.column_stack([lo - pad, hi + pad])
        n_w = model.spec_.n_outcomes - 1
        bounds[:n_w, 0] = np.maximum(bounds[:n_w, 0], 0.0)  # weights stay >= 0
        front_id = self.store.add_model(name, pickle.dumps(front), {"kind": "pareto_front"})
        state = {**row["state"], "front": front.to_dict(), "candidates": versions,
                 "front_id": front_id,
                 "bounds": bounds.tolist()}
        self.store.update_experiment(name, state=state)
        return {"hypervolume": float(front.hypervolume()), "n_front": len(front.policies),
                "candidates": versions, "skipped_untunable": skipped}

    def _job_distill(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Distill a linear policy version into a policy-tree version (kind "tree")."""
        from pexkit.explain.distill import distill

        version = params.get("version")
        prow = self.store.policy(name, version) if isinstance(version, int) else None
        if prow is None or prow["kind"] != "linear" or not isinstance(version, int):
            raise RequestError(
                422, f"params.version: expected a linear policy version of {name!r}; got "
                f"{version!r}. List versions with GET .../policies."
            )
        depth = params.get("max_depth", 3)
        if not isinstance(depth, int) or not 1 <= depth <= 4:
            raise RequestError(422, f"params.max_depth: expected 1-4; got {depth!r}.")
        model = self._model(int(prow["model_id"]))
        policy = LinearPolicy(model.spec_, weights=prow["params"]["weights"],
                              biases=prow["params"]["biases"])
        tree = distill(policy, model, max_depth=depth)
        blob_id = self.store.add_model(name, pickle.dumps(tree), {"kind": "distilled_policy"})
        summary = tree.to_dict()
        summary.pop("tree", None)
        new_version = self.store.add_policy(
            name, "tree", {**summary, "source_version": version, "max_depth": depth},
            blob_id, f"tree (depth {depth}) of version {version}",
        )
        return {"version": new_version, "source_version": version,
                "fidelity": summary["fidelity"], "value_kept": summary["value_kept"],
                "rules": str(tree.tree)}

    # ------------------------------------------------------------ tune
    def start_tune(self, name: str, objectives: list[str] | None = None) -> dict[str, Any]:
        from pexkit.service.tuning import OnlineTuner

        row = self._experiment(name)
        state = row["state"]
        if not state.get("candidates"):
            raise RequestError(
                409, "tune needs candidate policies; run the 'train' and 'optimize' jobs first."
            )
        spec = _spec_of(row)
        goals = {o.name: o.goal for o in spec.outcomes} | {
            t["name"]: t["goal"] for t in row["tracking"]
        }
        objectives = objectives or list(goals)
        bad = [o for o in objectives if o not in goals]
        if bad:
            raise RequestError(
                422, f"objectives: unknown outcomes {bad}; choose from {list(goals)}."
            )
        tuner = OnlineTuner.create(spec, state["bounds"], {o: goals[o] for o in objectives})
        arms = []
        for i, version in enumerate(state["candidates"]):
            prow = self.store.policy(name, version)
            assert prow is not None
            pol = LinearPolicy(spec, weights=prow["params"]["weights"],
                               biases=prow["params"]["biases"])
            trial = tuner.attach(pol)
            arms.append({"arm": f"r1a{i + 1}", "version": version, "trial": trial})
        epoch = row["epoch"] + 1
        self.store.add_arms(name, epoch, arms)
        state = {**state, "ax": tuner.dump(), "objectives": objectives, "tune_round": 1,
                 "epochs": {**state["epochs"], str(epoch): "tune"}}
        self.store.update_experiment(
            name, phase="tune", epoch=epoch, arms=[{"arm": a["arm"], "version": a["version"]}
                                                   for a in arms], state=state,
        )
        return self.describe(name)

    def arm_metrics(self, name: str, epoch: int) -> dict[str, dict[str, Any]]:
        frame, _, outs = self.unit_frame(name, epoch=epoch)
        res: dict[str, dict[str, Any]] = {}
        if frame.empty:
            return res
        for arm, grp in frame.groupby("arm"):
            res[str(arm)] = {
                "n": len(grp),
                **{o: {"mean": float(grp[o].mean()),
                       "sem": float(grp[o].std(ddof=1) / np.sqrt(len(grp))) if len(grp) > 1 else 0.0}
                   for o in outs},
            }
        return res

    def _job_tune_round(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        from pexkit.service.tuning import OnlineTuner

        row = self._experiment(name)
        if row["phase"] != "tune":
            raise RequestError(409, "tune_round needs phase 'tune'.")
        state = row["state"]
        spec = _spec_of(row)
        epoch = row["epoch"]
        tuner = OnlineTuner.load(state["ax"])
        metrics = self.arm_metrics(name, epoch)
        history = {h["arm"]: h for h in self.store.arm_history(name) if h["epoch"] == epoch}
        min_units = int(params.get("min_units", 30))
        for arm in row["arms"]:
            m = metrics.get(arm["arm"])
            if m is None or m["n"] < min_units:
                raise RequestError(
                    409, f"arm {arm['arm']} has {0 if m is None else m['n']} units this round; "
                    f"a round needs at least {min_units} per arm. Decide for more units first."
                )
            tuner.complete(history[arm["arm"]]["trial"], m, state["objectives"])
            self.store.set_arm_metrics(name, epoch, arm["arm"], m)
        q = int(params.get("q", len(row["arms"])))
        proposals = tuner.next(q)
        model_id = state.get("model_id")
        rnd = int(state.get("tune_round", 1)) + 1
        arms = []
        for i, (trial, pol) in enumerate(proposals):
            version = self.store.add_policy(
                name, "linear", pol.to_dict(), model_id, f"tune round {rnd} arm {i + 1}"
            )
            arms.append({"arm": f"r{rnd}a{i + 1}", "version": version, "trial": trial})
        new_epoch = epoch + 1
        self.store.add_arms(name, new_epoch, arms)
        state = {**state, "ax": tuner.dump(), "tune_round": rnd,
                 "epochs": {**state["epochs"], str(new_epoch): "tune"}}
        self.store.update_experiment(
            name, epoch=new_epoch, state=state,
            arms=[{"arm": a["arm"], "version": a["version"]} for a in arms],
        )
        del spec
        return {"round": rnd, "completed": metrics, "arms": arms}

    def tune_results(self, name: str) -> list[dict[str, Any]]:
        """Every tuned arm with its online metrics (completed rounds)."""
        rows = self.store.arm_history(name)
        row = self._experiment(name)
        live = self.arm_metrics(name, row["epoch"]) if row["phase"] == "tune" else {}
        out = []
        for h in rows:
            metrics = h["metrics"] if h["metrics"] is not None else live.get(h["arm"])
            out.append({"epoch": h["epoch"], "arm": h["arm"], "version": h["version"],
                        "trial": h["trial"], "metrics": metrics})
        return out

    # ------------------------------------------------------------ launch
    def launch(self, name: str, version: int, holdout: float | None = None) -> dict[str, Any]:
        row = self._experiment(name)
        holdout = row["holdout"] if holdout is None else holdout
        self._check_holdout(holdout)
        prow = self.store.policy(name, version)
        if prow is None or prow["kind"] not in ("linear", "tree"):
            raise RequestError(
                422, f"version: {version!r} is not a linear or tree policy of {name!r}; "
                "list them with GET .../policies."
            )
        self.chooser(name, version)  # compile now: fail here, not on the first decide
        epoch = row["epoch"] + 1
        state = {**row["state"], "launch_epoch": epoch,
                 "epochs": {**row["state"]["epochs"], str(epoch): "launched"}}
        self.store.update_experiment(
            name, phase="launched", epoch=epoch, launched_version=version,
            holdout=float(holdout), arms=[], state=state,
        )
        return self.describe(name)

    def backtest(self, name: str, checkpoints: int = 8) -> dict[str, Any]:
        """Launched policy vs its randomized holdout, per outcome, with 95% CIs.

        ``lift`` is mean(Y | served by the policy) - mean(Y | holdout): it
        estimates V(policy) - V(uniform random) on the launched population.
        ``over_time`` repeats it on the first 1/c, 2/c, ... of the units.
        """
        row = self._experiment(name)
        epoch = row["state"].get("launch_epoch")
        if epoch is None:
            raise RequestError(409, f"experiment {name!r} has not been launched; nothing to backtest.")
        frame, spec, outs = self.unit_frame(name, epoch=epoch)
        goals = {o.name: o.goal for o in spec.outcomes} | {
            t["name"]: t["goal"] for t in row["tracking"]
        }
        weights = spec.default_weights
        if not frame.empty:
            frame["utility"] = sum(
                weights[o.name] * o.sign * frame[o.name] for o in spec.outcomes
            )
        metrics = [*outs, "utility"]

        def table(df: pd.DataFrame) -> list[dict[str, Any]]:
            pol, hold = df[~df["holdout"].astype(bool)], df[df["holdout"].astype(bool)]
            res = []
            for o in metrics:
                if len(pol) < 2 or len(hold) < 2:
                    res.append({"outcome": o, "n_policy": len(pol), "n_holdout": len(hold)})
                    continue
                a, b = pol[o].to_numpy(float), hold[o].to_numpy(float)
                lift = a.mean() - b.mean()
                se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
                res.append({
                    "outcome": o, "goal": goals.get(o, "maximize"), "n_policy": len(a),
                    "n_holdout": len(b), "policy_mean": float(a.mean()),
                    "holdout_mean": float(b.mean()), "lift": float(lift), "se": se,
                    "ci_low": float(lift - Z95 * se), "ci_high": float(lift + Z95 * se),
                })
            return res

        if frame.empty:
            return {"version": row["launched_version"], "holdout": row["holdout"],
                    "outcomes": [], "over_time": []}
        frame = frame.sort_values("created_at").reset_index(drop=True)
        over = []
        for c in range(1, checkpoints + 1):
            part = frame.iloc[: max(1, len(frame) * c // checkpoints)]
            over.append({"units": len(part), "at": part["created_at"].iloc[-1].isoformat(),
                         "outcomes": table(part)})
        return {"version": row["launched_version"], "holdout": row["holdout"],
                "outcomes": table(frame), "over_time": over}
