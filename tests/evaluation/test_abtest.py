"""The A/B readout (a spec without features) against independent answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

import pexkit as px


def _log(n: int, seed: int, effect: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.choice(["control", "a", "b"], n)
    return pd.DataFrame({
        "arm": arm,
        "y": rng.normal(size=n) + effect * (arm == "a"),
        "click": (rng.random(n) < 0.1 + 0.05 * (arm == "b")).astype(int),
    })


SPEC = px.ExperimentSpec(treatment="arm", arms=["control", "a", "b"],
                         outcomes=["y", {"name": "click", "goal": "maximize"}])


def test_spec_without_features_is_an_ab_readout_equal_to_welch() -> None:
    df = _log(3000, 0)
    table = px.ab_readout(px.LoggedData.from_frame(df, SPEC))
    for row in table.to_dict(orient="records"):
        a = df.loc[df.arm == row["treatment"], row["outcome"]].to_numpy(float)
        b = df.loc[df.arm == "control", row["outcome"]].to_numpy(float)
        assert row["estimate"] == pytest.approx(a.mean() - b.mean(), abs=1e-12)
        assert row["control_mean"] == pytest.approx(b.mean(), abs=1e-12)
        welch = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        # the influence-function SE is Welch's up to (n_k - 1) / n_k per arm
        assert row["se"] == pytest.approx(welch, rel=2e-3)
        t = stats.ttest_ind(a, b, equal_var=False)
        assert row["p_value"] == pytest.approx(t.pvalue, rel=0.02, abs=1e-6)
        assert (row["n_control"], row["n_treatment"]) == (len(b), len(a))


def test_ab_readout_covers_the_truth_at_the_nominal_rate() -> None:
    # 200 seeded experiments with a known effect of 0.3 on y: a 95% CI covers it in
    # 95% of them; 200 draws put 90.5-98.5% inside +-3.5 binomial SEs
    hits = 0
    for seed in range(200):
        table = px.ab_readout(px.LoggedData.from_frame(_log(600, 100 + seed), SPEC))
        row = table[(table.treatment == "a") & (table.outcome == "y")].iloc[0]
        hits += row["ci_low"] <= 0.3 <= row["ci_high"]
    assert 0.905 <= hits / 200 <= 0.985


def test_logged_propensities_weight_the_arm_means() -> None:
    # confounded assignment with known propensities: raw difference is biased,
    # the weighted readout recovers the true effect 1.0
    rng = np.random.default_rng(3)
    n = 20_000
    x = rng.normal(size=n)
    p1 = 1 / (1 + np.exp(-1.5 * x))
    t = (rng.random(n) < p1).astype(int)
    y = 2 * x + t + rng.normal(size=n)
    df = pd.DataFrame({"t": t, "y": y, "e": np.where(t == 1, p1, 1 - p1)})
    spec = px.ExperimentSpec(treatment="t", arms=[0, 1], outcomes=["y"], propensity="e")
    row = px.ab_readout(px.LoggedData.from_frame(df, spec)).iloc[0]
    raw = y[t == 1].mean() - y[t == 0].mean()
    assert raw > 2.0  # what a plain difference in means says
    assert row["ci_low"] <= 1.0 <= row["ci_high"]


def test_effect_model_refuses_a_spec_without_features_and_names_the_readout() -> None:
    data = px.LoggedData.from_frame(_log(500, 1), SPEC)
    with pytest.raises(px.InvalidDataError, match=r"px\.ab_readout"):
        px.EffectModel().fit(data)


def test_cli_analyze_without_features_writes_the_ab_summary(tmp_path: Path) -> None:
    df = _log(1200, 2)
    df.to_csv(tmp_path / "log.csv", index=False)
    raw = SPEC.to_dict()
    del raw["features"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    run = subprocess.run(
        [sys.executable, "-m", "pexkit.cli.main", "analyze", str(tmp_path / "log.csv"),
         "--spec", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "A/B readout" in run.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["readout"] == "ab" and len(summary["ab"]) == 4
    expected = px.ab_readout(px.LoggedData.from_frame(df, SPEC))
    assert summary["ab"][0]["estimate"] == pytest.approx(expected.iloc[0]["estimate"])
