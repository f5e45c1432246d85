"""Outcome windows and aggregations in the service (spec keys ``aggregate`` and ``window``).

Events logged at chosen times (before the exposure, at it, inside and outside a
7-day window, several per unit, some without a time) give each unit's value by
every aggregation; each is checked against an independent computation (a plain
loop over the events) through the HTTP API, the training log, the backtest and
the dashboard, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pexkit.policy.linear import LinearPolicy
from pexkit.report.scorecard import fmt_interval
from pexkit.service.core import DecisionService
from pexkit.service.outcomes import EVENT_COLUMNS, aggregate_events
from pexkit.service.training import training_data
from pexkit.store import schema as t
from pexkit.store.db import EventStore

from .conftest import ADMIN, client

NAME = "windows"
WEEK = timedelta(days=7)
RULES = {"clicks": "sum", "opens": "count", "bought": "any", "top": "max", "state": "last"}
SPEC: dict[str, Any] = {
    "name": NAME,
    "treatment": {"column": "arm", "arms": ["a", "b"]},
    "outcomes": [{"name": o, "aggregate": a, "window": "7d"} for o, a in RULES.items()]
    + [{"name": "total", "goal": "maximize"}],  # sum, no window: every event after exposure
    "features": {"numeric": ["x"]},
}
TRACKED = "later"
OUTCOMES = [*RULES, "total", TRACKED]
# event times after each unit's exposure: before it, at it, inside, at the window's end, after
OFFSETS = [timedelta(days=-1), timedelta(0), timedelta(hours=1), timedelta(days=3),
           timedelta(days=6, hours=23), WEEK, timedelta(days=8)]


def expected(events: list[dict[str, Any]], exposure: dict[str, datetime],
             received: datetime) -> pd.DataFrame:
    """Per unit, each outcome's value, by a loop over the events (independent of pexkit)."""
    out = pd.DataFrame(0.0, index=sorted(exposure), columns=OUTCOMES)
    for unit, start in exposure.items():
        for o in OUTCOMES:
            counted = []
            for e in events:
                if e["unit"] != unit or e["outcome"] != o:
                    continue
                at = e.get("time") or max(received, start)
                if start <= at and (o not in RULES or at < start + WEEK):
                    counted.append((at, e["event_id"], e["value"]))
            if not counted:
                continue
            values = [v for _, _, v in counted]
            agg = RULES.get(o, "sum")
            out.loc[unit, o] = {"sum": sum(values), "count": len(values), "any": 1.0,
                                "max": max(values), "last": max(counted)[2]}[agg]
    return out


