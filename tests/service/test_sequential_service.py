"""Sequential experiments through real servers (/v1/sequential): uniform decisions before a
launch, a launched offline agent served epsilon-greedily, rewards attached to decisions, and
the exported log read back by TransitionLog and evaluated; a closed loop against the
simulator's ground truth; refusals."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.client import ServiceError
from pexkit.sequential.agents import OfflineAgent
from pexkit.sequential.serving import ServedAgent
from pexkit.simulate.sequential import _Users

from .conftest import ADMIN, client

NAME = "notif-seq"
SALT = "fixed-salt-0001"
EPS = 0.2


def _sd(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / n))


@pytest.fixture(scope="module")
def world() -> tuple[Any, OfflineAgent]:
    """A small simulated log (250 users x 8 days) and a small FQI agent trained on it."""
    sim = px.simulate("notification-volume", n_units=250, seed=0, horizon=8)
    agent = OfflineAgent("fqi", iterations=3, rounds=20, min_data_in_leaf=20).fit(
        sim.log, progress=False
    )
    return sim, agent


def test_round_trip(db_url: str, servers: Any, world: tuple[Any, OfflineAgent]) -> None:
    sim, agent = world
    spec = sim.spec
    api = client(servers(db_url).url)
    made = api.create_sequential(NAME, spec, epsilon=EPS, salt=SALT)
    assert made["live_version"] == 1 and made["spec"]["propensity"] == "p_logged"
    frame = sim.frame.reset_index(drop=True)
    cols = list(spec.state_columns)
    records = frame[cols].to_dict("records")
    units, times = frame["user"].astype(str).tolist(), frame["t"].tolist()
    first, rest = np.flatnonzero(frame["t"] == 0), np.flatnonzero(frame["t"] > 0)

    # before a launch: the uniform random policy (pure exploration, propensity 1/A)
    pre = api.decide_sequential_batch(NAME, [(units[i], times[i], records[i]) for i in first])
    assert {(d.version, d.propensity, d.explored) for d in pre} == {(1, 0.5, True)}
    sends = np.mean([d.action_index for d in pre])
    assert abs(sends - 0.5) < 4.5 * _sd(0.5, len(pre))  # independent hashes: 4.5 binomial SDs

    raw = agent.to_dict()  # a NaN in the training record is stored as null (PostgreSQL's JSON)
    raw["summary"] = {**raw["summary"], "final_loss": float("nan")}
    r = httpx.post(
        f"{api.base_url}/v1/sequential/{NAME}/launch",
        timeout=60,
        content=json.dumps({"agent": raw}),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    launched = r.json()
    assert launched["live_version"] == 2
    assert [v["kind"] for v in launched["versions"]] == ["uniform", "agent"]
    ds = api.decide_sequential_batch(NAME, [(units[i], times[i], records[i]) for i in rest])
    assert {d.version for d in ds} == {2}
    idx = np.array([d.action_index for d in ds])
    explored = np.array([d.explored for d in ds])
    states = frame.loc[rest, cols]
    # where it did not explore, the agent's greedy action; it explored an epsilon share: the
    # hash of (salt, unit, time) is uniform and independent across keys, so the count is
    # Binomial(n, epsilon); 4.5 SDs (two-sided chance ~7e-6) holds for any salt
    assert (idx[~explored] == agent.choose(states)[~explored]).all()
    assert abs(explored.mean() - EPS) < 4.5 * _sd(EPS, len(ds))
    assert abs(idx[explored].mean() - 0.5) < 4.5 * _sd(0.5, int(explored.sum()))
    probs = agent.probabilities(states, EPS)[np.arange(len(idx)), idx]
    assert np.abs(probs - np.array([d.propensity for d in ds])).max() <= 1e-12
    # the service and the in-process ServedAgent (same salt) make the same decisions
    local = ServedAgent(agent, epsilon=EPS, salt=SALT).decisions(
        [units[i] for i in rest], [times[i] for i in rest], [records[i] for i in rest]
    )
    assert [(d.action_index, d.propensity) for d in local] == [
        (d.action_index, d.propensity) for d in ds
    ]

    # a repeated (unit, time) gets its stored decision, whatever state it is sent with
    k = int(rest[5])
    again = api.decide_sequential(NAME, units[k], float(times[k]), {**records[k], "fatigue": 99.0})
    assert again == ds[5]
    assert api.decide_sequential(NAME, units[0], 0, records[0]) == pre[0]  # still version 1

    # rewards: every decision's sessions and pushes, done on the churned ones
    events = []
    for i in range(len(frame)):
        for reward in ("sessions", "pushes"):
            events.append(
                {
                    "unit": units[i],
                    "time": times[i],
                    "reward": reward,
                    "value": float(frame.loc[i, reward]),
                    "event_id": f"{i}:{reward}",
                    "done": bool(frame.loc[i, "churned"]) and reward == "sessions",
                }
            )
    assert api.log_sequential_batch(NAME, events) == {"accepted": len(events), "duplicates": 0}
    assert api.log_sequential_batch(NAME, events[:50]) == {"accepted": 0, "duplicates": 50}
    extra = {
        "unit": units[k],
        "time": times[k],
        "reward": "sessions",
        "value": 1.0,
        "event_id": "late-visit",
    }
    assert api.log_sequential(NAME, **extra)["accepted"] == 1
    assert api.log_sequential(NAME, **extra) == {"accepted": 0, "duplicates": 1}  # retried
    assert api.sequential(NAME)["reward_events"] == len(events) + 1

    # the export: the spec's columns, one row per decision, in TransitionLog's shape
    out = api.sequential_log(NAME)
    assert list(out.columns) == [
        spec.unit,
        spec.time,
        spec.action,
        "p_logged",
        *cols,
        "sessions",
        "pushes",
        "churned",
    ]
    assert len(out) == len(frame)
    merged = out.merge(frame.assign(user=units), on=["user", "t"], suffixes=("", "_sent"))
    assert len(merged) == len(frame)
    expected_sessions = merged["sessions_sent"] + (
        (merged["user"] == units[k]) & (merged["t"] == times[k])
    )
    assert (merged["sessions"] == expected_sessions).all()
    assert (merged["pushes"] == merged["pushes_sent"]).all()
    assert (merged["churned"] == merged["churned_sent"]).all()
    for col in cols:
        assert (merged[col] == merged[f"{col}_sent"]).all(), col
    served = {(units[i], times[i]): d for i, d in zip(rest, ds, strict=True)}
    served.update({(units[i], times[i]): d for i, d in zip(first, pre, strict=True)})
    got = [served[(u, t)] for u, t in zip(out["user"], out["t"], strict=True)]
    assert out["action"].tolist() == [d.action for d in got]
    assert out["p_logged"].tolist() == [d.propensity for d in got]
    log = px.TransitionLog.from_frame(out, px.SequentialSpec.from_dict(out.attrs["spec"]))
    assert log.n_decisions == len(frame) and int(log.done.sum()) == int(frame["churned"].sum())
    value = px.evaluate_sequential(agent, log, "pdis", epsilon=EPS, n_bootstrap=20)
    assert np.isfinite(value.to_frame()["value"]).all()


def test_closed_loop_with_ground_truth(
    tmp_path: Any, servers: Any, world: tuple[Any, OfflineAgent]
) -> None:
    """Simulated users served by HTTP for 5 days; the log is what happened, and its on-policy
    value matches the simulator's true value of the served policy."""
    sim, agent = world
    days, n, gamma = 5, 1000, sim.spec.gamma
    api = client(servers(f"sqlite:///{tmp_path / 'loop.db'}").url)
    api.create_sequential("loop", sim.spec, epsilon=EPS, salt=SALT)
    api.launch_sequential("loop", agent.to_dict())
    rng = np.random.default_rng(7)
    users = _Users(n, rng, days, days)
    alive = np.ones(n, dtype=bool)
    sent: list[dict[str, Any]] = []
    returns = np.zeros(n)
    for t in range(days):
        idx = np.flatnonzero(alive)
        states = users.states(idx)
        ds = api.decide_sequential_batch(
            "loop",
            [(f"user{i}", t, s) for i, s in zip(idx, states.to_dict("records"), strict=True)],
        )
        action = np.array([d.action_index for d in ds])
        p_visit, p_unsub = users.step_probabilities(idx, action)
        visit = (rng.random(idx.size) < p_visit).astype(np.float64)
        churn = rng.random(idx.size) < p_unsub
        events = []
        for j, i in enumerate(idx):
            events += [
                {
                    "unit": f"user{i}",
                    "time": t,
                    "reward": "sessions",
                    "value": visit[j],
                    "event_id": f"{i}:{t}:s",
                    "done": bool(churn[j]),
                },
                {
                    "unit": f"user{i}",
                    "time": t,
                    "reward": "pushes",
                    "value": float(action[j] > 0),
                    "event_id": f"{i}:{t}:p",
                },
            ]
            sent.append(
                {
                    "user": f"user{i}",
                    "t": t,
                    "action": ds[j].action,
                    "p": ds[j].propensity,
                    "sessions": visit[j],
                    "pushes": float(action[j] > 0),
                    "churned": int(churn[j]),
                }
            )
        api.log_sequential_batch("loop", events)
        returns[idx] += gamma**t * (visit - sim.push_cost * (action > 0))
        users.advance(idx, action, visit)
        alive[idx[churn]] = False
    out = api.sequential_log("loop")
    want = pd.DataFrame(sent).sort_values(["user", "t"], ignore_index=True)
    got = out.sort_values(["user", "t"], ignore_index=True)
    for a, b in [
        ("user", "user"),
        ("t", "t"),
        ("action", "action"),
        ("p", "p_logged"),
        ("sessions", "sessions"),
        ("pushes", "pushes"),
        ("churned", "churned"),
    ]:
        assert want[a].tolist() == got[b].tolist(), b
    log = px.TransitionLog.from_frame(out, sim.spec)
    value = px.evaluate_sequential(agent, log, "pdis", epsilon=EPS, n_bootstrap=50)
    # the served policy evaluated on its own log: every importance ratio is 1, so PDIS is the
    # users' mean discounted return
    assert value["utility"] == pytest.approx(returns.mean(), rel=1e-9, abs=1e-12)
    truth = px.simulate("notification-volume", n_units=10, seed=1, horizon=days).true_value(
        agent, n_units=4000, seed=3, epsilon=EPS
    )
    se = np.hypot(returns.std(ddof=1) / np.sqrt(n), truth.loc["utility", "se"])
    assert abs(value["utility"] - truth.loc["utility", "value"]) < 4.5 * se


