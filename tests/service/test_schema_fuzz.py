"""schemathesis over the OpenAPI schema against a real server, on SQLite and PostgreSQL.

Every operation gets positive and negative cases generated from /openapi.json
(a fixed number per operation, derandomized, so a run is reproducible), sent with
an admin key to a live ``pexkit serve`` that holds an experiment ("fuzz") with a
few decisions. Each response must not be a server error and must match what the
schema documents: its status code, content type and body schema. Path names are
pinned to the live experiment for half of the cases so the calls get past 404.
A second test fuzzes the hot path (decide, log) with arbitrary JSON values in
every field of an otherwise well-formed request.

The attack of issue 10 (schemathesis, 27,578 cases) found ten distinct 5xx causes
and a schema whose 4xx answers did not match; here they must stay at zero.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import ADMIN, Server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = 30  # per operation and generation mode; CI time (75 once found nothing more than 50)
SPEC: dict[str, Any] = {
    "name": "fuzz", "unit": "unit_id",
    "treatment": {"column": "arm", "arms": ["a", "b"]},
    "outcomes": [{"name": "clicks", "goal": "maximize"}],
    "features": {"numeric": ["x", "y"], "categorical": ["c"]},
}
UNITS = [f"u{i}" for i in range(5)]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def _post(srv: Server, path: str, body: Any, key: str = ADMIN) -> httpx.Response:
    r = httpx.post(srv.url + path, json=body, headers={"Authorization": f"Bearer {key}"},
                   timeout=30)
    assert r.status_code < 300, r.text
    return r


@pytest.fixture
def target(db_url: str, servers: Any) -> tuple[Server, str, set[int]]:
    """A live server with the "fuzz" experiment, a few decisions and an admin key."""
    srv: Server = servers(db_url)
    _post(srv, "/v1/experiments", {"spec": SPEC, "tracking": [{"name": "kept"}]})
    _post(srv, "/v1/experiments/fuzz/decide/batch", {"requests": [
        {"unit": u, "features": {"x": i, "y": None, "c": "ios"}} for i, u in enumerate(UNITS)]})
    created = _post(srv, "/v1/keys", {"scopes": ["admin"], "label": "fuzz"}).json()
    keys = httpx.get(f"{srv.url}/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    return srv, created["key"], {int(k["id"]) for k in keys}


def _failure(label: str, exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, BaseExceptionGroup):
        text = "; ".join(str(e) for e in exc.exceptions)
    return f"{label}: {type(exc).__name__}: {text[:1500]}"


def _fuzz_operation(op: Any, mode: GenerationMode, srv: Server, headers: dict[str, str],
                    protected: set[int], sent: list[int]) -> None:
    """Send EXAMPLES generated cases of one operation and validate each response."""
    pin_name = "{name}" in op.path and op.method.upper() != "DELETE"

    @FUZZ_SETTINGS
    @given(case=op.as_strategy(generation_mode=mode), pin=st.booleans())
    def run(case: Any, pin: bool) -> None:
        params = case.path_parameters
        if pin and pin_name and params is not None:
            params["name"] = "fuzz"
        if params is not None and params.get("key_id") in protected:
            # never revoke the keys the run itself uses: revoke a new one instead
            params["key_id"] = _post(srv, "/v1/keys", {"scopes": ["read"]}).json()["id"]
        sent.append(1)
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

    run()


def test_every_operation_conforms_to_the_schema(target: tuple[Server, str, set[int]]) -> None:
    srv, key, protected = target
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20
    failures: list[str] = []
    sent: list[int] = []
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(op, mode, srv, headers, protected, sent)
            except Unsatisfiable:  # nothing to make invalid: no parameters and no body
                assert mode == GenerationMode.NEGATIVE and not op.path_parameters
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure
                failures.append(_failure(f"{op.label} [{mode.value}]", exc))
    assert not failures, "\n".join(failures)
    assert len(sent) >= len(operations) * EXAMPLES
    # the run itself kept working: the experiment and the key are still there
    r = httpx.get(f"{srv.url}/v1/experiments/fuzz", headers=headers)
    assert r.status_code == 200
    # jobs the fuzzer submitted failed with a message, not a traceback (a 5xx in disguise)
    deadline = time.monotonic() + 60
    while True:
        jobs = httpx.get(f"{srv.url}/v1/experiments/fuzz/jobs", headers=headers).json()
        if all(j["status"] in ("succeeded", "failed") for j in jobs) or (
                time.monotonic() > deadline):
            break
        time.sleep(0.2)
    crashed = [(j["kind"], j["params"], j["error"]) for j in jobs
               if j["error"] and "Traceback" in j["error"]]
    assert not crashed


JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([10**400, -(10**400), 2**63, 2**63 - 1, -(2**63), 1e308, -1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.text(alphabet=st.characters(codec=None), max_size=5),
    st.sampled_from(["\ud800", "a\udfffb", "x" * 201, "", "0", "ios", "u0"]),
)
JSON_ANY = st.recursive(JSON_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=5)
NUMBER = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6), st.booleans())
CATEGORY = st.one_of(st.sampled_from(["ios", "android"]), st.text(min_size=1, max_size=10))
UNIT = st.one_of(st.sampled_from(UNITS), st.text(min_size=1, max_size=20),
                 st.integers(0, 2**62))


def _mutated(valid: st.SearchStrategy[dict[str, Any]], fields: list[str]) -> Any:
    """Well-formed requests, half of them with one field replaced by any JSON value."""

    def apply(args: tuple[dict[str, Any], str, Any]) -> dict[str, Any]:
        body, field, value = args
        body = dict(json.loads(json.dumps(body)))
        if field in ("x", "y", "c"):
            body["features"][field] = value
        elif field == "drop":
            body.pop(next(iter(body)))
        elif field != "none":
            body[field] = value
        return body

    which = st.one_of(st.just("none"), st.sampled_from([*fields, "drop"]))
    return st.tuples(valid, which, JSON_ANY).map(apply)


DECIDE = _mutated(st.fixed_dictionaries({"unit": UNIT, "features": st.fixed_dictionaries(
    {"x": st.none() | NUMBER, "y": st.none() | NUMBER, "c": st.none() | CATEGORY})}),
    ["unit", "features", "x", "y", "c"])
EVENT = _mutated(st.fixed_dictionaries({
    "unit": st.sampled_from(UNITS) | UNIT, "outcome": st.sampled_from(["clicks", "kept"]),
    "value": NUMBER, "event_id": st.text(min_size=1, max_size=10) | st.integers(0, 2**62),
}), ["unit", "outcome", "value", "event_id"])


def test_hot_path_with_arbitrary_json_values(target: tuple[Server, str, set[int]]) -> None:
    """decide, decide/batch, log and log/batch with any JSON in every field: never 5xx."""
    srv, key, _ = target
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    ops = {p: schema[p]["POST"] for p in (
        "/v1/experiments/{name}/decide", "/v1/experiments/{name}/decide/batch",
        "/v1/experiments/{name}/log", "/v1/experiments/{name}/log/batch")}
    statuses: dict[int, int] = {}

    @settings(FUZZ_SETTINGS, max_examples=300)
    @given(kind=st.sampled_from(sorted(ops)), decide=DECIDE, event=EVENT,
           decides=st.lists(DECIDE, min_size=1, max_size=4),
           events=st.lists(EVENT, min_size=1, max_size=4))
    def run(kind: str, decide: Any, event: Any, decides: Any, events: Any) -> None:
        if kind.endswith("/decide"):
            body: Any = decide
        elif kind.endswith("/decide/batch"):
            body = {"requests": decides}
        elif kind.endswith("/log"):
            body = event
        else:
            body = {"events": events}
        case = ops[kind].Case(path_parameters={"name": "fuzz"}, body=body,
                              media_type="application/json")
        # the body travels as Python's json writes it (NaN, Infinity, \ud800 escapes)
        raw = json.dumps(body).encode()
        response = case.call(headers=headers, data=raw, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    run()
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.get(200, 0) >= 30 and statuses.get(422, 0) >= 30, statuses


def test_responses_of_every_phase_match_the_schema(db_url: str, servers: Any) -> None:
    """Every read endpoint, validated against the schema with real content in each phase:
    a trained model and front, linear and tree policies, tuning arms with metrics, a
    launched policy with exploration and its backtest, and finished jobs."""
    import numpy as np

    import pexkit as px
    from pexkit.simulate.scenarios import NotificationsScenario

    from .conftest import client

    srv: Server = servers(db_url)
    api = client(srv.url)
    name = "phases"
    spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
    spec["name"] = name
    api.create_experiment(spec, tracking=[{"name": "retention"}])
    sc, rng = NotificationsScenario(), np.random.default_rng(3)
    outcomes = ["engagement", "unsubscribe", "revenue", "retention"]
    served = 0

    def serve(n: int) -> None:
        nonlocal served
        feats = sc.features(n, rng)
        ids = [f"u{served + i}" for i in range(n)]
        served += n
        ds = api.decide_batch(name, list(zip(ids, feats.to_dict("records"), strict=True)))
        t = np.array([d.treatment_index for d in ds])
        y = sc.draw(sc.means(feats)[np.arange(n), t, :], rng, feats)
        api.log_batch(name, [
            {"unit": ids[i], "outcome": o, "value": float(y[i, min(m, 2)]),
             "event_id": f"{ids[i]}:{o}"} for i in range(n) for m, o in enumerate(outcomes)])

    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    reads = [p for p, ops in schema.raw_schema["paths"].items()  # sequential ones: own tests
             if "get" in ops and "{name}" in p and not p.startswith("/v1/sequential")]
    assert len(reads) == 8  # ... /health and /tuning

    def validate_reads(phase: str) -> None:
        for path in reads:
            case = schema[path]["GET"].Case(path_parameters={"name": name})
            response = case.call(headers=headers, timeout=60)
            assert response.status_code in (200, 404, 409), (phase, path, response.text)
            case.validate_response(response, checks=CHECKS)
        for job in api._call("GET", f"/v1/experiments/{name}/jobs"):
            case = schema["/v1/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": job["id"]})
            case.validate_response(case.call(headers=headers, timeout=60), checks=CHECKS)

    serve(600)
    validate_reads("randomize")
    fast = {"learner": "t", "n_folds": 2, "base_params": {"n_estimators": 20, "num_leaves": 7}}
    api.run_job(name, "train", timeout=300, **fast)
    api.run_job(name, "optimize", timeout=300, q=2, budget=10)
    linear = api.experiment(name)["candidates"][0]
    tree = api.run_job(name, "distill", timeout=300, version=linear)["version"]
    validate_reads("trained")
    api.tune(name)
    serve(120)
    validate_reads("tune")
    api.run_job(name, "tune_round", timeout=300, min_units=2)
    validate_reads("tuned")
    for version in (linear, tree):
        api.launch(name, version, holdout=0.05, explore=0.1)
        serve(200)
        validate_reads(f"launched {version}")
    assert api.backtest(name)["version"] == tree
