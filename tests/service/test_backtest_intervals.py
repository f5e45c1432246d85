"""The launch backtest's interval on small and degenerate samples (no service needed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from pexkit.service.readouts import difference


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    lift = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    z = norm.ppf(0.975)
    return lift - z * se, lift + z * se


def test_no_significance_from_a_holdout_without_events() -> None:
    """400 policy units vs 10 holdout units, the same 2% event rate on both sides.

    In ~82% of draws the holdout has no event at all; Welch's variance is then the
    policy side's alone and it calls the difference significant. Agresti-Caffo's
    false-significance rate stays at the nominal 5% or below (4,000 draws: a rate
    of 5% is measured to +-0.7 points, so 6% is > 1 sd of slack).
    """
    rng = np.random.default_rng(0)
    false_ac = false_welch = 0
    draws = 4000
    for _ in range(draws):
        a = (rng.random(400) < 0.02).astype(float)
        b = (rng.random(10) < 0.02).astype(float)
        row = difference(a, b)
        assert row["interval"] == "agresti-caffo"
        false_ac += not (row["ci_low"] <= 0.0 <= row["ci_high"])
        lo, hi = welch(a, b)
        false_welch += not (lo <= 0.0 <= hi)
    assert false_ac / draws <= 0.06, false_ac / draws
    assert false_welch / draws >= 0.5, false_welch / draws


def test_agresti_caffo_covers_a_true_difference() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    draws = 2000
    for _ in range(draws):
        a = (rng.random(60) < 0.30).astype(float)
        b = (rng.random(40) < 0.15).astype(float)
        row = difference(a, b)
        hits += row["ci_low"] <= 0.15 <= row["ci_high"]
    # nominal 95%; 2,000 draws measure it to +-0.5 points
    assert 0.93 <= hits / draws <= 0.98, hits / draws


def test_continuous_metrics_keep_welch() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 2.0, 300), rng.normal(0.5, 1.0, 50)
    row = difference(a, b)
    assert row["interval"] == "welch"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(welch(a, b), rel=1e-12)
    assert row["lift"] == pytest.approx(a.mean() - b.mean(), rel=1e-12)


def test_always_valid_interval_survives_thirty_looks() -> None:
    """2,000 simulated launches with no effect (10% event rate, 20% holdout), read after every
    100 units for 30 looks: the share that ever looks significant.

    The confidence sequence's share must stay <= 5% (it was 1.8% when written; 2,000
    launches measure a 5% share to +-0.5 points); the fixed-sample interval read at every
    look (Welch) is wrong far more often (37% when written; > 15% is the bar).
    """
    rng = np.random.default_rng(0)
    runs, looks, per = 2000, 30, 100
    ever_cs = ever_fixed = 0
    for _ in range(runs):
        n = looks * per
        hold = rng.random(n) < 0.2
        y = (rng.random(n) < 0.1).astype(float)
        cs = fixed = False
        for look in range(1, looks + 1):
            a, b = y[: look * per][~hold[: look * per]], y[: look * per][hold[: look * per]]
            if len(b) < 2:
                continue
            row = difference(a, b)
            cs |= not (row["always_valid_low"] <= 0.0 <= row["always_valid_high"])
            lo, hi = welch(a, b)
            fixed |= not (lo <= 0.0 <= hi) if hi > lo else a.mean() != b.mean()
        ever_cs += cs
        ever_fixed += fixed
    assert ever_cs / runs <= 0.05, ever_cs / runs
    assert ever_fixed / runs > 0.15, ever_fixed / runs


def test_backtest_rows_add_cuped_for_outcomes_with_a_pre_column() -> None:
    import pandas as pd

    from pexkit.evaluation.cuped import adjusted_difference
    from pexkit.service.readouts import backtest_table

    rng = np.random.default_rng(5)
    n = 6000
    pre = rng.normal(2.0, 1.0, n)
    hold = rng.random(n) < 0.1
    visits = 0.9 * pre + 0.44 * rng.normal(size=n) + 0.05 * ~hold
    df = pd.DataFrame({"holdout": hold, "visits": visits, "clicks": rng.random(n),
                       "visits_last_month": pre})
    rows = {r["outcome"]: r for r in backtest_table(
        df, ["visits", "clicks"], {"visits": "maximize"}, {"visits": "visits_last_month",
                                                         "clicks": "absent_column"})}
    cuped = rows["visits"]["cuped"]
    ref = adjusted_difference(visits[~hold], pre[~hold, None], visits[hold], pre[hold, None])
    assert cuped["lift"] == pytest.approx(ref["lift"], rel=1e-12)
    # corr(pre, visits) = 0.9 / sqrt(0.81 + 0.19) ~ 0.90: about 81% of the variance goes
    assert cuped["variance_reduction"] == pytest.approx(0.81, abs=0.04)
    assert cuped["ci_high"] - cuped["ci_low"] < 0.6 * (rows["visits"]["ci_high"]
                                                      - rows["visits"]["ci_low"])
    assert "not among the features" in rows["clicks"]["cuped"]["error"]