def test_refusals(tmp_path: Any, servers: Any, world: tuple[Any, OfflineAgent]) -> None:
    """Every bad request gets its 4xx with the field and the fix, and changes nothing."""
    sim, agent = world
    srv = servers(f"sqlite:///{tmp_path / 'errors.db'}")
    api = client(srv.url)
    api.create_sequential(NAME, sim.spec_dict, salt=SALT)
    state = sim.frame[list(sim.spec.state_columns)].iloc[0].to_dict()
    api.decide_sequential(NAME, "u1", 0, state)
    raw = agent.to_dict()
    other_actions = {
        **raw,
        "spec": {**raw["spec"], "action": {"column": "action", "actions": ["none", "push"]}},
    }
    fewer = {
        **sim.spec_dict,
        "state": {"numeric": ["fatigue", "activity"], "categorical": ["platform"]},
    }
    small = (
        OfflineAgent("fqi", iterations=1, rounds=5, min_data_in_leaf=20)
        .fit(
            px.TransitionLog.from_frame(sim.frame, px.SequentialSpec.from_dict(fewer)),
            progress=False,
        )
        .to_dict()
    )
    base = f"/v1/sequential/{NAME}"
    bad = [
        (
            "unknown experiment",
            "POST",
            "/v1/sequential/nope/decide",
            {"unit": "u", "time": 0, "state": state},
            404,
            "POST /v1/sequential",
        ),
        (
            "missing state column",
            "POST",
            f"{base}/decide",
            {"unit": "u", "time": 1, "state": {"fatigue": 1.0}},
            422,
            "missing state column",
        ),
        (
            "numeric state as text",
            "POST",
            f"{base}/decide",
            {"unit": "u", "time": 1, "state": {**state, "fatigue": "high"}},
            422,
            "state.fatigue: expected a number",
        ),
        (
            "timestamp for a step",
            "POST",
            f"{base}/decide",
            {"unit": "u", "time": "2026-03-01T12:00:00Z", "state": state},
            422,
            "steps",
        ),
        (
            "reward not in the spec",
            "POST",
            f"{base}/log",
            {"unit": "u1", "time": 0, "reward": "clicks", "value": 1},
            422,
            "['sessions', 'pushes']",
        ),
        (
            "log for no decision",
            "POST",
            f"{base}/log",
            {"unit": "u1", "time": 1, "reward": "sessions", "value": 1},
            404,
            "Decide first",
        ),
        (
            "value without a reward",
            "POST",
            f"{base}/log",
            {"unit": "u1", "time": 0, "value": 1},
            422,
            "reward",
        ),
        (
            "other actions",
            "POST",
            f"{base}/launch",
            {"agent": other_actions},
            422,
            "its actions are ['none', 'push']",
        ),
        (
            "other state columns",
            "POST",
            f"{base}/launch",
            {"agent": small},
            422,
            "missing ['days_since_push'",
        ),
        (
            "not an agent",
            "POST",
            f"{base}/launch",
            {"agent": {"weights": [1, 2]}},
            422,
            "pexkit-offline-agent",
        ),
        ("no exploration", "POST", f"{base}/launch", {"agent": raw, "epsilon": 0}, 422, "epsilon"),
        (
            "estimated propensity",
            "POST",
            "/v1/sequential",
            {"name": "other", "spec": {**sim.spec_dict, "propensity": "estimate"}},
            422,
            "propensity",
        ),
        (
            "bad spec",
            "POST",
            "/v1/sequential",
            {"name": "other", "spec": {"unit": "u"}},
            422,
            "spec",
        ),
        (
            "duplicate",
            "POST",
            "/v1/sequential",
            {"name": NAME, "spec": sim.spec_dict},
            409,
            "exists",
        ),
    ]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    wrong = []
    for label, method, path, body, status, words in bad:
        r = httpx.request(method, srv.url + path, json=body, headers=headers, timeout=60)
        if r.status_code != status or words not in r.json().get("detail", ""):
            wrong.append((label, r.status_code, r.text[:300]))
    assert not wrong
    after = api.sequential(NAME)
    assert (after["live_version"], after["decisions"], after["reward_events"]) == (1, 1, 0)
    with pytest.raises(ServiceError) as err:
        client(srv.url, api.create_key(["decide"])).launch_sequential(NAME, agent)
    assert err.value.status == 403
    assert httpx.get(f"{srv.url}{base}/log").status_code == 401