def test_aggregate_events_against_a_loop() -> None:
    rng = np.random.default_rng(3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    exposure = {f"u{i}": start + timedelta(hours=int(h))
                for i, h in enumerate(rng.integers(0, 48, 30))}
    received = start + timedelta(days=2)  # untimed events: inside the window
    events = []
    for k in range(600):
        unit = f"u{rng.integers(30)}"
        ev: dict[str, Any] = {"unit": unit, "outcome": OUTCOMES[k % len(OUTCOMES)],
                              "value": float(rng.integers(-3, 6)), "event_id": f"e{k:04d}"}
        if k % 5:
            ev["time"] = exposure[unit] + OFFSETS[int(rng.integers(len(OFFSETS)))]
        events.append(ev)
    # two events at the same time: 'last' takes the later event_id
    events += [{"unit": "u0", "outcome": "state", "value": 7.0, "event_id": "e9999",
                "time": exposure["u0"] + timedelta(days=6, hours=23, minutes=30)},
               {"unit": "u0", "outcome": "state", "value": 8.0, "event_id": "e9998",
                "time": exposure["u0"] + timedelta(days=6, hours=23, minutes=30)}]
    frame = pd.DataFrame(
        [(0, e["unit"], e["outcome"], e["value"], e.get("time", received), "time" in e,
          e["event_id"]) for e in events], columns=EVENT_COLUMNS,
    )
    # stored times come back naive (SQLite) or aware (PostgreSQL): both are UTC
    frame["time"] = [x.replace(tzinfo=None) if i % 2 else x for i, x in enumerate(frame["time"])]
    exposures = pd.DataFrame({"epoch": 0, "unit": list(exposure),
                              "exposed_at": list(exposure.values())})
    rules: dict[str, Any] = {o: (RULES.get(o, "sum"), WEEK.total_seconds() if o in RULES
                                 else None) for o in OUTCOMES}
    got = aggregate_events(frame, exposures, rules).pivot_table(
        index="unit", columns="outcome", values="value", aggfunc="sum")
    got = got.reindex(index=sorted(exposure), columns=OUTCOMES).fillna(0.0)
    want = expected(events, exposure, received)
    pd.testing.assert_frame_equal(got, want, check_names=False)
    assert want.loc["u0", "state"] == 7.0


def _backdate(url: str, exposure: dict[str, datetime], epoch: int) -> None:
    """Move units' first exposures into the past (as if decided then)."""
    store = EventStore(url)
    try:
        with store.engine.begin() as conn:
            for unit, at in exposure.items():
                conn.execute(t.assignments.update().where(
                    (t.assignments.c.experiment == NAME) & (t.assignments.c.unit == unit)
                    & (t.assignments.c.epoch == epoch)).values(created_at=at))
    finally:
        store.close()


def _events(units: list[str], exposure: dict[str, datetime], seed: int,
            prefix: str) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    events: list[dict[str, Any]] = []
    for i, unit in enumerate(units):
        for o in OUTCOMES:
            if (i + len(o)) % 7 == 0:
                continue  # some units have no event of some outcomes
            picks = rng.choice(len(OFFSETS), size=int(rng.integers(1, 5)), replace=False)
            for j, p in enumerate(picks):
                at = exposure[unit] + OFFSETS[int(p)] + timedelta(seconds=j)
                events.append({"unit": unit, "outcome": o, "event_id": f"{prefix}{unit}:{o}:{j}",
                               "value": float(rng.integers(0, 9)) / 2, "time": at})
            if i % 3 == 0:  # logged without a time: when received, weeks after the exposure
                events.append({"unit": unit, "outcome": o, "event_id": f"{prefix}{unit}:{o}:now",
                               "value": 1.5})
    return events


def test_windows_through_the_api_training_log_and_backtest(db_url: str, servers: Any) -> None:
    srv = servers(db_url)
    api = client(srv.url, ADMIN, timeout=120)
    api.create_experiment(SPEC, tracking=[{"name": TRACKED}], salt="window-salt-0001")
    rng = np.random.default_rng(0)
    units = [f"u{i}" for i in range(60)]
    api.decide_batch(NAME, [(u, {"x": float(rng.normal())}) for u in units])
    start = datetime.now(UTC) - timedelta(days=40)
    exposure = {u: start + timedelta(hours=7 * i) for i, u in enumerate(units)}
    _backdate(srv.db, exposure, epoch=1)
    events = _events(units, exposure, seed=1, prefix="r:")
    first, rest = events[:5], events[5:]
    for e in first:  # one by one, a datetime or its text
        api.log(NAME, e["unit"], e["outcome"], e["value"], e["event_id"], time=e.get("time"))
    for j in range(0, len(rest), 300):
        api.log_batch(NAME, [{**e, "time": e["time"].isoformat()} if "time" in e else e
                             for e in rest[j:j + 300]])
    received = datetime.now(UTC)
    want = expected(events, exposure, received)
    assert (want["bought"] == 0).any() and (want["state"] > 0).any()
    assert (want["total"] > want["clicks"]).any()

    # event times that are not timezone-aware ISO-8601, or far ahead, are refused
    url = f"{srv.url}/v1/experiments/{NAME}/log"
    head = {"Authorization": f"Bearer {ADMIN}"}
    for bad in ("2026-01-01T00:00:00", "yesterday", "2026-13-01T00:00:00Z", 1767225600,
                "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", {"at": 1},
                (datetime.now(UTC) + timedelta(days=2)).isoformat()):
        r = httpx.post(url, headers=head, json={"unit": "u0", "outcome": "clicks", "value": 1,
                                                "event_id": "bad", "time": bad})
        assert r.status_code == 422 and "time" in r.json()["detail"], (bad, r.text)

    svc = DecisionService(EventStore(db_url))
    try:
        frame, _, outs = svc.unit_frame(NAME)
        got = frame.set_index("unit").loc[want.index, OUTCOMES]
        pd.testing.assert_frame_equal(got, want, check_names=False)
        log = training_data(svc, NAME)
        names = list(log.spec.outcome_names)
        trained = pd.DataFrame(log.outcomes, index=log.unit_ids, columns=names)
        pd.testing.assert_frame_equal(trained.loc[want.index], want[names],
                                      check_names=False)

        # launch the spec's utility policy on a small trained model; the backtest reads the
        # launched epoch's units, first exposed when decided there
        model = api.run_job(NAME, "train", learner="t", n_folds=2, base="lightgbm",
                            base_params={"n_estimators": 5})
        utility = LinearPolicy(svc.registry.effect_model(int(model["model_id"])).spec_)
        version = svc.store.add_policy(NAME, "linear", utility.to_dict(), model["model_id"],
                                       "utility")
        api.launch(NAME, version, holdout=0.05)
        launched = [f"v{i}" for i in range(160)] + units[:20]
        served = api.decide_batch(NAME, [(u, {"x": float(rng.normal())}) for u in launched])
        hold = {d.unit: d.holdout for d in served}
        assert 2 <= sum(hold.values()) < len(launched) - 2
        start2 = datetime.now(UTC) - timedelta(days=30)
        exposure2 = {u: start2 + timedelta(hours=i) for i, u in enumerate(launched)}
        _backdate(srv.db, exposure2, epoch=2)
        events2 = _events(launched, exposure2, seed=2, prefix="l:")
        # an event timed before a returning unit's launch exposure belongs to its first epoch
        back = {"unit": "u0", "outcome": "opens", "event_id": "late-report", "value": 1.0,
                "time": exposure["u0"] + timedelta(days=2)}
        for j in range(0, len(events2), 300):
            api.log_batch(NAME, [{**e, "time": e["time"].isoformat()} if "time" in e else e
                                 for e in events2[j:j + 300]])
        api.log(NAME, "u0", "opens", 1.0, "late-report", time=back["time"])
        earlier = [e for e in events2 if e["unit"] in exposure and "time" in e
                   and e["time"] < exposure2[e["unit"]]]
        assert earlier
        want1 = expected([*events, *earlier, back], exposure, received)
        want2 = expected([e for e in events2 if e not in earlier], exposure2, datetime.now(UTC))
        bt = api.backtest(NAME)
        rows = {r["outcome"]: r for r in bt["outcomes"]}
        for o in OUTCOMES:
            pol = want2.loc[[u for u in launched if not hold[u]], o]
            ho = want2.loc[[u for u in launched if hold[u]], o]
            assert rows[o]["n_policy"] == len(pol) and rows[o]["n_holdout"] == len(ho)
            assert rows[o]["policy_mean"] == pytest.approx(pol.mean(), abs=1e-12), o
            assert rows[o]["holdout_mean"] == pytest.approx(ho.mean(), abs=1e-12), o
        frame1, _, _ = svc.unit_frame(NAME, epoch=1)
        got1 = frame1.set_index("unit").loc[want1.index, OUTCOMES]
        pd.testing.assert_frame_equal(got1, want1, check_names=False)
        assert want1.loc["u0", "opens"] == want.loc["u0", "opens"] + 1
        assert (want1["total"] > want["total"]).any()  # untimed later events of epoch 1
        page = httpx.get(f"{srv.url}/experiments/{NAME}?key={ADMIN}", follow_redirects=True)
        assert page.status_code == 200
        bought = rows["bought"]  # the backtest scorecard's Change cell
        change = fmt_interval(bought["lift"], bought["always_valid_low"],
                              bought["always_valid_high"])[0]
        assert "<td class='sc-change sc-" in page.text and f">{change}</td>" in page.text
    finally:
        svc.close()


def test_without_windows_the_values_are_the_old_sums(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    svc = DecisionService(EventStore(url))
    try:
        spec = {**SPEC, "outcomes": [{"name": "clicks"}, {"name": "spend"}]}
        svc.create_experiment(spec, tracking=[{"name": TRACKED}])
        svc.decide(NAME, [{"unit": f"u{i}", "features": {"x": 0.1 * i}} for i in range(50)])
        rng = np.random.default_rng(5)
        svc.log(NAME, [{"unit": f"u{rng.integers(50)}", "outcome": o, "value": float(v),
                        "event_id": f"e{k}"}
                       for k, (o, v) in enumerate(zip(
                           rng.choice(["clicks", "spend", TRACKED], 2000),
                           rng.lognormal(size=2000), strict=True))])
        with svc.store.engine.connect() as conn:  # what the service read before windows
            sums = conn.execute(
                sa.select(t.outcomes.c.epoch, t.outcomes.c.unit, t.outcomes.c.outcome,
                          sa.func.sum(t.outcomes.c.value))
                .where((t.outcomes.c.experiment == NAME) & t.outcomes.c.epoch.in_([1]))
                .group_by(t.outcomes.c.epoch, t.outcomes.c.unit, t.outcomes.c.outcome)
            ).all()
        old = pd.DataFrame(sums, columns=["epoch", "unit", "outcome", "value"]).pivot(
            index="unit", columns="outcome", values="value")
        frame, _, outs = svc.unit_frame(NAME)
        got = frame.set_index("unit").loc[old.index, outs]
        assert (got.to_numpy() == old[outs].fillna(0.0).to_numpy()).all()  # exactly
    finally:
        svc.close()


def test_an_older_store_gains_the_event_time_column(db_url: str) -> None:
    store = EventStore(db_url)
    svc = DecisionService(store)
    try:
        svc.create_experiment(SPEC)
        svc.decide(NAME, [{"unit": "u1", "features": {"x": 1.0}}])
        with store.engine.begin() as conn:  # the store as the previous pexkit left it
            conn.exec_driver_sql("ALTER TABLE outcomes DROP COLUMN occurred_at")
            conn.execute(sa.text(
                "INSERT INTO outcomes (experiment, event_id, unit, epoch, outcome, value, "
                "created_at) VALUES (:e, 'old', 'u1', 1, 'clicks', 2.5, :at)"),
                {"e": NAME, "at": datetime.now(UTC)})
    finally:
        svc.close()
    svc = DecisionService(EventStore(db_url))
    try:
        cols = {c["name"] for c in sa.inspect(svc.store.engine).get_columns("outcomes")}
        assert "occurred_at" in cols
        svc.log(NAME, [{"unit": "u1", "outcome": "clicks", "value": 1.0, "event_id": "new",
                        "time": datetime.now(UTC).isoformat()}])
        frame, _, _ = svc.unit_frame(NAME)
        assert frame.loc[0, "clicks"] == 3.5 and frame.loc[0, "opens"] == 0.0
    finally:
        svc.close()
