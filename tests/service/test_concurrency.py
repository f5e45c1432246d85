"""Two server processes, concurrent jobs and phase changes over one store: no lost update.

Before the state was typed and swapped atomically, each of these lost an update:
launching while an optimize job ran dropped the launch epoch; a train job on one
server during an optimize on another put the old model back; and 20 simultaneous
phase calls, all answered 200, moved the epoch by 1-3 instead of 20.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import pexkit as px
from pexkit.simulate.scenarios import NotificationsScenario

from .conftest import ADMIN, client

NAME = "race"
FAST = {"learner": "t", "n_folds": 2, "base_params": {"n_estimators": 20, "num_leaves": 7}}


def _populate(api: Any, n: int = 900) -> None:
    spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
    spec["name"] = NAME
    api.create_experiment(spec)
    sc = NotificationsScenario()
    rng = np.random.default_rng(4)
    feats = sc.features(n, rng)
    ds = api.decide_batch(NAME, [(f"u{i}", r) for i, r in enumerate(feats.to_dict("records"))])
    t = np.array([d.treatment_index for d in ds])
    y = sc.draw(sc.means(feats)[np.arange(n), t, :], rng, feats)
    events = [{"unit": f"u{i}", "outcome": o, "value": float(y[i, m]), "event_id": f"u{i}:{o}"}
              for i in range(n) for m, o in enumerate(["engagement", "unsubscribe", "revenue"])]
    api.log_batch(NAME, events)


def _wait(api: Any, job_id: int) -> dict[str, Any]:
    import time

    for _ in range(1200):
        job = api.job(job_id)
        if job["status"] in ("succeeded", "failed"):
            assert job["status"] == "succeeded", job["error"]
            return dict(job["result"])
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.mark.slow
def test_two_servers_lose_no_update(db_url: str, servers: Any) -> None:
    a, b = servers(db_url), servers(db_url)
    api_a, api_b = client(a.url, ADMIN, timeout=300), client(b.url, ADMIN, timeout=300)
    _populate(api_a)
    first = api_a.run_job(NAME, "train", **FAST)["model_id"]

    # train on A while an optimize runs on B: the newer model stays
    opt = api_b.submit_job(NAME, "optimize", budget=300, q=2)
    second = api_a.run_job(NAME, "train", **{**FAST, "random_state": 1})["model_id"]
    _wait(api_b, opt["id"])
    exp = api_a.experiment(NAME)
    assert second != first and exp["model_id"] == second
    assert len(exp["candidates"]) >= 2  # and optimize's own result is kept too

    # 20 simultaneous phase calls through both servers: 20 epochs, none lost
    epoch0 = exp["epoch"]
    apis = [client(s.url, ADMIN) for s in (a, b) for _ in range(10)]
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda api: api.set_phase(NAME, "randomize"), apis))
    assert api_b.experiment(NAME)["epoch"] == epoch0 + 20

    # launch on A while an optimize runs on B: the launch survives the job's update
    version = next(p["version"] for p in api_a.policies(NAME) if p["kind"] == "linear")
    opt = api_b.submit_job(NAME, "optimize", budget=300, q=2)
    api_a.launch(NAME, version)
    _wait(api_b, opt["id"])
    exp = api_b.experiment(NAME)
    assert exp["phase"] == "launched" and exp["launched_version"] == version
    assert api_b.backtest(NAME)["version"] == version  # not 409 "has not been launched"

    # a phase change on B takes effect at once on A (A's cached state is stale)
    feats = NotificationsScenario().features(1, np.random.default_rng(9)).to_dict("records")[0]
    assert api_a.decide(NAME, "late-1", feats).phase == "launched"
    api_b.set_phase(NAME, "stopped")
    with pytest.raises(px.ServiceError) as err:
        api_a.decide(NAME, "late-2", feats)
    assert err.value.status == 409