def test_an_older_store_gains_the_sequential_tables(
    db_url: str, world: tuple[Any, OfflineAgent]
) -> None:
    """A store written before sequential experiments existed gets their tables at start."""
    import sqlalchemy as sa

    from pexkit.service.sequential import SequentialService
    from pexkit.store import schema as t
    from pexkit.store.db import EventStore

    sim, agent = world
    tables = [
        t.sequential_rewards,
        t.sequential_decisions,
        t.sequential_agents,
        t.sequential_experiments,
    ]
    store = EventStore(db_url)
    try:
        t.metadata.drop_all(store.engine, tables=tables)  # the store as the previous pexkit left it
        assert not {tb.name for tb in tables} & set(sa.inspect(store.engine).get_table_names())
    finally:
        store.close()
    store = EventStore(db_url)
    try:
        assert {tb.name for tb in tables} <= set(sa.inspect(store.engine).get_table_names())
        svc = SequentialService(store)
        svc.create("later", sim.spec_dict, epsilon=0.1, salt=SALT)
        svc.launch("later", agent.to_dict())
        state = sim.frame[list(sim.spec.state_columns)].iloc[0].to_dict()
        d = svc.decide("later", [{"unit": "u", "time": 0, "state": state}])[0]
        assert d["version"] == 2 and min(abs(d["propensity"] - p) for p in (0.95, 0.05)) < 1e-12
    finally:
        store.close()


