"""The HTTP API against real servers (SQLite and PostgreSQL): auth, bad requests,
sticky assignment across restarts and processes, idempotent and durable logging."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

import pexkit as px
from pexkit.client import ServiceError
from pexkit.simulate.scenarios import NotificationsScenario
from pexkit.store.db import EventStore

from .conftest import ADMIN, client

NAME = "notif"


def spec_dict() -> dict[str, Any]:
    spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
    spec["name"] = NAME
    return spec


def features(n: int, seed: int = 0) -> list[dict[str, Any]]:
    frame = NotificationsScenario().features(n, np.random.default_rng(seed))
    return frame.to_dict("records")


@pytest.fixture
def live(db_url: str, servers: Any) -> tuple[Any, px.Client]:
    srv = servers(db_url)
    admin = client(srv.url, ADMIN)
    admin.create_experiment(spec_dict(), tracking=[{"name": "retention_90d"}],
                            salt="fixed-salt-0001")
    return srv, admin


def test_auth_refusals_touch_nothing(live: tuple[Any, px.Client]) -> None:
    srv, admin = live
    feats = features(1)[0]
    admin.decide(NAME, "u1", feats)
    body = {"unit": "u1", "outcome": "engagement", "value": 1.0, "event_id": "e1"}
    url = f"{srv.url}/v1/experiments/{NAME}/log"
    assert httpx.post(url, json=body).status_code == 401  # no key
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    read_key = admin.create_key(["read"])
    decide_key = admin.create_key(["decide"])
    r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {read_key}"})
    assert r.status_code == 403 and "log" in r.json()["detail"]
    r = httpx.post(f"{srv.url}/v1/experiments", json={"spec": spec_dict()},
                   headers={"X-API-Key": decide_key})
    assert r.status_code == 403
    assert admin.experiment(NAME)["events"] == 0  # nothing was logged
    # the right scope works, and keys are stored hashed
    log_key = admin.create_key(["log"])
    assert client(srv.url, log_key).log(NAME, "u1", "engagement", 1.0, "e1")["accepted"] == 1
    store = EventStore(srv.db)
    try:
        with store.engine.connect() as conn:
            hashes = [r[0] for r in conn.exec_driver_sql("SELECT key_hash FROM api_keys")]
        assert log_key not in hashes and ADMIN not in hashes and len(hashes) == 4
    finally:
        store.close()


BAD = [
    ("unknown experiment", "POST", "/v1/experiments/nope/decide",
     {"unit": "u", "features": {}}, 404, "not found"),
    ("feature missing", "POST", f"/v1/experiments/{NAME}/decide",
     {"unit": "u", "features": {"age": 30}}, 422, "missing"),
    ("numeric feature as text", "POST", f"/v1/experiments/{NAME}/decide",
     {"unit": "u", "features": {**features(1)[0], "age": "old"}}, 422, "features.age"),
    ("categorical feature as list", "POST", f"/v1/experiments/{NAME}/decide",
     {"unit": "u", "features": {**features(1)[0], "platform": [1]}}, 422, "features.platform"),
    ("unknown outcome", "POST", f"/v1/experiments/{NAME}/log",
     {"unit": "u0", "outcome": "clicks", "value": 1, "event_id": "x"}, 422, "unknown outcome"),
    ("value not a number", "POST", f"/v1/experiments/{NAME}/log",
     {"unit": "u0", "outcome": "engagement", "value": "high", "event_id": "x"}, 422, "value"),
    ("outcome for a unit never decided", "POST", f"/v1/experiments/{NAME}/log",
     {"unit": "ghost", "outcome": "engagement", "value": 1, "event_id": "x"}, 422,
     "Call decide"),
    ("holdout outside 2-5%", "POST", f"/v1/experiments/{NAME}/launch",
     {"version": 1, "holdout": 0.2}, 422, "holdout"),
    ("launch a version that is not a policy", "POST", f"/v1/experiments/{NAME}/launch",
     {"version": 1}, 422, "version"),
    ("create with a bad spec", "POST", "/v1/experiments",
     {"spec": {"name": "x", "outcomes": []}}, 422, "spec"),
    ("create with holdout 10%", "POST", "/v1/experiments",
     {"spec": {**spec_dict(), "name": "other"}, "holdout": 0.1}, 422, "holdout"),
    ("duplicate experiment", "POST", "/v1/experiments", {"spec": spec_dict()}, 409, "exists"),
    ("unknown job kind", "POST", f"/v1/experiments/{NAME}/jobs", {"kind": "dance"}, 422,
     "kind"),
    ("tune before optimize", "POST", f"/v1/experiments/{NAME}/tune", {}, 409, "optimize"),
]


def test_bad_requests(live: tuple[Any, px.Client]) -> None:
    """Every bad request gets its 4xx, names the field and the fix, and changes nothing."""
    srv, admin = live
    admin.decide(NAME, "u0", features(1)[0])
    before = admin.experiment(NAME)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    wrong = []
    for label, method, path, body, status, words in BAD:
        r = httpx.request(method, srv.url + path, json=body, headers=headers)
        if r.status_code != status or words not in r.json().get("detail", ""):
            wrong.append((label, r.status_code, r.text))
    assert not wrong
    after = admin.experiment(NAME)
    assert (after["events"], after["assignments"], after["phase"]) == (
        before["events"], before["assignments"], before["phase"])


def test_decide_in_stopped_phase_is_refused(live: tuple[Any, px.Client]) -> None:
    _, admin = live
    admin.set_phase(NAME, "stopped")
    with pytest.raises(ServiceError) as info:
        admin.decide(NAME, "u1", features(1)[0])
    assert info.value.status == 409 and "phase 'stopped'" in info.value.message


def test_sticky_uniform_and_stable_across_restart_and_processes(
    db_url: str, servers: Any
) -> None:
    a = servers(db_url)
    admin = client(a.url, ADMIN)
    admin.create_experiment(spec_dict(), salt="fixed-salt-0002")
    feats = features(3000, seed=1)
    first = admin.decide_batch(NAME, [(f"u{i}", f) for i, f in enumerate(feats)])
    counts = np.bincount([d.treatment_index for d in first], minlength=3)
    # uniform: each arm's count is Binomial(3000, 1/3), sd 25.8; allow 4 sd
    assert np.all(np.abs(counts - 1000) < 4 * 25.8), counts
    assert all(d.propensity == pytest.approx(1 / 3) for d in first)
    # sticky: asking again (with other features) returns the first decision
    again = admin.decide(NAME, "u7", feats[8])
    assert again.treatment == first[7].treatment
    # a restart after kill -9 keeps every decision
    a.kill(signal.SIGKILL)
    a2 = servers(db_url, port=a.port)
    after = client(a2.url, ADMIN).decide_batch(NAME, [(f"u{i}", feats[i]) for i in range(300)])
    assert [d.treatment for d in after] == [d.treatment for d in first[:300]]
    # two processes deciding the same new units at once agree (hash + first write wins)
    b = servers(db_url)
    new = [(f"n{i}", f) for i, f in enumerate(features(400, seed=2))]
    results: dict[str, list[Any]] = {}

    def run(name: str, url: str) -> None:
        with px.Client(url, ADMIN) as c:
            results[name] = [d for j in range(0, 400, 50) for d in c.decide_batch(NAME, new[j:j + 50])]

    threads = [threading.Thread(target=run, args=(n, u)) for n, u in (("a", a2.url), ("b", b.url))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [d.treatment for d in results["a"]] == [d.treatment for d in results["b"]]
    assert admin_count(a2.url, "randomize") == 3400


def admin_count(url: str, phase: str) -> int:
    return int(client(url, ADMIN).experiment(NAME)["assignments"][phase])


def test_logging_is_idempotent(live: tuple[Any, px.Client]) -> None:
    _, admin = live
    admin.decide_batch(NAME, [(f"u{i}", f) for i, f in enumerate(features(10))])
    events = [{"unit": f"u{i}", "outcome": "engagement", "value": float(i), "event_id": f"e{i}"}
              for i in range(10)]
    assert admin.log_batch(NAME, events) == {"accepted": 10, "duplicates": 0}
    # a retried batch, plus a duplicate inside one batch
    assert admin.log_batch(NAME, events[:5] + [events[0]]) == {"accepted": 0, "duplicates": 6}
    assert admin.log(NAME, "u3", "engagement", 3.0, "e3") == {"accepted": 0, "duplicates": 1}
    exp = admin.experiment(NAME)
    assert exp["events"] == 10 and exp["duplicates"] == 7


def test_acknowledged_events_survive_kill_9(db_url: str, servers: Any) -> None:
    srv = servers(db_url)
    admin = client(srv.url, ADMIN)
    admin.create_experiment(spec_dict(), salt="fixed-salt-0003")
    admin.decide_batch(NAME, [(f"u{i}", f) for i, f in enumerate(features(200))])
    acked: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with px.Client(srv.url, ADMIN, timeout=5) as c:
            j = 0
            while not stop.is_set() and j < 100_000:
                batch = [{"unit": f"u{(j + i) % 200}", "outcome": "engagement", "value": 1.0,
                          "event_id": f"k{j + i}"} for i in range(25)]
                try:
                    c.log_batch(NAME, batch)
                except (httpx.HTTPError, ServiceError):
                    return  # the server died mid-request: that batch was not acknowledged
                acked.extend(e["event_id"] for e in batch)
                j += 25

    th = threading.Thread(target=load)
    th.start()
    time.sleep(1.5)
    srv.kill(signal.SIGKILL)
    stop.set()
    th.join(timeout=30)
    assert len(acked) > 100  # the load was running when the server died
    store = EventStore(db_url)
    try:
        stored = store.event_ids(NAME)
    finally:
        store.close()
    assert set(acked) <= stored


def test_openapi_documents_every_endpoint(live: tuple[Any, px.Client]) -> None:
    srv, _ = live
    schema = httpx.get(f"{srv.url}/openapi.json").json()
    paths = schema["paths"]
    for path in ["/v1/experiments", "/v1/experiments/{name}/decide",
                 "/v1/experiments/{name}/decide/batch", "/v1/experiments/{name}/log",
                 "/v1/experiments/{name}/log/batch", "/v1/experiments/{name}/jobs",
                 "/v1/jobs/{job_id}", "/v1/experiments/{name}/tune",
                 "/v1/experiments/{name}/launch", "/v1/experiments/{name}/backtest",
                 "/v1/experiments/{name}/health", "/v1/experiments/{name}/tuning",
                 "/v1/keys"]:
        assert path in paths, path
        for op in paths[path].values():
            assert op.get("description") or op.get("summary")
    assert "DecisionOut" in schema["components"]["schemas"]


def test_a_job_cut_off_by_kill_9_is_reported_failed_after_restart(
    db_url: str, servers: Any
) -> None:
    srv = servers(db_url)
    admin = client(srv.url, ADMIN)
    admin.create_experiment(spec_dict(), salt="fixed-salt-0004")
    world_feats = features(3000, seed=5)
    admin.decide_batch(NAME, [(f"u{i}", f) for i, f in enumerate(world_feats)])
    job = admin.submit_job(NAME, "train", learner="auto", n_folds=3)
    srv.kill(signal.SIGKILL)  # before the fit can finish
    srv2 = servers(db_url, port=srv.port)
    after = client(srv2.url, ADMIN).job(int(job["id"]))
    assert after["status"] == "failed" and "submit the job again" in after["error"]
