"""The HTTP API (FastAPI), versioned under ``/v1``; the dashboard lives at ``/``.

Authentication: ``Authorization: Bearer KEY`` (or ``X-API-Key: KEY``), checked
by :class:`~pexkit.service.auth.Gate` before the body is read. Keys carry
scopes (``admin`` = everything, ``decide``, ``log``, ``read``) and may be
limited to some experiments; they are revocable. Domain errors of the core
are mapped to status codes here and nowhere else; every error body is
``{"detail": "..."}`` and every status is documented in the OpenAPI schema.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from pexkit.exceptions import InvalidParameterError, PexkitError
from pexkit.service import errors as E
from pexkit.service.auth import Gate, KeyCache, authorize
from pexkit.service.core import DecisionService
from pexkit.service.docs import add_offline_docs
from pexkit.service.schemas import (
    BacktestOut,
    CreateExperiment,
    DecideBatch,
    DecideRequest,
    DecisionOut,
    DecisionsOut,
    ErrorOut,
    ExperimentHealthOut,
    ExperimentOut,
    HealthOut,
    JobOut,
    JobRequest,
    KeyCreated,
    KeyOut,
    KeyRequest,
    LaunchRequest,
    LogBatch,
    LogEvent,
    LogResult,
    PhaseRequest,
    PolicyOut,
    TunedArmOut,
    TuneRequest,
    TuningOut,
)
from pexkit.service.validation import LIMITS, NAME_PATTERN
from pexkit.serving.decision import Decision
from pexkit.store.db import EventStore, StoreUnavailableError

__all__ = ["STATUS", "create_app"]

STATUS: dict[type[Exception], int] = {
    E.InvalidRequestError: 422,
    E.NotFoundError: 404,
    E.ConflictError: 409,
    E.PayloadTooLargeError: 413,
    E.TooManyRequestsError: 429,
    E.UnauthenticatedError: 401,
    E.ForbiddenError: 403,
    E.UnavailableError: 503,
    StoreUnavailableError: 503,
}

Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64,
                           description="Experiment name (A-Z a-z 0-9 _ . -).")]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="An id (a 32-bit SQL integer).")]


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Bad request", 401: "Missing, unknown or revoked key",
            403: "The key lacks the scope or the experiment", 404: "Not found",
            409: "Not possible in the experiment's current state", 413: "Too large",
            422: "Invalid input", 429: "Too many queued jobs", 503: "Store unavailable"}
    return {c: {"model": ErrorOut, "description": text[c]}
            for c in sorted({401, 413, 422, 503, *codes})}


def _status(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 422


def _decision(d: Decision) -> dict[str, Any]:
    return {"treatment": d.treatment, "policy_version": d.policy_version,
            "propensity": d.propensity, "holdout": d.holdout, "unit": d.unit,
            "treatment_index": d.treatment_index, "arm": d.arm, "phase": d.phase}


def _validation_detail(errors: Sequence[Any]) -> str:
    """One line per validation error (at most 10): where, and what was wrong."""
    msgs = []
    for err in errors[:10]:
        loc = ".".join(str(p) for p in err["loc"] if p != "body")[:200] or "body"
        msgs.append(f"{loc}: {err['msg']}")
    return "; ".join(msgs) + ". See /docs for the request schema."


def _store_gone_detail(exc: Exception) -> str:
    orig = getattr(exc, "orig", exc)
    return (f"the store is unreachable ({type(orig).__name__}); the request was not "
            "acknowledged. Retry it later (GET /v1/health).")


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def create_app(db: str = "sqlite:///pexkit.db", admin_key: str | None = None) -> FastAPI:
    """Build the service over the event store at ``db``.

    Parameters
    ----------
    db : str
        ``sqlite:///PATH`` (default) or ``postgresql://user@host:port/dbname``.
    admin_key : str, optional
        Registered (hashed) as the admin key at start-up, e.g. from PEXKIT_ADMIN_KEY
        (at least 16 characters); admin keys registered from an earlier value of
        PEXKIT_ADMIN_KEY are revoked.
    """
    if admin_key is not None and len(admin_key) < LIMITS.min_admin_key_length:
        raise InvalidParameterError(
            f"PEXKIT_ADMIN_KEY: expected at least {LIMITS.min_admin_key_length} characters; got "
            f"{len(admin_key)}. Use a random key, e.g. `openssl rand -hex 24`."
        )
    state: dict[str, DecisionService] = {}

    def svc() -> DecisionService:
        return state["svc"]

    keys = KeyCache(lambda: svc().store)

    async def hot_decide(name: str, info: Any, receive: Any, send: Any) -> None:
        """``POST /v1/experiments/{name}/decide`` without the framework (see Gate)."""
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        status, content = 200, None
        try:  # python-mode validation, as FastAPI's: the same messages
            body = DecideRequest.model_validate(orjson.loads(b"".join(chunks)))
        except orjson.JSONDecodeError as exc:
            status, content = 422, {"detail": f"body: JSON decode error ({exc}). See /docs for "
                                              "the request schema."}
        except ValidationError as exc:
            status, content = 422, {"detail": _validation_detail(exc.errors())}
        else:
            try:
                authorize(info, "decide", name)
                ds = await svc().decide_async(
                    name, [{"unit": body.unit, "features": body.features}]
                )
                content = _decision(ds[0])
            except PexkitError as exc:
                status, content = _status(exc), {"detail": str(exc)}
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                status, content = 503, {"detail": _store_gone_detail(exc)}
        payload = orjson.dumps(content)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = EventStore(db, background_checkpoint=True)
        if admin_key:
            store.add_key(["admin"], label="PEXKIT_ADMIN_KEY", key=admin_key)
            store.revoke_other_keys("PEXKIT_ADMIN_KEY", keep=admin_key)
        state["svc"] = DecisionService(store)
        gc.collect()
        gc.freeze()  # the start-up heap (numpy, LightGBM, ...) never again in a GC pause
        yield
        state.pop("svc").close()

    app = FastAPI(
        title="pexkit decision service",
        version="1",
        description=(
            "Decide and log APIs for personalized experiments: randomize, tune online, "
            "launch with a holdout (and optional exploration), backtest. Authenticate with "
            "`Authorization: Bearer KEY`. Errors are `{\"detail\": \"...\"}`."
        ),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc with their assets from a package, not a CDN
        redoc_url=None,
    )
    add_offline_docs(app)
    app.add_middleware(Gate, keys=keys, decide=hot_decide)

    @app.exception_handler(PexkitError)
    async def _domain_error(_: Request, exc: PexkitError) -> JSONResponse:
        return JSONResponse(status_code=_status(exc), content={"detail": str(exc)})

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def _store_gone(_: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": _store_gone_detail(exc)})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_detail(exc.errors())})

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI: a body that is not UTF-8 text; invalid input
            return JSONResponse(status_code=422, content={
                "detail": "body: expected a JSON document in UTF-8 (nested less than 1000 "
                "deep); the body could not be parsed. See /docs for the request schema."})
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc.detail)},
                            headers=getattr(exc, "headers", None))

    def key(request: Request) -> Any:
        return request.scope.get("state", {}).get("key")

    # ---------------------------------------------------------- keys
    @app.post("/v1/keys", tags=["admin"], status_code=201, response_model=KeyCreated,
              responses=_responses(403))
    def create_key(body: KeyRequest, request: Request) -> dict[str, Any]:
        """Create an API key with scopes, optionally limited to experiments; shown once."""
        authorize(key(request), "admin")
        exps = None if body.experiments is None else sorted(set(body.experiments))
        kid, new = svc().store.add_key(body.scopes, body.label, experiments=exps)
        return {"id": kid, "key": new, "scopes": sorted(set(body.scopes)), "experiments": exps}

    @app.get("/v1/keys", tags=["admin"], response_model=list[KeyOut], responses=_responses(403))
    def list_keys(request: Request) -> list[dict[str, Any]]:
        """Every key (without the key itself): scopes, experiments, label, revocation."""
        authorize(key(request), "admin")
        return [{**k, "scopes": k["scopes"].split(","),
                 "created_at": k["created_at"].isoformat() if k["created_at"] else None,
                 "revoked_at": k["revoked_at"].isoformat() if k["revoked_at"] else None}
                for k in svc().store.api_keys()]

    @app.delete("/v1/keys/{key_id}", tags=["admin"], status_code=204,
                responses=_responses(403, 404))
    def revoke_key(key_id: JobId, request: Request) -> Response:
        """Revoke a key: at once on this server, within 5 s on the others."""
        authorize(key(request), "admin")
        if not svc().store.revoke_key(key_id):
            raise E.NotFoundError(f"key {key_id} not found or already revoked.")
        keys.forget(key_id)
        return Response(status_code=204)

    # ---------------------------------------------------------- experiments
    @app.post("/v1/experiments", tags=["experiments"], status_code=201,
              response_model=ExperimentOut, responses=_responses(403, 409))
    def create_experiment(body: CreateExperiment, request: Request) -> dict[str, Any]:
        """Create an experiment from a spec; it starts in the randomize phase."""
        authorize(key(request), "admin")
        return svc().create_experiment(
            body.spec, [t.model_dump() for t in body.tracking], body.holdout, body.salt
        )

    @app.get("/v1/experiments", tags=["experiments"], response_model=list[ExperimentOut],
             responses=_responses(403))
    def list_experiments(request: Request) -> list[dict[str, Any]]:
        """Every experiment this key may read, with its phase."""
        info = key(request)
        authorize(info, "read", any_experiment=True)
        out = svc().list_experiments()
        if info.experiments is not None:
            out = [e for e in out if e["name"] in info.experiments]
        return out

    @app.get("/v1/experiments/{name}", tags=["experiments"], response_model=ExperimentOut,
             responses=_responses(403, 404))
    def get_experiment(name: Name, request: Request) -> dict[str, Any]:
        """One experiment: phase, spec, counts, model, candidates, arms."""
        authorize(key(request), "read", name)
        return svc().describe(name)

    @app.delete("/v1/experiments/{name}", tags=["experiments"], status_code=204,
                responses=_responses(403, 404))
    def delete_experiment(name: Name, request: Request) -> Response:
        """Delete an experiment and everything logged for it (cannot be undone)."""
        authorize(key(request), "admin", name)
        svc().delete_experiment(name)
        return Response(status_code=204)

    @app.post("/v1/experiments/{name}/phase", tags=["experiments"],
              response_model=ExperimentOut, responses=_responses(403, 404, 409))
    def set_phase(name: Name, body: PhaseRequest, request: Request) -> dict[str, Any]:
        """Stop an experiment, or go back to randomizing."""
        authorize(key(request), "admin", name)
        return svc().set_phase(name, body.phase)

    @app.get("/v1/experiments/{name}/policies", tags=["experiments"],
             response_model=list[PolicyOut], responses=_responses(403, 404))
    def list_policies(name: Name, request: Request) -> list[dict[str, Any]]:
        """Every policy version (immutable) with its kind and parameters."""
        authorize(key(request), "read", name)
        return svc().policies(name)

    @app.get("/v1/experiments/{name}/front", tags=["experiments"],
             response_model=dict[str, Any], responses=_responses(403, 404))
    def get_front(name: Name, request: Request) -> dict[str, Any]:
        """The offline Pareto front (policies.json schema)."""
        authorize(key(request), "read", name)
        return svc().front(name)

    # ---------------------------------------------------------- decide / log
    @app.post("/v1/experiments/{name}/decide", tags=["decide"], response_model=DecisionOut,
              responses=_responses(403, 404, 409, 503))
    async def decide(name: Name, body: DecideRequest, request: Request) -> Response:
        """Decide a treatment for one unit (sticky within a phase; stored before the answer)."""
        authorize(key(request), "decide", name)
        ds = await svc().decide_async(name, [{"unit": body.unit, "features": body.features}])
        return _json(_decision(ds[0]))

    @app.post("/v1/experiments/{name}/decide/batch", tags=["decide"],
              response_model=DecisionsOut, responses=_responses(403, 404, 409, 503))
    async def decide_batch(name: Name, body: DecideBatch, request: Request) -> Response:
        """Decide for many units in one call (at most PEXKIT_MAX_BATCH)."""
        authorize(key(request), "decide", name)
        ds = await svc().decide_async(
            name, [{"unit": r.unit, "features": r.features} for r in body.requests]
        )
        return _json({"decisions": [_decision(d) for d in ds]})

    @app.post("/v1/experiments/{name}/log", tags=["log"], response_model=LogResult,
              responses=_responses(403, 404, 503))
    def log(name: Name, body: LogEvent, request: Request) -> dict[str, int]:
        """Log one outcome event (idempotent on event_id; durable once acknowledged)."""
        authorize(key(request), "log", name)
        return svc().log(name, [body.model_dump()])

    @app.post("/v1/experiments/{name}/log/batch", tags=["log"], response_model=LogResult,
              responses=_responses(403, 404, 503))
    def log_batch(name: Name, body: LogBatch, request: Request) -> dict[str, int]:
        """Log many outcome events in one transaction (at most PEXKIT_MAX_BATCH)."""
        authorize(key(request), "log", name)
        return svc().log(name, [e.model_dump() for e in body.events])

    # ---------------------------------------------------------- jobs
    @app.post("/v1/experiments/{name}/jobs", tags=["jobs"], status_code=202,
              response_model=JobOut, responses=_responses(403, 404, 409, 429))
    def submit_job(name: Name, body: JobRequest, request: Request) -> dict[str, Any]:
        """Start a background job: train, retrain, optimize, tune_round, distill, refit.

        ``train``/``retrain`` take ``sources`` (randomize, holdout, launched: the
        launched traffic served with exploration, with its propensities);
        ``distill`` (params ``version``, ``max_depth`` 1-4) turns a linear policy
        version into a policy-tree version that can be launched like any other;
        ``refit`` (param ``version``) makes a linear version's serving twin on
        models refit once on all units (1/n_folds of the trees per decision; its
        agreement with the cross-fitted version is in the result).
        """
        authorize(key(request), "admin", name)
        return svc().submit(name, body.kind, body.params)

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], response_model=JobOut,
             responses=_responses(403, 404))
    def get_job(job_id: JobId, request: Request) -> dict[str, Any]:
        """A job's status (queued, running, succeeded, failed), result or error."""
        info = key(request)
        authorize(info, "read", any_experiment=True)
        job = svc().job(job_id)
        if info.experiments is not None and job["experiment"] not in info.experiments:
            # the answer for a job that does not exist: ids of other experiments' jobs leak nothing
            raise E.NotFoundError(f"job {job_id} not found.")
        return job

    @app.get("/v1/experiments/{name}/jobs", tags=["jobs"], response_model=list[JobOut],
             responses=_responses(403, 404))
    def list_jobs(name: Name, request: Request) -> list[dict[str, Any]]:
        """Every job of an experiment."""
        authorize(key(request), "read", name)
        return svc().experiment_jobs(name)

    # ---------------------------------------------------------- tune / launch
    @app.post("/v1/experiments/{name}/tune", tags=["phases"], response_model=ExperimentOut,
              responses=_responses(403, 404, 409))
    def start_tune(name: Name, body: TuneRequest, request: Request) -> dict[str, Any]:
        """Enter the tune phase: the offline candidates become arms of an Ax experiment."""
        authorize(key(request), "admin", name)
        return svc().start_tune(name, body.objectives)

    @app.get("/v1/experiments/{name}/arms", tags=["phases"], response_model=list[TunedArmOut],
             responses=_responses(403, 404))
    def arms(name: Name, request: Request) -> list[dict[str, Any]]:
        """Every tuned arm with its online metrics."""
        authorize(key(request), "read", name)
        return svc().tune_results(name)

    @app.get("/v1/experiments/{name}/tuning", tags=["phases"], response_model=TuningOut,
             responses=_responses(403, 404))
    def tuning(name: Name, request: Request) -> dict[str, Any]:
        """The tuning so far: arms with CIs, the best arm per objective, Ax's recommendation."""
        authorize(key(request), "read", name)
        return svc().tuning(name)

    @app.post("/v1/experiments/{name}/launch", tags=["phases"], response_model=ExperimentOut,
              responses=_responses(403, 404, 409))
    def launch(name: Name, body: LaunchRequest, request: Request) -> dict[str, Any]:
        """Launch a policy version to all units but a randomized holdout (2-5%)."""
        authorize(key(request), "admin", name)
        return svc().launch(name, body.version, body.holdout, body.explore)

    @app.get("/v1/experiments/{name}/backtest", tags=["phases"], response_model=BacktestOut,
             responses=_responses(403, 404, 409))
    def backtest(name: Name, request: Request) -> dict[str, Any]:
        """Launched policy vs holdout per outcome, with 95% CIs, and over time."""
        authorize(key(request), "read", name)
        return svc().backtest(name)

    @app.get("/v1/experiments/{name}/health", tags=["monitoring"],
             response_model=ExperimentHealthOut, responses=_responses(403, 404))
    def experiment_health(
        name: Name, request: Request,
        window_minutes: Annotated[float, Query(ge=1, le=10080, description=(
            "The recent window of the traffic rates."))] = 15.0,
        grace_minutes: Annotated[float, Query(ge=0, le=525600, description=(
            "Units decided less than this long ago are not counted as missing outcomes."))] = 60.0,
        stale_minutes: Annotated[float, Query(ge=1, le=525600, description=(
            "Outcomes have stopped when none arrived for this long while units were "
            "decided."))] = 30.0,
    ) -> dict[str, Any]:
        """Live monitoring of the current phase, with flags (ok, warn, alert) and their fixes.

        Decisions and outcome events per minute; a sample-ratio test of the randomized
        assignments and of the launch holdout's share; feature drift (PSI per feature,
        live decisions vs the training log of the model in use; > 0.25 alert, 0.1-0.25
        warn); units without outcome events after the grace period; outcomes that stopped
        arriving; failed jobs.
        """
        authorize(key(request), "read", name)
        return svc().health(name, window_minutes=window_minutes, grace_minutes=grace_minutes,
                            stale_minutes=stale_minutes)

    @app.get("/v1/health", tags=["admin"], response_model=HealthOut,
             responses={503: {"model": ErrorOut, "description": "Store unavailable"}})
    def health() -> dict[str, str]:
        """Liveness and store health (no key needed): 503 when writes would be lost."""
        svc().store.check_alive()
        return {"status": "ok"}

    app.state.service = svc
    app.state.keys = keys
    from pexkit.service.sequential import sequential_router

    app.include_router(sequential_router(lambda: svc().store, _responses))
    from pexkit.service.dashboard import mount_dashboard

    mount_dashboard(app, svc)
    return app
