"""The HTTP API (FastAPI), versioned under ``/v1``; the dashboard lives at ``/``.

Authentication: ``Authorization: Bearer KEY`` (or ``X-API-Key: KEY``). Keys
carry scopes: ``admin`` (everything), ``decide``, ``log``, ``read``. A request
without a key, or with an unknown one, gets 401; a key without the scope gets
403; neither touches the store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pexkit.service.engine import DecisionService, RequestError
from pexkit.store.db import EventStore

__all__ = ["create_app"]


# ------------------------------------------------------------------ schemas
class TrackedOutcome(BaseModel):
    name: str
    goal: Literal["maximize", "minimize"] = "maximize"


class CreateExperiment(BaseModel):
    spec: dict[str, Any] = Field(description="The experiment spec in its YAML form (DESIGN.md).")
    tracking: list[TrackedOutcome] = Field(
        default_factory=list,
        description="Outcomes logged and tuned online but not modeled (e.g. a long-term one).",
    )
    holdout: float = Field(0.03, description="Launch holdout fraction, 0.02-0.05.")
    salt: str | None = Field(
        None, description="Assignment hash salt (8-64 chars); random when absent."
    )


class DecideRequest(BaseModel):
    unit: str | int
    features: dict[str, Any] = Field(description="Every spec feature of the unit.")


class DecideBatch(BaseModel):
    requests: list[DecideRequest]


class DecisionOut(BaseModel):
    unit: str
    treatment: str
    treatment_index: int
    policy_version: int
    propensity: float
    holdout: bool
    arm: str | None
    phase: str


class DecisionsOut(BaseModel):
    decisions: list[DecisionOut]


class LogEvent(BaseModel):
    unit: str | int
    outcome: str
    value: float | int | bool
    event_id: str | int = Field(description="Client-chosen id; a retried event reuses it.")


class LogBatch(BaseModel):
    events: list[LogEvent]


class LogResult(BaseModel):
    accepted: int
    duplicates: int


class JobRequest(BaseModel):
    kind: Literal["train", "optimize", "tune_round", "retrain", "distill"]
    params: dict[str, Any] = Field(default_factory=dict)


class TuneRequest(BaseModel):
    objectives: list[str] | None = Field(
        None, description="Outcomes to tune (default: every spec and tracked outcome)."
    )


class LaunchRequest(BaseModel):
    version: int = Field(description="Policy version to launch (GET .../policies).")
    holdout: float | None = Field(None, description="0.02-0.05; default: the experiment's.")


class PhaseRequest(BaseModel):
    phase: Literal["randomize", "stopped"]


class KeyRequest(BaseModel):
    scopes: list[Literal["admin", "decide", "log", "read"]]
    label: str = ""


# ------------------------------------------------------------------ app
def create_app(db: str = "sqlite:///pexkit.db", admin_key: str | None = None) -> FastAPI:
    """Build the service over the event store at ``db``.

    Parameters
    ----------
    db : str
        ``sqlite:///PATH`` (default) or ``postgresql://user@host:port/dbname``.
    admin_key : str, optional
        Registered (hashed) as an admin key at start-up, e.g. from PEXKIT_ADMIN_KEY.
    """
    state: dict[str, DecisionService] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = EventStore(db)
        if admin_key:
            store.add_key(["admin"], label="PEXKIT_ADMIN_KEY", key=admin_key)
        state["svc"] = DecisionService(store)
        yield
        state.pop("svc").close()

    app = FastAPI(
        title="pexkit decision service",
        version="1",
        description=(
            "Decide and log APIs for personalized experiments: randomize, tune online, "
            "launch with a holdout, backtest. Authenticate with `Authorization: Bearer KEY`."
        ),
        lifespan=lifespan,
    )

    def svc() -> DecisionService:
        return state["svc"]

    key_cache: dict[str, tuple[set[str], float]] = {}

    def scope(needed: str) -> Any:
        def check(
            authorization: str | None = Header(None),
            x_api_key: str | None = Header(None),
        ) -> None:
            key = x_api_key
            if authorization and authorization.lower().startswith("bearer "):
                key = authorization[7:].strip()
            if not key:
                raise RequestError(
                    401, "missing API key: send 'Authorization: Bearer KEY' (or 'X-API-Key')."
                )
            hit = key_cache.get(key)
            if hit is not None and hit[1] > time.monotonic():
                scopes: set[str] | None = hit[0]
            else:
                scopes = svc().store.key_scopes(key)
                if scopes is not None:  # keys are never edited; unknown keys are not cached
                    key_cache[key] = (scopes, time.monotonic() + 30.0)
            if scopes is None:
                raise RequestError(401, "unknown API key; ask an admin for a key (POST /v1/keys).")
            if needed not in scopes and "admin" not in scopes:
                raise RequestError(
                    403, f"this key has scopes {sorted(scopes)}; this endpoint needs {needed!r}."
                )

        return Depends(check)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.message})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if p != "body")
            msgs.append(f"{loc}: {err['msg']}")
        return JSONResponse(
            status_code=422,
            content={"detail": "; ".join(msgs) + ". See /docs for the request schema."},
        )

    # ---------------------------------------------------------- keys
    @app.post("/v1/keys", dependencies=[scope("admin")], tags=["admin"])
    def create_key(body: KeyRequest) -> dict[str, Any]:
        """Create an API key with scopes; the key is shown once (only its hash is kept)."""
        return {"key": svc().store.add_key(body.scopes, body.label), "scopes": body.scopes}

    # ---------------------------------------------------------- experiments
    @app.post("/v1/experiments", dependencies=[scope("admin")], tags=["experiments"],
              status_code=201)
    def create_experiment(body: CreateExperiment) -> dict[str, Any]:
        """Create an experiment from a spec; it starts in the randomize phase."""
        return svc().create_experiment(
            body.spec, [t.model_dump() for t in body.tracking], body.holdout, body.salt
        )

    @app.get("/v1/experiments", dependencies=[scope("read")], tags=["experiments"])
    def list_experiments() -> list[dict[str, Any]]:
        """Every experiment with its phase."""
        return [svc().describe(e["name"]) for e in svc().store.experiments()]

    @app.get("/v1/experiments/{name}", dependencies=[scope("read")], tags=["experiments"])
    def get_experiment(name: str) -> dict[str, Any]:
        """One experiment: phase, spec, counts, model, candidates, arms."""
        return svc().describe(name)

    @app.post("/v1/experiments/{name}/phase", dependencies=[scope("admin")], tags=["experiments"])
    def set_phase(name: str, body: PhaseRequest) -> dict[str, Any]:
        """Stop an experiment, or go back to randomizing."""
        return svc().set_phase(name, body.phase)

    @app.get("/v1/experiments/{name}/policies", dependencies=[scope("read")], tags=["experiments"])
    def list_policies(name: str) -> list[dict[str, Any]]:
        """Every policy version (immutable) with its kind and parameters."""
        svc()._experiment(name)
        out = []
        for p in svc().store.policies(name):
            out.append({k: (v.isoformat() if k == "created_at" else v) for k, v in p.items()})
        return out

    @app.get("/v1/experiments/{name}/front", dependencies=[scope("read")], tags=["experiments"])
    def get_front(name: str) -> dict[str, Any]:
        """The offline Pareto front (policies.json schema)."""
        front = svc()._experiment(name)["state"].get("front")
        if front is None:
            raise RequestError(404, f"{name!r} has no front yet; run an 'optimize' job.")
        return dict(front)

    # ---------------------------------------------------------- decide / log
    @app.post("/v1/experiments/{name}/decide", dependencies=[scope("decide")], tags=["decide"],
              response_model=DecisionOut)
    def decide(name: str, body: DecideRequest) -> dict[str, Any]:
        """Decide a treatment for one unit (sticky within a phase)."""
        return asdict(svc().decide(name, [body.model_dump()])[0])

    @app.post("/v1/experiments/{name}/decide/batch", dependencies=[scope("decide")],
              tags=["decide"], response_model=DecisionsOut)
    def decide_batch(name: str, body: DecideBatch) -> dict[str, Any]:
        """Decide for many units in one call."""
        ds = svc().decide(name, [r.model_dump() for r in body.requests])
        return {"decisions": [asdict(d) for d in ds]}

    @app.post("/v1/experiments/{name}/log", dependencies=[scope("log")], tags=["log"],
              response_model=LogResult)
    def log(name: str, body: LogEvent) -> dict[str, int]:
        """Log one outcome event (idempotent on event_id; durable once acknowledged)."""
        return svc().log(name, [body.model_dump()])

    @app.post("/v1/experiments/{name}/log/batch", dependencies=[scope("log")], tags=["log"],
              response_model=LogResult)
    def log_batch(name: str, body: LogBatch) -> dict[str, int]:
        """Log many outcome events in one transaction."""
        return svc().log(name, [e.model_dump() for e in body.events])

    # ---------------------------------------------------------- jobs
    @app.post("/v1/experiments/{name}/jobs", dependencies=[scope("admin")], tags=["jobs"],
              status_code=202)
    def submit_job(name: str, body: JobRequest) -> dict[str, Any]:
        """Start a background job: train, optimize, tune_round, retrain, distill.

        ``distill`` (params ``version``, ``max_depth`` 1-4) turns a linear policy
        version into a policy-tree version that can be launched like any other.
        """
        return svc().submit(name, body.kind, body.params)

    @app.get("/v1/jobs/{job_id}", dependencies=[scope("read")], tags=["jobs"])
    def get_job(job_id: int) -> dict[str, Any]:
        """A job's status (queued, running, succeeded, failed), result or error."""
        return svc().job(job_id)

    @app.get("/v1/experiments/{name}/jobs", dependencies=[scope("read")], tags=["jobs"])
    def list_jobs(name: str) -> list[dict[str, Any]]:
        """Every job of an experiment."""
        svc()._experiment(name)
        return [svc().job(int(j["id"])) for j in svc().store.jobs(name)]

    # ---------------------------------------------------------- tune / launch
    @app.post("/v1/experiments/{name}/tune", dependencies=[scope("admin")], tags=["phases"])
    def start_tune(name: str, body: TuneRequest) -> dict[str, Any]:
        """Enter the tune phase: the offline candidates become arms of an Ax experiment."""
        return svc().start_tune(name, body.objectives)

    @app.get("/v1/experiments/{name}/arms", dependencies=[scope("read")], tags=["phases"])
    def arms(name: str) -> list[dict[str, Any]]:
        """Every tuned arm with its online metrics."""
        return svc().tune_results(name)

    @app.post("/v1/experiments/{name}/launch", dependencies=[scope("admin")], tags=["phases"])
    def launch(name: str, body: LaunchRequest) -> dict[str, Any]:
        """Launch a policy version to all units but a randomized holdout (2-5%)."""
        return svc().launch(name, body.version, body.holdout)

    @app.get("/v1/experiments/{name}/backtest", dependencies=[scope("read")], tags=["phases"])
    def backtest(name: str) -> dict[str, Any]:
        """Launched policy vs holdout per outcome, with 95% CIs, and over time."""
        return svc().backtest(name)

    @app.get("/v1/health", tags=["admin"])
    def health() -> dict[str, str]:
        """Liveness (no key needed)."""
        return {"status": "ok"}

    app.state.service = svc
    try:
        from pexkit.service.dashboard import mount_dashboard

        mount_dashboard(app, svc)
    except ImportError:  # pragma: no cover - dashboard optional during development
        pass
    return app
