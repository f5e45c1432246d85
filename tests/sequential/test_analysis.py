"""The whole sequential job on the simulator: held-out comparisons, the front, the CLI, the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pexkit as px
from pexkit.cli.main import app
from pexkit.sequential.analysis import analyze_sequential
from pexkit.sequential.front import sequential_front
from pexkit.sequential.selection import tune_agent

FAST = {"iterations": 15}  # fitted Q iteration, short: the tests check the plumbing and the truth


@pytest.fixture(scope="module")
def sim() -> px.SequentialSimulation:
    return px.simulate("notification-volume", n_units=1500, seed=3)


def test_analysis_compares_on_held_out_units_and_agrees_with_the_truth(
    sim: px.SequentialSimulation, tmp_path: Path
) -> None:
    res = analyze_sequential(sim.log, algorithm="fqi", estimator="smis", epsilon=0.05,
                             front=False, n_bootstrap=100, agent_options=FAST, out=tmp_path,
                             progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["trained_on_units"] + summary["estimated_on_units"] == 1500
    names = {row["policy"] for row in summary["policies"]}
    assert names == {"agent", "logging", "always none", "always send", "myopic"}
    # the agent really is better than the logging policy, in truth (rollouts)...
    truth = sim.true_value(res.agent, n_units=20_000, epsilon=0.05)["value"]
    logging = sim.true_value(sim.logging_policy, n_units=20_000)["value"]
    assert truth["utility"] > logging["utility"] + 0.05
    # ...than always-send and the true myopic rule, and it reaches 90% of the best simple rule
    # (threshold rules searched by brute force over the simulator, tests/sequential/test_simulator.py)
    from pexkit.simulate.sequential import always, threshold_rule

    always_send = sim.true_value(always(1), n_units=20_000)["value"]["utility"]
    myopic = sim.true_value(sim.true_myopic_policy(), n_units=20_000)["value"]["utility"]
    best_rule = sim.true_value(threshold_rule(1.0, 3, max_activity=0.3), n_units=20_000)["value"]
    assert truth["utility"] > max(always_send, myopic) + 0.1
    assert truth["utility"] >= 0.9 * best_rule["utility"]
    # ...and the held-out estimates say so too, with CIs that cover the true values
    comp = res.comparison().set_index(["policy", "reward"])
    gain = comp.loc[("agent", "utility")]
    assert gain["vs_logging"] > 0
    for policy, true in (("agent", truth), ("logging", logging)):
        row = comp.loc[(policy, "utility")]
        assert row["ci_low"] - 0.05 <= true["utility"] <= row["ci_high"] + 0.05, (policy, row, true)
    # the agent saved next to the summary serves the same choices
    loaded = px.OfflineAgent.load(tmp_path / "agent.json")
    states = sim.frame[list(sim.spec.state_columns)].head(500)
    np.testing.assert_array_equal(loaded.choose(states), res.agent.choose(states))
    html = (tmp_path / "report.html").read_text()
    assert "agent-table" in html and "comparison-table" in html
    # Plotly inlined once; nothing fetched from the network
    assert html.count("plotly.js v") == 1 and not re.search(r"<script[^>]+src=", html)


def test_front_over_reward_weights_trades_sessions_for_pushes(sim: px.SequentialSimulation) -> None:
    train, test = px.sequential.split_units(sim.log, 0.5, 0)
    weights = [{"sessions": 1.0, "pushes": w} for w in (0.0, 0.05, 0.3)]
    front = sequential_front(train, weights, algorithm="fqi", estimator="wpdis", eval_log=test,
                             n_bootstrap=50, agent_options=FAST, progress=False)
    pushes = [front.values[f"policy {i}"]["pushes"] for i in (1, 2, 3)]
    # a higher cost per push sends fewer pushes (the true push counts, by rollouts, agree)
    true_pushes = [float(sim.true_value(a, n_units=5000)["value"]["pushes"]) for a in front.agents[:3]]
    assert true_pushes[0] > true_pushes[1] > true_pushes[2]
    assert pushes[0] > pushes[2]
    assert front.hypervolume() > 0
    picked = front.select(2)
    assert len(picked) == 2 and all(front.on_front[i] for i in picked)
    d = front.to_dict()
    assert {p["label"] for p in d["points"]} >= {"logging", "always send", "always none"}


def test_tuning_chooses_by_held_out_estimates(sim: px.SequentialSimulation) -> None:
    sel = tune_agent(sim.log, {"gamma": [0.0, 0.9]}, algorithm="fqi", estimator="smis",
                     iterations=15, progress=False)
    table = sel.table
    assert len(table) == 2 and table["chosen"].sum() == 1
    # the myopic configuration (gamma 0) is worse in truth, and the estimates choose the other
    assert sel.best == {"gamma": 0.9}
    assert table.loc[table["gamma"] == 0.9, "utility"].item() > table.loc[table["gamma"] == 0.0, "utility"].item()


def test_cli_simulate_then_analyze(tmp_path: Path) -> None:
    runner = CliRunner()
    log_path = tmp_path / "notif.csv"
    r = runner.invoke(app, ["simulate", "--scenario", "notification-volume", "--n", "600",
                            "--out", str(log_path)])
    assert r.exit_code == 0, r.output
    spec_path = tmp_path / "notif.yaml"
    assert spec_path.exists()
    out = tmp_path / "seq"
    r = runner.invoke(app, ["analyze-sequential", str(log_path), "--spec", str(spec_path),
                            "--out", str(out), "--algorithm", "fqi", "--estimator", "wpdis",
                            "--no-front", "--no-progress", "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert "myopic" in r.output and (out / "report.html").exists()
    assert json.loads((tmp_path / "s.json").read_text())["kind"] == "sequential"
    # a bad input: a clear message and exit code 2
    bad = tmp_path / "bad.csv"
    bad.write_text(log_path.read_text().replace("send", "mail", 3))
    r = runner.invoke(app, ["analyze-sequential", str(bad), "--spec", str(spec_path), "--out", str(out)])
    assert r.exit_code != 0
