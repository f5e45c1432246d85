"""Live monitoring's computations (pexkit.service.monitoring): PSI against hand
computations, the sample-ratio tests, outcome arrival and every flag, on seeded frames."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pexkit.service import monitoring as m

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ARMS = ["control", "light", "heavy"]


def hand_psi(e: list[float], a: list[float], floor: float = 1e-4) -> float:
    total = 0.0
    for x, y in zip(e, a, strict=True):
        x, y = max(x, floor), max(y, floor)
        total += (y - x) * math.log(y / x)
    return total


def test_psi_of_identical_samples_is_zero() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    assert m.numeric_psi(x, x)["psi"] == pytest.approx(0.0, abs=1e-12)
    levels = rng.choice(["a", "b", "c"], 4000)
    assert m.categorical_psi(levels, levels)["psi"] == pytest.approx(0.0, abs=1e-12)
    # two draws of one distribution: sampling noise only, far below "moderate"
    assert m.numeric_psi(x, rng.normal(size=4000))["psi"] < 0.02


def test_psi_of_a_shifted_normal_is_an_alert() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=4000)
    shifted = m.numeric_psi(ref, rng.normal(1.0, 1.0, size=4000))["psi"]
    assert shifted > 0.5 and m.psi_status(shifted) == "alert"
    small = m.numeric_psi(ref, rng.normal(0.1, 1.0, size=4000))["psi"]
    assert small < m.PSI_MODERATE < shifted


def test_numeric_psi_matches_a_hand_computation() -> None:
    # deciles of 1..10 (linear interpolation) are 1.9, 2.8, ..., 9.1: one value per bin
    ref = np.arange(1.0, 11.0)
    live = np.array([1, 1, 1, 1, 1, 10, 10, 10, 10, 10, np.nan, np.nan], dtype=float)
    res = m.numeric_psi(ref, live)
    assert [b["bin"] for b in res["bins"]][:2] == ["<= 1.9", "(1.9, 2.8]"]
    assert res["bins"][-1]["bin"] == m.MISSING  # live has missing values: a bin of its own
    e = [0.1] * 10 + [0.0]
    a = [5 / 12] + [0.0] * 8 + [5 / 12] + [2 / 12]
    assert res["psi"] == pytest.approx(hand_psi(e, a), rel=1e-12)
    assert [b["live"] for b in res["bins"]] == pytest.approx(a)


def test_categorical_psi_matches_a_hand_computation() -> None:
    ref = ["a"] * 6 + ["b"] * 3 + [None]
    live = ["a"] * 2 + ["b"] * 4 + ["zzz"] * 2 + [None] * 2
    res = m.categorical_psi(ref, live)
    assert [b["bin"] for b in res["bins"]] == ["a", "b", m.UNSEEN, m.MISSING]
    assert res["psi"] == pytest.approx(hand_psi([0.6, 0.3, 0.0, 0.1], [0.2, 0.4, 0.2, 0.2]))
    assert m.psi_from_counts([50, 50], [80, 20]) == pytest.approx(
        0.3 * math.log(0.8 / 0.5) + 0.3 * math.log(0.5 / 0.2))


def test_ratio_test_is_pearsons_chi_square() -> None:
    res = m.ratio_test({"a": 330, "b": 300, "c": 370}, {"a": 1, "b": 1, "c": 1})
    chi2, p = stats.chisquare([330, 300, 370])
    assert res.chi2 == pytest.approx(chi2) and res.p_value == pytest.approx(p)
    assert not res.mismatch
    hold = m.ratio_test({"holdout": 80, "served": 920}, {"holdout": 0.03, "served": 0.97})
    assert hold.expected == pytest.approx({"holdout": 30.0, "served": 970.0})
    assert hold.mismatch


# ---------------------------------------------------------------- the report on seeded frames
def frames(
    n: int = 3000, seed: int = 0, *, skew: bool = False, shift: bool = False,
    stop_events: bool = False, holdout_heavy: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A launched epoch: decisions over the last 3 hours, events a few minutes after each."""
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"age": rng.normal(40, 10, n), "platform": rng.choice(
        ["ios", "android", "web"], n, p=[0.4, 0.4, 0.2]).astype(object)})
    live = pd.DataFrame({"age": rng.normal(40 + 15 * shift, 10, n), "platform": rng.choice(
        ["ios", "android", "web"], n, p=[0.4, 0.4, 0.2]).astype(object)})
    at = [NOW - timedelta(minutes=180 * (1 - i / n)) for i in range(n)]
    hold = rng.random(n) < (0.2 if holdout_heavy else 0.03)
    treatment = rng.integers(0, 3, n)
    if skew:
        treatment = np.where(rng.random(n) < 0.4, 0, treatment)
    decisions = pd.DataFrame({
        "unit": [f"u{i}" for i in range(n)], "treatment": treatment,
        "arm": np.where(hold, "holdout", "policy"), "holdout": hold, "phase": "launched",
        "created_at": at, **live,
    })
    ev_at = pd.Series(at) + pd.Timedelta(minutes=5)
    keep = ev_at <= NOW
    if stop_events:  # the outcome pipeline died 90 minutes ago
        keep &= ev_at <= NOW - timedelta(minutes=90)
    events = pd.DataFrame({"unit": decisions["unit"][keep], "created_at": ev_at[keep]})
    return decisions, events, ref


