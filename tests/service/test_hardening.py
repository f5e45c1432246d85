"""Hardening: every finding of the attack on a running server (issue 10), fixed and kept fixed.

Each test runs real ``pexkit serve`` processes (SQLite and PostgreSQL unless a
finding is specific to one store) and sends what broke the old server: inputs
that caused 5xx, unbounded bodies, ids and queues, names no route could reach,
global and unrevocable keys, missing security headers, orphaned jobs of a dead
peer, a SQLite file deleted under the server, and an OpenAPI schema that did
not match the responses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import pexkit as px
from pexkit.service.core import DecisionService
from pexkit.simulate.scenarios import NotificationsScenario
from pexkit.store.db import EventStore
from pexkit.store.localpg import create_database

from .conftest import ADMIN, Server, free_port

NAME = "hard"
SPEC: dict[str, Any] = {
    "name": NAME, "unit": "unit_id",
    "treatment": {"column": "arm", "arms": ["a", "b", "c"]},
    "outcomes": [{"name": "clicks", "goal": "maximize"}],
    "features": {"numeric": ["x"], "categorical": ["c"]},
}
FEATS = {"x": 1.5, "c": "ios"}
SURROGATE = "\\ud800"  # as it travels in JSON text: a lone surrogate
SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "referrer-policy",
                    "content-security-policy")


def call(srv: Server, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
         key: str | None = ADMIN, timeout: float = 30) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return httpx.request(method, srv.url + path, content=content, headers=headers,
                         timeout=timeout)


def with_surrogate(body: Any) -> bytes:
    """JSON bytes of ``body`` with every "SURR" string made a lone surrogate."""
    return json.dumps(body).replace('"SURR"', f'"{SURROGATE}"').encode()


def decide_body(unit: Any = "u1", **feats: Any) -> dict[str, Any]:
    return {"unit": unit, "features": {**FEATS, **feats}}


def status(r: httpx.Response) -> tuple[int, str]:
    detail = r.json().get("detail") if r.content else None
    return r.status_code, detail if isinstance(detail, str) else f"not a string: {detail!r}"


@pytest.fixture
def live(db_url: str, servers: Any) -> Server:
    srv: Server = servers(db_url)
    assert call(srv, "POST", "/v1/experiments", {"spec": SPEC}).status_code == 201
    assert call(srv, "POST", f"/v1/experiments/{NAME}/decide", decide_body()).status_code == 200
    return srv


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---------------------------------------------------------------- inputs that caused 5xx
def test_inputs_that_caused_server_errors_are_422(live: Server) -> None:
    big = "1" * 400
    exp = f"/v1/experiments/{NAME}"
    cases: list[tuple[str, str, str, Any, bytes | None, int]] = [
        ("empty scopes", "POST", "/v1/keys", {"scopes": []}, None, 422),
        ("job id 2**63", "GET", f"/v1/jobs/{2**63}", None, None, 422),
        ("job id 2**64 + 1", "GET", f"/v1/jobs/{2**64 + 1}", None, None, 422),
        ("job id 2**31 - 1", "GET", f"/v1/jobs/{2**31 - 1}", None, None, 404),
        ("job id 2**31 (PostgreSQL: integer out of range)", "GET", f"/v1/jobs/{2**31}", None,
         None, 422),
        ("revoke key 2**63", "DELETE", f"/v1/keys/{2**63}", None, None, 422),
        ("revoke key 2**31", "DELETE", f"/v1/keys/{2**31}", None, None, 422),
        ("revoke key 2**31 - 1", "DELETE", f"/v1/keys/{2**31 - 1}", None, None, 404),
        ("launch version 2**63", "POST", f"{exp}/launch", {"version": 2**63}, None, 422),
        ("launch version 2**31", "POST", f"{exp}/launch", {"version": 2**31}, None, 422),
        ("400-digit feature", "POST", f"{exp}/decide", None,
         f'{{"unit": "u2", "features": {{"x": {big}, "c": "ios"}}}}'.encode(), 422),
        ("1e999 feature", "POST", f"{exp}/decide", None,
         b'{"unit": "u2", "features": {"x": 1e999, "c": "ios"}}', 422),
        ("400-digit unit", "POST", f"{exp}/decide", None,
         f'{{"unit": {big}, "features": {{"x": 1, "c": "ios"}}}}'.encode(), 422),
        ("400-digit value", "POST", f"{exp}/log", None,
         f'{{"unit": "u1", "outcome": "clicks", "event_id": "e1", "value": {big}}}'.encode(),
         422),
        ("400-digit value in a batch", "POST", f"{exp}/log/batch", None,
         f'{{"events": [{{"unit": "u1", "outcome": "clicks", "event_id": "e1", '
         f'"value": -{big}}}]}}'.encode(), 422),
        ("surrogate unit", "POST", f"{exp}/decide", None,
         with_surrogate(decide_body("SURR")), 422),
        ("surrogate unit in a batch", "POST", f"{exp}/decide/batch", None,
         with_surrogate({"requests": [decide_body("u3"), decide_body("SURR")]}), 422),
        ("surrogate category", "POST", f"{exp}/decide", None,
         with_surrogate(decide_body("u2", c="SURR")), 422),
        ("surrogate event id", "POST", f"{exp}/log", None,
         with_surrogate({"unit": "u1", "outcome": "clicks", "value": 1, "event_id": "SURR"}),
         422),
        ("surrogate unit in log", "POST", f"{exp}/log", None,
         with_surrogate({"unit": "SURR", "outcome": "clicks", "value": 1, "event_id": "e2"}),
         422),
        ("surrogate outcome name in log", "POST", f"{exp}/log", None,
         with_surrogate({"unit": "u1", "outcome": "SURR", "value": 1, "event_id": "e2"}), 422),
        ("surrogate tracking name", "POST", "/v1/experiments", None,
         with_surrogate({"spec": {**SPEC, "name": "t1"}, "tracking": [{"name": "SURR"}]}), 422),
        ("surrogate outcome name", "POST", "/v1/experiments", None,
         with_surrogate({"spec": {**SPEC, "name": "t2",
                                  "outcomes": [{"name": "SURR", "goal": "maximize"}]}}), 422),
        ("surrogate arm", "POST", "/v1/experiments", None,
         with_surrogate({"spec": {**SPEC, "name": "t3",
                                  "treatment": {"column": "arm", "arms": ["a", "SURR"]}}}), 422),
        ("surrogate key label", "POST", "/v1/keys", None,
         with_surrogate({"scopes": ["read"], "label": "SURR"}), 422),
        ("NaN job parameter (PostgreSQL's JSON has no NaN)", "POST", f"{exp}/jobs", None,
         b'{"kind": "train", "params": {"n_folds": NaN}}', 422),
        ("Infinity deep in job parameters", "POST", f"{exp}/jobs", None,
         b'{"kind": "optimize", "params": {"guardrails": [{"max_change": -Infinity}]}}', 422),
        ("NaN outcome weight in a spec", "POST", "/v1/experiments", None,
         json.dumps({"spec": {**SPEC, "name": "t4", "outcomes": [
             {"name": "clicks", "goal": "maximize", "weight": "NAN"}]}}).replace(
                 '"NAN"', "NaN").encode(), 422),
        ("NaN feature", "POST", f"{exp}/decide", None,
         b'{"unit": "u2", "features": {"x": NaN, "c": "ios"}}', 422),
        ("NaN value", "POST", f"{exp}/log", None,
         b'{"unit": "u1", "outcome": "clicks", "event_id": "e3", "value": NaN}', 422),
        ("body not UTF-8", "POST", f"{exp}/decide", None, b'{"unit": "\xff\xfe"}', 422),
        ("body not JSON", "POST", f"{exp}/decide", None, b"{unit", 422),
    ]
    wrong = []
    for label, method, path, body, raw, expected in cases:
        got, detail = status(call(live, method, path, body, raw=raw))
        if got != expected or detail.startswith("not a string"):
            wrong.append((label, got, detail))
    assert not wrong
    exp_now = call(live, "GET", exp).json()
    assert exp_now["events"] == 0 and exp_now["assignments"] == {"randomize": 1}
    names = [e["name"] for e in call(live, "GET", "/v1/experiments").json()]
    assert names == [NAME]
    assert len(call(live, "GET", "/v1/keys").json()) == 1  # no key was created


def test_ids_over_200_characters_are_refused(live: Server) -> None:
    exp = f"/v1/experiments/{NAME}"
    long_id, huge_id = "u" * 201, "u" * 1_000_000
    for path, body in [
        (f"{exp}/decide", decide_body(long_id)),
        (f"{exp}/decide", decide_body(huge_id)),
        (f"{exp}/decide", decide_body("u2", c="c" * 201)),
        (f"{exp}/decide/batch", {"requests": [decide_body("u2"), decide_body(long_id)]}),
        (f"{exp}/log", {"unit": "u1", "outcome": "clicks", "value": 1, "event_id": huge_id}),
        (f"{exp}/log", {"unit": long_id, "outcome": "clicks", "value": 1, "event_id": "e"}),
        ("/v1/experiments", {"spec": {**SPEC, "name": "t4"}, "tracking": [{"name": "o" * 201}]}),
    ]:
        r = call(live, "POST", path, body)
        assert r.status_code in (413, 422), (path, r.status_code, r.text[:200])
        assert isinstance(r.json()["detail"], str)
    assert call(live, "POST", f"{exp}/decide", decide_body("u" * 200)).status_code == 200
    after = call(live, "GET", exp).json()
    assert after["assignments"] == {"randomize": 2} and after["events"] == 0


def test_outcome_names_that_broke_tuning_are_accepted(live: Server) -> None:
    names = ["it's", "a;b", "x[0]", "back\\slash", "drop table; --"]
    spec = {**SPEC, "name": "quotes",
            "outcomes": [{"name": n, "goal": "maximize"} for n in names[:3]]}
    r = call(live, "POST", "/v1/experiments",
             {"spec": spec, "tracking": [{"name": n} for n in names[3:]]})
    assert r.status_code == 201, r.text
    got = r.json()
    assert [o["name"] for o in got["spec"]["outcomes"]] == names[:3]
    assert [t["name"] for t in got["tracking"]] == names[3:]
    assert call(live, "POST", "/v1/experiments/quotes/decide", decide_body()).status_code == 200
    r = call(live, "POST", "/v1/experiments/quotes/log/batch", {"events": [
        {"unit": "u1", "outcome": n, "value": 1, "event_id": f"e{i}"} for i, n in enumerate(names)
    ]})
    assert r.json() == {"accepted": 5, "duplicates": 0}


# ---------------------------------------------------------------- batches
def test_batches_over_the_limit_get_413_and_others_go_on(live: Server) -> None:
    exp = f"/v1/experiments/{NAME}"
    small: list[int] = []
    stop = threading.Event()

    def small_requests() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60) as c:
            i = 0
            while not stop.is_set() or i < 20:
                r = c.post(f"{live.url}{exp}/decide", json=decide_body(f"s{i}"))
                small.append(r.status_code)
                i += 1

    th = threading.Thread(target=small_requests)
    th.start()
    try:
        over = call(live, "POST", f"{exp}/decide/batch",
                    {"requests": [decide_body(f"o{i}") for i in range(10_001)]}, timeout=120)
        assert over.status_code == 413 and "10,000" in over.json()["detail"]
        logs = call(live, "POST", f"{exp}/log/batch", {"events": [
            {"unit": "u1", "outcome": "clicks", "value": 1, "event_id": f"e{i}"}
            for i in range(10_001)]}, timeout=120)
        assert logs.status_code == 413
        # 9,000 units in one call (it used to break SQLite's variable limit), while the small
        # requests share its group commit
        ok = call(live, "POST", f"{exp}/decide/batch",
                  {"requests": [decide_body(f"b{i}", x=float(i)) for i in range(9_000)]},
                  timeout=120)
        assert ok.status_code == 200, ok.text[:300]
        decisions = ok.json()["decisions"]
        assert [d["unit"] for d in decisions] == [f"b{i}" for i in range(9_000)]
        again = call(live, "POST", f"{exp}/decide/batch",  # all assigned before: read back
                     {"requests": [decide_body(f"b{i}") for i in range(9_000)]}, timeout=120)
        assert again.status_code == 200
        assert again.json()["decisions"] == decisions
    finally:
        stop.set()
        th.join(timeout=120)
    assert small and set(small) == {200}, sorted(set(small))
    counts = call(live, "GET", exp).json()["assignments"]
    assert counts == {"randomize": 1 + 9_000 + len(small)}


def test_commit_decisions_chunks_40000_rows_on_sqlite(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'big.db'}")
    svc = DecisionService(store)
    try:
        svc.create_experiment(SPEC)
        version = svc.experiment(NAME).version

        def rows(units: range) -> list[dict[str, Any]]:
            return [{"experiment": NAME, "epoch": 1, "phase": "randomize", "unit": f"u{i}",
                     "treatment": i % 3, "propensity": 1 / 3, "policy_version": 1, "arm": None,
                     "holdout": False, "features": {"x": float(i), "c": "ios"}}
                    for i in units]

        first = store.commit_decisions([rows(range(0, 40_000, 2))], {NAME: version})
        assert len(first[0]) == 20_000
        # 40,000 rows, half of them assigned before with other treatments: the stored
        # first decisions are read back (in chunks), the new ones inserted
        later = rows(range(40_000))
        for r in later:
            r["treatment"] = (r["treatment"] + 1) % 3
        second = store.commit_decisions([later[:25_000], later[25_000:]], {NAME: version})
        assert sum(len(g) for g in second) == 40_000
        merged = second[0] | second[1]
        assert all(merged[f"u{i}"]["treatment"] == i % 3 for i in range(0, 40_000, 2))
        assert all(merged[f"u{i}"]["treatment"] == (i + 1) % 3 for i in range(1, 40_000, 2))
        assert store.count_assignments(NAME) == {"randomize": 40_000}
        assert len(store.latest_epochs(NAME, [f"u{i}" for i in range(40_000)])) == 40_000
    finally:
        svc.close()


# ---------------------------------------------------------------- unbounded resources
def test_bodies_over_the_limit_get_413(db_url: str, servers: Any) -> None:
    srv = servers(db_url, env={"PEXKIT_MAX_BODY_BYTES": "4096"})
    assert call(srv, "POST", "/v1/experiments", {"spec": SPEC}).status_code == 201
    path = f"/v1/experiments/{NAME}/decide/batch"
    fits = {"requests": [decide_body(f"u{i}") for i in range(20)]}
    assert len(json.dumps(fits)) < 4096
    assert call(srv, "POST", path, fits).status_code == 200
    over = json.dumps({"requests": [decide_body(f"v{i}") for i in range(200)]}).encode()
    r = call(srv, "POST", path, raw=over)  # refused by its Content-Length
    assert r.status_code == 413 and "PEXKIT_MAX_BODY_BYTES" in r.json()["detail"]
    assert all(h in r.headers for h in SECURITY_HEADERS)

    def chunks() -> Any:  # no Content-Length: refused while it streams
        for i in range(0, len(over), 1000):
            yield over[i:i + 1000]

    r = httpx.post(srv.url + path, content=chunks(), timeout=30,
                   headers={"Authorization": f"Bearer {ADMIN}",
                            "content-type": "application/json"})
    assert r.status_code == 413 and "PEXKIT_MAX_BODY_BYTES" in r.json()["detail"]
    assert call(srv, "GET", f"/v1/experiments/{NAME}").json()["assignments"] == {
        "randomize": 20}


def _post_huge(srv: Server, headers: str, size: int) -> tuple[bytes, float, int]:
    """Send a request head announcing ``size`` bytes, then stream them; return the
    first response bytes, the seconds until they came, and how much body was sent."""
    chunk = b"x" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(f"POST /v1/experiments/{NAME}/decide/batch HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {size}\r\n"
                  f"{headers}\r\n".encode())
        t0 = time.monotonic()
        s.sendall(chunk)
        sent += len(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            part = s.recv(4096)
            if not part:
                break
            answer += part
        elapsed = time.monotonic() - t0
        try:
            while sent < size:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: it did not want the body
    return answer, elapsed, sent


def test_big_bodies_are_refused_before_they_are_read(db_url: str, servers: Any) -> None:
    srv = servers(db_url)
    assert call(srv, "POST", "/v1/experiments", {"spec": SPEC}).status_code == 201
    assert srv.proc is not None
    before = rss_kb(srv.proc.pid)
    size = 50 * (1 << 20)
    answer, elapsed, _ = _post_huge(srv, "", size)  # no key
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"missing API key" in answer and elapsed < 5
    answer, elapsed, _ = _post_huge(srv, "Authorization: Bearer not-a-key\r\n", size)
    assert answer.startswith(b"HTTP/1.1 401") and elapsed < 5
    answer, elapsed, _ = _post_huge(srv, f"Authorization: Bearer {ADMIN}\r\n", size)
    assert answer.startswith(b"HTTP/1.1 413") and elapsed < 5  # by its Content-Length
    grown_mb = (rss_kb(srv.proc.pid) - before) / 1024
    assert grown_mb < 50, grown_mb
    assert httpx.get(f"{srv.url}/v1/health").status_code == 200


def _with_training_data(srv: Server, n: int = 3000) -> None:
    spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
    spec["name"] = "slow"
    assert call(srv, "POST", "/v1/experiments", {"spec": spec}).status_code == 201
    feats = NotificationsScenario().features(n, np.random.default_rng(0)).to_dict("records")
    r = call(srv, "POST", "/v1/experiments/slow/decide/batch",
             {"requests": [{"unit": f"u{i}", "features": f} for i, f in enumerate(feats)]})
    assert r.status_code == 200
    rng = np.random.default_rng(1)
    events = [{"unit": f"u{i}", "outcome": o, "value": float(rng.normal()), "event_id": f"{i}{o}"}
              for i in range(n) for o in ("engagement", "unsubscribe", "revenue")]
    r = call(srv, "POST", "/v1/experiments/slow/log/batch", {"events": events})
    assert r.status_code == 200


def _train(trees: int) -> dict[str, Any]:
    return {"kind": "train", "params": {
        "learner": "t", "n_folds": 2,
        "base_params": {"n_estimators": trees, "learning_rate": 0.01, "num_leaves": 63,
                        "min_child_samples": 2}}}


def _wait_status(srv: Server, job_id: int, wanted: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = call(srv, "GET", f"/v1/jobs/{job_id}").json()
        if job["status"] in wanted or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.1)


def test_queued_jobs_are_bounded_and_failed_at_shutdown(db_url: str, servers: Any) -> None:
    srv = servers(db_url)
    _with_training_data(srv)
    path = "/v1/experiments/slow/jobs"
    first = call(srv, "POST", path, _train(60)).json()
    assert _wait_status(srv, first["id"], {"running"}, 30)["status"] == "running"
    queued = [call(srv, "POST", path, _train(60)) for _ in range(8)]
    assert [r.status_code for r in queued] == [202] * 8
    over = call(srv, "POST", path, _train(60))
    assert over.status_code == 429 and "queued jobs" in over.json()["detail"]
    assert len(call(srv, "GET", path).json()) == 9  # the refused one was not stored
    t0 = time.monotonic()
    srv.kill(signal.SIGTERM)  # waits for the running job only
    took = time.monotonic() - t0
    store = EventStore(db_url)
    try:
        jobs = {j["id"]: j for j in store.jobs("slow")}
    finally:
        store.close()
    assert jobs[first["id"]]["status"] in ("succeeded", "failed")
    for r in queued:
        job = jobs[r.json()["id"]]
        assert job["status"] == "failed" and "stopped before this job started" in job["error"]
    assert took < 25, took


def test_orphaned_job_of_a_dead_peer_is_failed(postgres: str, servers: Any) -> None:
    db = create_database(postgres)
    env = {"PEXKIT_JOB_HEARTBEAT_S": "0.5"}
    a, b = servers(db, env=env), servers(db, env=env)
    _with_training_data(a)
    job = call(a, "POST", "/v1/experiments/slow/jobs", _train(5000)).json()
    seen = _wait_status(b, job["id"], {"running"}, 30)
    assert seen["status"] == "running", seen
    time.sleep(3)  # > 4 heartbeats: a live peer's running job is left alone
    seen = call(b, "GET", f"/v1/jobs/{job['id']}").json()
    assert seen["status"] == "running", seen
    a.kill(signal.SIGKILL)
    t0 = time.monotonic()
    after = _wait_status(b, job["id"], {"failed", "succeeded"}, 15)
    assert after["status"] == "failed", after
    assert "heartbeat" in after["error"] and time.monotonic() - t0 < 10


# ---------------------------------------------------------------- names
def test_names_are_restricted_and_experiments_can_be_deleted(live: Server) -> None:
    for bad in ["../etc", "a/b", "<script>", "a?b=c", "a" * 65, "", ".hidden", "a b",
                "a#b", "é"]:
        r = call(live, "POST", "/v1/experiments", {"spec": {**SPEC, "name": bad}})
        assert r.status_code == 422 and "spec.name" in r.json()["detail"], (bad, r.text)
    ok = "Email-campaign_v2.1"
    assert call(live, "POST", "/v1/experiments", {"spec": {**SPEC, "name": ok}}).status_code == 201
    assert call(live, "POST", f"/v1/experiments/{ok}/decide", decide_body()).status_code == 200
    assert call(live, "GET", "/v1/experiments/a%2Fb").status_code in (404, 422)
    read = call(live, "POST", "/v1/keys", {"scopes": ["read", "decide", "log"]}).json()["key"]
    assert call(live, "DELETE", f"/v1/experiments/{ok}", key=read).status_code == 403
    assert call(live, "DELETE", f"/v1/experiments/{ok}", key=None).status_code == 401
    assert call(live, "DELETE", f"/v1/experiments/{ok}").status_code == 204
    assert call(live, "GET", f"/v1/experiments/{ok}").status_code == 404
    assert call(live, "POST", f"/v1/experiments/{ok}/decide", decide_body()).status_code == 404
    assert call(live, "DELETE", f"/v1/experiments/{ok}").status_code == 404
    # the name is free again, and nothing of the old experiment comes back
    assert call(live, "POST", "/v1/experiments", {"spec": {**SPEC, "name": ok}}).status_code == 201
    assert call(live, "GET", f"/v1/experiments/{ok}").json()["assignments"] == {}
    assert call(live, "GET", f"/v1/experiments/{NAME}").status_code == 200


# ---------------------------------------------------------------- keys
def test_keys_limited_to_an_experiment(live: Server) -> None:
    other = "other"
    assert call(live, "POST", "/v1/experiments",
                {"spec": {**SPEC, "name": other}}).status_code == 201
    assert call(live, "POST", f"/v1/experiments/{other}/decide", decide_body()).status_code == 200
    job = call(live, "POST", f"/v1/experiments/{other}/jobs", {"kind": "train"}).json()
    r = call(live, "POST", "/v1/keys", {"scopes": ["decide", "log", "read"],
                                        "experiments": [NAME]})
    assert r.status_code == 201 and r.json()["experiments"] == [NAME]
    key = r.json()["key"]
    mine, theirs = f"/v1/experiments/{NAME}", f"/v1/experiments/{other}"
    event = {"unit": "u1", "outcome": "clicks", "value": 1, "event_id": "k1"}
    assert call(live, "POST", f"{mine}/decide", decide_body("k"), key=key).status_code == 200
    assert call(live, "POST", f"{mine}/log", event, key=key).status_code == 200
    assert call(live, "GET", mine, key=key).status_code == 200
    refused = [
        ("POST", f"{theirs}/decide", decide_body("k")),
        ("POST", f"{theirs}/decide/batch", {"requests": [decide_body("k")]}),
        ("POST", f"{theirs}/log", event),
        ("POST", f"{theirs}/log/batch", {"events": [event]}),
        ("GET", theirs, None), ("GET", f"{theirs}/policies", None),
        ("GET", f"{theirs}/jobs", None), ("GET", f"{theirs}/backtest", None),
        ("GET", f"{theirs}/arms", None),
        ("POST", "/v1/experiments", {"spec": {**SPEC, "name": "mine2"}}),
        ("POST", "/v1/keys", {"scopes": ["read"]}),
        ("POST", "/v1/keys", {"scopes": ["read"], "experiments": [NAME]}),
        ("GET", "/v1/keys", None),
        ("POST", f"{mine}/phase", {"phase": "stopped"}),
        ("DELETE", mine, None),
    ]
    codes = [(m, p, call(live, m, p, b, key=key).status_code) for m, p, b in refused]
    assert [c for c in codes if c[2] != 403] == []
    # another experiment's job answers exactly as a job that does not exist
    theirs_job = call(live, "GET", f"/v1/jobs/{job['id']}", key=key)
    missing = call(live, "GET", f"/v1/jobs/{2**31 - 1}", key=key)
    assert theirs_job.status_code == missing.status_code == 404
    assert theirs_job.json()["detail"].replace(str(job["id"]), "N") == \
        missing.json()["detail"].replace(str(2**31 - 1), "N")
    assert [e["name"] for e in call(live, "GET", "/v1/experiments", key=key).json()] == [NAME]
    assert {e["name"] for e in call(live, "GET", "/v1/experiments").json()} == {NAME, other}
    assert call(live, "GET", theirs).json()["events"] == 0
    assert call(live, "GET", theirs).json()["assignments"] == {"randomize": 1}


def test_revoked_keys_stop_at_once_here_and_soon_on_peers(db_url: str, servers: Any) -> None:
    a, b = servers(db_url), servers(db_url)
    created = call(a, "POST", "/v1/keys", {"scopes": ["read"], "label": "temp"}).json()
    key = created["key"]
    assert call(a, "GET", "/v1/experiments", key=key).status_code == 200
    assert call(b, "GET", "/v1/experiments", key=key).status_code == 200  # cached on b
    assert call(a, "DELETE", f"/v1/keys/{created['id']}", key=key).status_code == 403
    t0 = time.monotonic()
    assert call(a, "DELETE", f"/v1/keys/{created['id']}").status_code == 204
    assert call(a, "GET", "/v1/experiments", key=key).status_code == 401
    while call(b, "GET", "/v1/experiments", key=key).status_code == 200:
        assert time.monotonic() - t0 < 6.5, "the revoked key still works on the peer"
        time.sleep(0.2)
    assert call(b, "GET", "/v1/experiments", key=key).status_code == 401
    assert call(a, "DELETE", f"/v1/keys/{created['id']}").status_code == 404
    listed = {k["id"]: k for k in call(b, "GET", "/v1/keys").json()}
    assert listed[created["id"]]["revoked_at"] is not None
    assert call(a, "DELETE", "/v1/keys/999999").status_code == 404


def test_old_admin_key_stops_after_restart_with_a_new_one(db_url: str, servers: Any) -> None:
    first = servers(db_url)
    assert call(first, "GET", "/v1/keys").status_code == 200
    first.kill(signal.SIGTERM)
    new = "rotated-admin-key-abcdef0123"
    second = servers(db_url, port=first.port, env={"PEXKIT_ADMIN_KEY": new})
    assert call(second, "GET", "/v1/keys").status_code == 401
    assert call(second, "GET", "/v1/keys", key=new).status_code == 200
    # and back: the first key works again (it was revoked, not forgotten), the second stops
    second.kill(signal.SIGTERM)
    third = servers(db_url, port=first.port)
    assert call(third, "GET", "/v1/keys").status_code == 200
    assert call(third, "GET", "/v1/keys", key=new).status_code == 401


def test_short_admin_key_is_refused_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "PEXKIT_ADMIN_KEY": "0123456789abcde"}  # 15 characters
    out = subprocess.run(
        [sys.executable, "-m", "pexkit.cli.main", "serve", "--db",
         f"sqlite:///{tmp_path / 'k.db'}", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "PEXKIT_ADMIN_KEY" in out.stderr and "at least 16 characters" in out.stderr


# ---------------------------------------------------------------- headers
def test_security_headers_on_api_responses(live: Server) -> None:
    exp = f"/v1/experiments/{NAME}"
    responses = [
        call(live, "GET", exp), call(live, "GET", exp, key=None),
        call(live, "GET", "/v1/experiments/nope"),
        call(live, "POST", f"{exp}/decide", {"unit": "u"}),
        call(live, "POST", f"{exp}/decide", decide_body("h1")),
        httpx.get(f"{live.url}/v1/health"),
    ]
    for r in responses:
        missing = [h for h in SECURITY_HEADERS if h not in r.headers]
        assert not missing, (r.request.url, r.status_code, missing)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


# ---------------------------------------------------------------- store gone
@pytest.mark.parametrize("how", ["delete", "rename"])
def test_sqlite_file_gone_makes_the_server_unhealthy(tmp_path: Path, servers: Any,
                                                     how: str) -> None:
    path = tmp_path / "gone.db"
    srv = servers(f"sqlite:///{path}")
    exp = f"/v1/experiments/{NAME}"
    assert call(srv, "POST", "/v1/experiments", {"spec": SPEC}).status_code == 201
    assert call(srv, "POST", f"{exp}/decide", decide_body("u1")).status_code == 200
    aside = tmp_path / "aside.db"
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            if how == "delete":
                src.unlink()
            else:
                src.rename(f"{aside}{suffix}")
    assert httpx.get(f"{srv.url}/v1/health").status_code == 503
    writes = [
        ("POST", f"{exp}/decide", decide_body("u2")),
        ("POST", f"{exp}/decide/batch", {"requests": [decide_body("u3")]}),
        ("POST", f"{exp}/log", {"unit": "u1", "outcome": "clicks", "value": 1,
                                "event_id": "e1"}),
        ("POST", f"{exp}/phase", {"phase": "stopped"}),
        ("POST", "/v1/keys", {"scopes": ["read"]}),
        ("POST", "/v1/experiments", {"spec": {**SPEC, "name": "after"}}),
    ]
    got = [(p, call(srv, m, p, b).status_code) for m, p, b in writes]
    assert all(code == 503 for _, code in got), got
    r = call(srv, "POST", f"{exp}/decide", decide_body("u4"))
    assert "no longer exists" in r.json()["detail"] or "replaced" in r.json()["detail"]
    if how == "rename":  # nothing answered 503 was written to the file the server still holds
        srv.kill(signal.SIGKILL)
        store = EventStore(f"sqlite:///{aside}")
        try:
            state = store.experiment(NAME)
            assert state is not None and state["state"]["phase"] == "randomize"
            assert store.count_events(NAME) == 0
            assert store.experiment_names() == [NAME]
            assert len(store.api_keys()) == 1
        finally:
            store.close()


# ---------------------------------------------------------------- OpenAPI
def test_openapi_documents_every_status_and_string_details(live: Server) -> None:
    schema = httpx.get(f"{live.url}/openapi.json").json()
    error = schema["components"]["schemas"]["ErrorOut"]
    assert error["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in json.dumps(schema)
    problems: list[tuple[str, ...]] = []
    for path, ops in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            codes = set(op["responses"])
            need = {"503"}
            if path != "/v1/health":
                need |= {"401", "403", "413", "422"}
            if "{name}" in path or "{job_id}" in path or "{key_id}" in path:
                need.add("404")
            if method == "post" and path.endswith("/jobs"):
                need |= {"409", "429"}
            if path.endswith(("/decide", "/decide/batch", "/launch", "/tune", "/phase")):
                need.add("409")
            if not need <= codes:
                problems.append((method, path, *sorted(need - codes)))
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")):
                    ref = resp["content"]["application/json"]["schema"].get("$ref", "")
                    if not ref.endswith("/ErrorOut"):
                        problems.append((method, path, code, ref))
    assert not problems
    # the documented error form is what comes back, for every kind of error
    exp = f"/v1/experiments/{NAME}"
    for r in [call(live, "POST", f"{exp}/decide", {"unit": [1]}),
              call(live, "POST", f"{exp}/decide", {"unit": "u", "features": {}}),
              call(live, "GET", "/v1/jobs/0"), call(live, "GET", exp, key="nope"),
              call(live, "POST", f"{exp}/tune", {}), call(live, "GET", "/v1/experiments/x%20y")]:
        assert r.status_code in (401, 404, 409, 422), (r.request.url, r.status_code)
        body = r.json()
        assert set(body) == {"detail"} and isinstance(body["detail"], str), body


# ---------------------------------------------------------------- client
@pytest.mark.parametrize("answer", [
    httpx.Response(502, text="Bad Gateway"), httpx.Response(400, json=["not", "an", "object"]),
    httpx.Response(503, json={"detail": "the store is unreachable"}),
])
def test_client_errors_for_any_error_body(answer: httpx.Response) -> None:
    """A proxy's or the HTTP server's own error (not {"detail"}) is still a ServiceError."""
    from pexkit.client import ServiceError

    with px.Client("http://127.0.0.1:9", "k") as c:
        c._http = httpx.Client(base_url="http://127.0.0.1:9",
                               transport=httpx.MockTransport(lambda _: answer))
        with pytest.raises(ServiceError) as info:
            c.experiment(NAME)
    assert info.value.status == answer.status_code and isinstance(info.value, px.PexkitError)
    assert info.value.message in (answer.text, "the store is unreachable")


def test_a_name_created_again_is_not_served_from_a_peers_cache(db_url: str, servers: Any) -> None:
    """Delete and create again under the same name: a peer that cached the first one
    must serve the new spec (it used to keep the old arms, features and salt)."""
    a, b = servers(db_url), servers(db_url)
    exp = f"/v1/experiments/{NAME}"
    assert call(a, "POST", "/v1/experiments", {"spec": SPEC}).status_code == 201
    assert call(b, "POST", f"{exp}/decide", decide_body("u1")).status_code == 200  # b caches it
    assert call(a, "DELETE", exp).status_code == 204
    new = {**SPEC, "treatment": {"column": "arm", "arms": ["p", "q", "r", "s"]},
           "features": {"numeric": ["z"], "categorical": []}}
    assert call(a, "POST", "/v1/experiments", {"spec": new}).status_code == 201
    old = call(b, "POST", f"{exp}/decide", decide_body("u2"))
    assert old.status_code == 422 and "missing ['z']" in old.json()["detail"], old.text
    got = call(b, "POST", f"{exp}/decide", {"unit": "u3", "features": {"z": 1.0}})
    assert got.status_code == 200, got.text
    assert got.json()["treatment"] in ("p", "q", "r", "s") and got.json()["propensity"] == 0.25


def test_postgresql_database_gone_answers_503(postgres: str, servers: Any) -> None:
    """The PostgreSQL database dropped under the server: 503 everywhere, never 500."""
    import psycopg

    db = create_database(postgres)
    srv = servers(db)
    exp = f"/v1/experiments/{NAME}"
    assert call(srv, "POST", "/v1/experiments", {"spec": SPEC}).status_code == 201
    assert call(srv, "POST", f"{exp}/decide", decide_body("u1")).status_code == 200
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {db.rsplit('/', 1)[1]} WITH (FORCE)")  # type: ignore[arg-type]
    assert httpx.get(f"{srv.url}/v1/health").status_code == 503
    requests = [
        ("POST", f"{exp}/decide", decide_body("u2")),
        ("POST", f"{exp}/log", {"unit": "u1", "outcome": "clicks", "value": 1, "event_id": "e"}),
        ("GET", exp, None), ("POST", f"{exp}/phase", {"phase": "stopped"}),
        ("POST", "/v1/keys", {"scopes": ["read"]}), ("GET", "/v1/experiments", None),
    ]
    got = [(p, call(srv, m, p, b).status_code) for m, p, b in requests]
    assert all(code == 503 for _, code in got), got
    r = call(srv, "GET", exp, key="a-key-never-seen-before")  # the key look-up fails too
    assert r.status_code == 503 and isinstance(r.json()["detail"], str)