def test_no_decision_after_a_units_end(db_url: str, world: tuple[Any, OfflineAgent]) -> None:
    """A terminal decision (done) ends the unit's episode: a later decision in it is refused
    (TransitionLog would refuse the whole export), and so is marking a decision done when the
    unit has later ones; after the spec's gap a new episode may start."""
    from pexkit.service.errors import ConflictError
    from pexkit.service.sequential import SequentialService
    from pexkit.store.db import EventStore

    sim, _ = world
    state = sim.frame[list(sim.spec.state_columns)].iloc[0].to_dict()
    store = EventStore(db_url)
    try:
        svc = SequentialService(store)
        svc.create("ends", sim.spec_dict, salt=SALT)
        svc.create("comeback", {**sim.spec_dict, "name": "comeback", "gap": 3}, salt=SALT)

        def decide(name: str, unit: str, t: int) -> dict[str, Any]:
            return svc.decide(name, [{"unit": unit, "time": t, "state": state}])[0]

        def end(name: str, unit: str, t: int) -> dict[str, int]:
            return svc.log(name, [{"unit": unit, "time": t, "done": True}])

        decide("ends", "u1", 0)
        decide("ends", "u1", 1)
        end("ends", "u1", 1)
        assert decide("ends", "u1", 1)["time"] == 1  # a retry of the last decision is fine
        with pytest.raises(ConflictError, match="ended its episode.*'gap'"):
            decide("ends", "u1", 2)
        decide("ends", "u2", 0)
        decide("ends", "u2", 1)
        with pytest.raises(ConflictError, match="decisions after 0 in the same episode"):
            end("ends", "u2", 0)
        end("ends", "u2", 1)
        decide("comeback", "u1", 0)
        decide("comeback", "u1", 1)
        end("comeback", "u1", 1)
        with pytest.raises(ConflictError, match=r"more than the spec's gap \(3\)"):
            decide("comeback", "u1", 4)
        decide("comeback", "u1", 5)  # 4 steps after the end: a new episode
        decide("comeback", "u1", 6)
        # the exported logs read back as transitions
        for name in ("ends", "comeback"):
            out = svc.export(name)
            frame = pd.DataFrame(out["rows"], columns=out["columns"])
            spec = px.SequentialSpec.from_dict(out["spec"])
            log = px.TransitionLog.from_frame(frame, spec)
            assert log.n_decisions == len(frame)
        assert px.TransitionLog.from_frame(  # u1's comeback is an episode of its own
            pd.DataFrame(out["rows"], columns=out["columns"]),
            px.SequentialSpec.from_dict(out["spec"])).n_episodes == 2
    finally:
        store.close()
