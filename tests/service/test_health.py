"""GET /v1/experiments/{name}/health and the dashboard's Health section, against a real
`pexkit serve` (SQLite): a healthy launch has only ok flags; then time passes, a client
calls decide only for some users (holdout units hashed to control) with a shifted
feature and logs no outcomes for them, and a job fails: each flag is raised, on the
endpoint and on the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from pexkit.client import ServiceError
from pexkit.serving.assign import bucket, uniform_arm
from pexkit.simulate.scenarios import NotificationsScenario
from pexkit.store.db import EventStore

from .conftest import ADMIN, Server, client
from .test_api import spec_dict
from .test_dashboard import ARGS, ARTIFACTS, CHROMIUM, open_page
from .test_phases import World

NAME = "notif"
SALT = "health-salt-0001"
HOLDOUT = 0.05
FLAGS = ["assignment_ratio", "holdout_share", "feature_drift", "missing_outcomes",
         "outcomes_stopped", "failed_jobs"]


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["status"] for f in report["flags"]}


def backdate(db: str, hours: float) -> None:
    """Time passes: every decision and event logged so far happened ``hours`` earlier.

    The stored text keeps its form (SQLite: the service writes decision times with
    their UTC offset, event times without).
    """
    store = EventStore(db)
    try:
        with store.engine.begin() as conn:
            for table, key in (("assignments", "epoch || ':' || unit"), ("outcomes", "event_id")):
                rows = conn.exec_driver_sql(
                    f"SELECT {key}, created_at FROM {table} WHERE experiment = ?", (NAME,)
                ).all()
                new = [((datetime.fromisoformat(at) - timedelta(hours=hours)).isoformat(
                    sep=" ", timespec="microseconds"), NAME, k) for k, at in rows]
                conn.exec_driver_sql(
                    f"UPDATE {table} SET created_at = ? WHERE experiment = ? AND {key} = ?", new)
    finally:
        store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("health")
    srv = Server(f"sqlite:///{tmp / 'events.db'}", tmp).start()
    try:
        prepare(srv)
    except BaseException:
        srv.kill()
        raise
    yield srv
    srv.kill()


def prepare(srv: Any) -> None:
    """A healthy launch, its health; then the problems, and the health again."""
    api = client(srv.url, ADMIN, timeout=120)
    api.create_experiment(spec_dict(), tracking=[{"name": "retention_90d"}], salt=SALT,
                          holdout=HOLDOUT)
    world = World(api, seed=11)
    world.run(1500)
    api.run_job(NAME, "train", learner="t", n_folds=2)
    api.run_job(NAME, "optimize", budget=30, q=1)
    version = next(p["version"] for p in api.policies(NAME) if p["label"].startswith("utility"))
    api.launch(NAME, version, holdout=HOLDOUT)
    world.run(2000)  # decisions and their outcomes, as they should be
    srv.healthy = api.health(NAME, grace_minutes=0)
    srv.healthy_default = api.health(NAME)

    # ... later, a client decides only for some users (holdout units hashed to control),
    # with a shifted feature, and logs no outcome for them: 1,700 units 90 minutes ago,
    # 300 more in the last minutes
    backdate(srv.db, hours=1.5)
    cands = (f"late{i}" for i in range(10**6))
    picked = [u for u in cands if bucket(SALT, "holdout", u) < HOLDOUT
              and uniform_arm(SALT, "holdout-arm", u, 3) == 0][:200]
    ids = picked + [f"shift{i}" for i in range(1800)]
    feats = NotificationsScenario().features(len(ids), np.random.default_rng(12))
    feats["age"] = feats["age"] + 25.0  # a new audience (or a unit change upstream)
    recs = list(zip(ids, feats.to_dict("records"), strict=True))
    api.decide_batch(NAME, recs[:1700])
    backdate(srv.db, hours=1.5)
    api.decide_batch(NAME, recs[1700:])
    with pytest.raises(ServiceError, match="failed"):  # a job that fails
        api.run_job(NAME, "distill", version=10**6)
    srv.broken = api.health(NAME)  # the defaults, as the dashboard shows them
    api.close()


def test_healthy_launch_has_only_ok_flags(served: Any) -> None:
    rep = served.healthy
    assert rep["name"] == NAME and rep["phase"] == "launched" and rep["status"] == "ok"
    assert statuses(rep) == dict.fromkeys(FLAGS, "ok"), rep["flags"]
    dec, ev = rep["traffic"]["decisions"], rep["traffic"]["events"]
    assert dec["total"] == 2000 and dec["last_window"] == 2000
    assert ev["total"] == 8000 and ev["per_minute_window"] == pytest.approx(8000 / 15)
    assert dec["per_minute_since_start"] > 0
    # the randomized parts were tested, and drift compared against the training log
    assert rep["assignment"]["holdout"]["p_value"] > 1e-3
    assert rep["assignment"]["tests"][0]["test"] == "treatments of holdout units"
    drift = rep["drift"]
    assert drift["n_training"] == 1500 and drift["n_live"] == 2000
    assert max(f["psi"] for f in drift["features"]) < 0.1
    assert {f["feature"] for f in drift["features"]} >= {"age", "platform", "prior_clicks"}
    assert rep["outcomes"]["share_without_events"] == 0.0
    # with the default grace period no unit is old enough to count as missing yet
    assert statuses(served.healthy_default) == dict.fromkeys(FLAGS, "ok")
    assert served.healthy_default["outcomes"]["eligible_units"] == 0


def test_broken_experiment_raises_each_flag(served: Any) -> None:
    rep = served.broken
    got = statuses(rep)
    assert got["assignment_ratio"] == "alert"
    assert got["holdout_share"] == "alert"
    assert got["feature_drift"] == "alert"
    assert got["outcomes_stopped"] == "alert"
    assert got["missing_outcomes"] == "warn"
    assert got["failed_jobs"] == "warn"
    assert rep["status"] == "alert"
    reasons = {f["name"]: f for f in rep["flags"]}
    assert "holdout units" in reasons["assignment_ratio"]["reason"]
    assert "age (PSI" in reasons["feature_drift"]["reason"]
    assert "platform" not in reasons["feature_drift"]["reason"]  # unshifted: not named
    assert "distill" in reasons["failed_jobs"]["reason"]
    assert all(f["fix"] != "None needed." for f in rep["flags"] if f["status"] != "ok")
    hold = rep["assignment"]["holdout"]
    assert hold["counts"]["holdout"] > 1.8 * hold["expected"]["holdout"]  # ~2x the 5%
    arrival = rep["outcomes"]
    assert arrival["eligible_units"] == 3700  # the 300 latest are in their grace period
    assert arrival["units_without_events"] == 1700 and arrival["events_in_stale_window"] == 0
    assert arrival["later_half_share"] > 0.9 and arrival["earlier_half_share"] == 0.0
    assert rep["traffic"]["decisions"]["last_window"] == 300
    assert rep["traffic"]["events"]["last_window"] == 0


def test_health_needs_a_read_key_for_the_experiment(served: Any) -> None:
    url = f"{served.url}/v1/experiments/{NAME}/health"
    assert httpx.get(url).status_code == 401
    admin = client(served.url, ADMIN)
    other = admin.create_key(["read"], experiments=["other"])
    assert httpx.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 403
    mine = admin.create_key(["read"], experiments=[NAME])
    r = httpx.get(url + "?window_minutes=60&stale_minutes=5",
                  headers={"Authorization": f"Bearer {mine}"}, timeout=60)
    assert r.status_code == 200 and r.json()["settings"]["window_minutes"] == 60
    r = httpx.get(url + "?grace_minutes=-1", headers={"Authorization": f"Bearer {mine}"})
    assert r.status_code == 422 and "grace_minutes" in r.json()["detail"]
    assert httpx.get(f"{served.url}/v1/experiments/nope/health",
                     headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 404


def test_dashboard_shows_the_flags(served: Any) -> None:
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `make test` installs it "
                    "(bash scripts/install-system.sh).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page, errors = open_page(browser, f"{served.url}/experiments/{NAME}?key={ADMIN}")
            page.wait_for_selector("#health")
            assert page.locator("#health-status").inner_text().lower() == "alert"
            for name, status in (("assignment_ratio", "alert"), ("holdout_share", "alert"),
                                 ("feature_drift", "alert"), ("outcomes_stopped", "alert"),
                                 ("missing_outcomes", "warn"), ("failed_jobs", "warn")):
                item = page.locator(f"#health li.flag.{status}[data-flag='{name}']")
                assert item.count() == 1, name
                text = item.inner_text()
                assert "Fix:" in text
            text = page.locator("#health").inner_text()
            assert "Sample ratio mismatch" in text and "age (PSI" in text
            assert "No outcome events in the last 30 minutes" in text
            # the colours follow the status
            colour = page.locator("#health li.flag.alert").first.evaluate(
                "e => getComputedStyle(e).borderLeftColor")
            assert colour == "rgb(179, 38, 30)"
            assert page.locator("#drift tbody tr").count() >= 5
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.locator("#health").screenshot(path=str(ARTIFACTS / "dashboard-health.png"))
            assert errors == []
            page.close()
        finally:
            browser.close()