def report(decisions: pd.DataFrame, events: pd.DataFrame, ref: pd.DataFrame,
           jobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return m.health(
        phase="launched", epoch=3, arms=ARMS, tune_arms=[], holdout=0.03, explore=0.0,
        numeric=["age"], categorical=["platform"], decisions=decisions, events=events,
        jobs=jobs or [], reference=ref, model_id=7, now=NOW,
    )


def flags(rep: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["status"] for f in rep["flags"]}


JOBS_OK = [{"id": 1, "kind": "train", "status": "failed", "error": "boom"},
           {"id": 2, "kind": "train", "status": "succeeded", "error": None}]


def test_a_healthy_epoch_has_only_ok_flags() -> None:
    rep = report(*frames(), jobs=JOBS_OK)
    assert flags(rep) == dict.fromkeys(
        ["assignment_ratio", "holdout_share", "feature_drift", "missing_outcomes",
         "outcomes_stopped", "failed_jobs"], "ok")
    assert rep["status"] == "ok"
    dec = rep["traffic"]["decisions"]
    # 3000 decisions evenly over 180 minutes: ~16.7 a minute, recently and since the start
    assert dec["total"] == 3000 and dec["per_minute_window"] == pytest.approx(3000 / 180, rel=0.02)
    assert dec["per_minute_since_start"] == pytest.approx(3000 / 180, rel=0.02)
    assert rep["outcomes"]["share_without_events"] == 0.0  # every unit past the grace period
    assert rep["jobs"]["failed"] == 1 and rep["jobs"]["latest_failed"] == []
    for f in rep["flags"]:
        assert f["reason"] and f["fix"]


def test_each_problem_raises_its_flag() -> None:
    base = flags(report(*frames(skew=True)))
    assert base["assignment_ratio"] == "alert" and base["holdout_share"] == "ok"
    assert flags(report(*frames(holdout_heavy=True)))["holdout_share"] == "alert"
    drift = report(*frames(shift=True))
    assert flags(drift)["feature_drift"] == "alert"
    assert drift["drift"]["features"][0]["feature"] == "age"  # most drifted first
    assert next(f for f in drift["flags"] if f["name"] == "feature_drift")["reason"].count(
        "age (PSI") == 1
    stopped = report(*frames(stop_events=True))
    assert flags(stopped)["outcomes_stopped"] == "alert"
    assert flags(stopped)["missing_outcomes"] == "warn"  # the later half misses its events
    arrival = stopped["outcomes"]
    assert arrival["later_half_share"] > arrival["earlier_half_share"] + 0.2
    jobs = [*JOBS_OK, {"id": 3, "kind": "train", "status": "failed", "error": "disk full"}]
    rep = report(*frames(), jobs=jobs)
    assert flags(rep)["failed_jobs"] == "warn" and "disk full" in rep["flags"][-1]["reason"]
    assert rep["status"] == "warn"


def test_grace_period_and_small_samples_do_not_alarm() -> None:
    decisions, events, ref = frames()
    # units decided in the last 60 minutes may still be waiting for their events
    young = decisions[decisions["created_at"] > NOW - timedelta(minutes=60)]
    rep = report(decisions, events[~events["unit"].isin(young["unit"])], ref)
    assert rep["outcomes"]["share_without_events"] == 0.0
    assert rep["outcomes"]["eligible_units"] == len(decisions) - len(young)
    # 200 shifted decisions: PSI is reported but too noisy to flag
    few, ev_few, ref2 = frames(n=200, shift=True)
    rep = report(few, ev_few, ref2)
    assert rep["drift"]["features"][0]["psi"] > m.PSI_ALERT
    assert flags(rep)["feature_drift"] == "ok" and "Only 200" in rep["flags"][2]["reason"]
    # nothing decided yet
    empty = report(decisions.iloc[:0], events.iloc[:0], ref)
    assert set(flags(empty).values()) == {"ok"}
