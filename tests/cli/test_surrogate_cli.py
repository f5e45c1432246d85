"""`pexkit analyze LOG --surrogate-index TARGET:HISTORY`: a long-term outcome the log lacks,
through a surrogate index fitted on an earlier cohort, next to the short-term effects.

The notifications scenario's retention_90d follows the realized engagement and unsubscribe,
plus a small tenure-driven effect of each arm that no short-term outcome shows (the "hidden"
part): surrogacy holds only approximately, so the index misses that part by construction. The
accuracy check allows 3 SE plus the hidden part, and does not lean on the surrogacy flag.

A second target, ``retention_leaky``, is retention_90d plus a direct effect of heavy (-0.1) in
the earlier cohort that no short-term outcome carries: the surrogacy check must flag it, and
the console and the report must say not to trust it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import pexkit as px
from pexkit.analysis import longterm_block
from pexkit.cli.main import app, main
from pexkit.longterm import SurrogateIndex
from pexkit.report.scorecard import fmt_interval
from pexkit.simulate.scenarios import NotificationsScenario

N = 4000
HISTORY_SEED, LOG_SEED = 21, 22
LEAK = -0.1  # heavy's direct effect on retention_leaky in the earlier cohort
FAST = ["--folds", "2", "--budget", "40", "--candidates", "2", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("surrogate")
    history = px.simulate("notifications", n_units=N, seed=HISTORY_SEED)
    sim = px.simulate("notifications", n_units=N, seed=LOG_SEED)
    earlier = history.frame.assign(  # retention observed; a leaky copy of it
        retention_leaky=history.frame["retention_90d"] + LEAK * (history.frame["arm"] == "heavy"))
    earlier.to_parquet(tmp / "history.parquet", index=False)
    sim.frame.drop(columns=["retention_90d"]).to_csv(tmp / "log.csv", index=False)
    sim.analysis_spec().to_yaml(tmp / "spec.yaml")  # lists retention_90d (weight 0)
    out = tmp / "out"
    result = CliRunner().invoke(app, [
        "analyze", str(tmp / "log.csv"), "--spec", str(tmp / "spec.yaml"), "--out", str(out),
        *FAST, "--surrogate-index", f"retention_90d:{tmp / 'history.parquet'}",
        "--surrogate-index", f"retention_leaky:{tmp / 'history.parquet'}",
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    return {"tmp": tmp, "sim": sim, "out": out, "output": result.output,
            "summary": json.loads((out / "summary.json").read_text())}


def _truth(sim: px.Simulation) -> dict[str, tuple[float, float]]:
    """Per arm: the true ATE on retention_90d, and its hidden part (what no surrogate carries)."""
    tm, names = sim.true_means, list(sim.all_outcomes)
    e, u, r = (names.index(o) for o in ("engagement", "unsubscribe", "retention_90d"))
    visit = NotificationsScenario.visit_value(sim.frame)  # retention per extra visit, per unit
    out = {}
    for k, arm in enumerate(sim.spec.arms[1:], start=1):
        d = tm[:, k, :] - tm[:, 0, :]
        carried = float(np.mean(visit * d[:, e] - 1.0 * d[:, u]))  # through the surrogates
        out[arm] = (float(d[:, r].mean()), float(d[:, r].mean()) - carried)
    return out


def test_longterm_block_estimates_the_true_effect(run: dict[str, Any]) -> None:
    summary = run["summary"]
    # the log lacks retention_90d: the spec used for it dropped it; the index stands in
    assert set(summary["outcome_rows"]) == {"engagement", "unsubscribe", "revenue",
                                            "retention_90d~", "retention_leaky~"}
    block, leaky = summary["longterm"]
    assert block["target"] == "retention_90d" and block["outcome"] == "retention_90d~"
    assert leaky["target"] == "retention_leaky"
    diag = block["diagnostics"]
    assert diag["n_history"] == N
    assert diag["surrogates"] == ["engagement", "unsubscribe", "revenue"]
    assert leaky["diagnostics"]["surrogates"] == diag["surrogates"]  # not the first index
    assert diag["r2"] > 0.35  # measured 0.49 (the short-term outcomes explain about half)
    truth = _truth(run["sim"])
    for row in block["ate"]:
        true, hidden = truth[row["treatment"]]
        assert row["se"] == pytest.approx(np.hypot(row["se_sampling"], row["se_index"]))
        assert row["se_index"] > 0 and row["ci_low"] < row["estimate"] < row["ci_high"]
        assert abs(row["estimate"] - true) <= 3 * row["se"] + abs(hidden), (row, true, hidden)
    # the surrogacy verdict on the leaky target: heavy flagged, and said so in plain words
    checks = {a["treatment"]: a for a in leaky["diagnostics"]["arms"]}
    assert checks["heavy"]["surrogacy_ok"] is False and checks["heavy"]["direct_effect_p"] < 0.01
    assert checks["heavy"]["direct_effect"] == pytest.approx(LEAK, abs=0.06)
    assert leaky["trusted"] is False
    assert "direct effect of heavy on retention_leaky" in leaky["note"]
    assert "do not trust the long-term estimate for heavy" in leaky["note"]
    # the policies evaluate the index like any outcome: the utility policy's long-term lift
    utility = summary["policies"]["utility"]["outcomes"]["retention_90d~"]
    assert block["policy_lift"]["utility"]["lift"] == pytest.approx(utility["lift"])
    assert utility["lift_ci_low"] < utility["lift"] < utility["lift_ci_high"]
    # the console: one line per long-term target with its verdict
    text = " ".join(run["output"].split())
    assert "long-term retention_90d (surrogate index retention_90d~" in text
    assert "DO NOT TRUST" in text and "surrogate index retention_90d~: r2" in text


def test_report_shows_the_longterm_section(run: dict[str, Any]) -> None:
    html = (run["out"] / "report.html").read_text()
    start = html.index('<section id="longterm">')
    section = html[start:html.index("</section>", start)]
    assert "Long-term outcomes (surrogate index)" in section
    block = run["summary"]["longterm"][0]
    diag = block["diagnostics"]
    assert f"r2 <b>{diag['r2']:.2f}</b>" in section and f"<b>{N:,}</b>" in section
    for row in block["ate"]:  # the long-term estimate with its CI, per arm
        assert " ".join(fmt_interval(row["estimate"], row["ci_low"], row["ci_high"])) in section
    ate = {(r["treatment"], r["outcome"]): r for r in run["summary"]["ate"]}
    for arm in ("light", "heavy"):  # next to the short-term effects
        for outcome in ("engagement", "unsubscribe", "revenue"):
            r = ate[(arm, outcome)]
            assert " ".join(fmt_interval(r["estimate"], r["ci_low"], r["ci_high"])) in section
    # the failed check is a visible warning, on heavy's row
    assert "Warning: surrogacy check failed for heavy" in section
    assert 'class="lt-failed"><td class="l">heavy</td>' in section
    assert "FAILS: do not trust" in section
    assert "<script src" not in html and "<link" not in html  # nothing from the network


def _fail(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    text = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in text
    return text


def test_bad_surrogate_index_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = px.simulate("notifications", n_units=300, seed=3)
    sim.frame.drop(columns=["retention_90d"]).to_csv(tmp_path / "log.csv", index=False)
    sim.frame.drop(columns=["retention_90d"]).to_csv(tmp_path / "no_target.csv", index=False)
    sim.analysis_spec().to_yaml(tmp_path / "spec.yaml")
    base = ["analyze", str(tmp_path / "log.csv"), "--spec", str(tmp_path / "spec.yaml"),
            "--out", str(tmp_path / "o"), "--no-progress", "--surrogate-index"]
    text = _fail([*base, "retention_90d"], capsys)  # no ':'
    assert "--surrogate-index 'retention_90d': expected TARGET:HISTORY" in text
    assert "found no ':'" in text and "retention_90d:earlier.csv" in text
    text = _fail([*base, f":{tmp_path / 'no_target.csv'}"], capsys)
    assert "found an empty TARGET" in text
    text = _fail([*base, f"retention_90d@bigger:{tmp_path / 'log.csv'}"], capsys)
    assert "goal after '@' to be maximize or minimize; found 'bigger'" in text
    text = _fail([*base, f"retention_90d:{tmp_path / 'missing.csv'}"], capsys)
    assert "expected HISTORY to be a CSV or Parquet file; found no file" in text
    assert "missing.csv" in text and "Check the path" in text
    text = _fail([*base, f"retention_90d:{tmp_path / 'no_target.csv'}"], capsys)
    assert "to have the long-term outcome's column 'retention_90d'; found the columns" in text
    assert "'engagement'" in text and "Fix TARGET" in text
    text = _fail([*base, f"retention_90d:{tmp_path / 'log.csv'}", "--cluster", "local:1"],
                 capsys)
    assert "not supported with --cluster" in text
    assert not (tmp_path / "o" / "summary.json").exists()


def test_longterm_block_trusted_when_surrogacy_holds() -> None:
    """On a known mix where the arm moves the long-term outcome only through the surrogate."""
    rng = np.random.default_rng(0)
    n = 2000
    arms = rng.choice(["c", "t"], n)
    x = rng.normal(size=n)
    clicks = x + (arms == "t") + rng.normal(size=n)
    retained = 0.5 * clicks + rng.normal(0, 0.5, n)
    spec = px.ExperimentSpec(treatment="arm", arms=["c", "t"], numeric=["x"],
                             outcomes=[{"name": "clicks"}, {"name": "retained", "weight": 0}])
    import pandas as pd

    frame = pd.DataFrame({"arm": arms, "x": x, "clicks": clicks, "retained": retained})
    index = SurrogateIndex("retained", rounds=50).fit(px.LoggedData.from_frame(frame, spec))
    short = px.ExperimentSpec(treatment="arm", arms=["c", "t"], numeric=["x"],
                              outcomes=[{"name": "clicks"}])
    data = index.transform(px.LoggedData.from_frame(frame.drop(columns=["retained"]), short))
    block = longterm_block(index, data)
    assert block["trusted"] is True and "found no effect of any arm" in block["note"]
    [row] = block["ate"]
    assert abs(row["estimate"] - 0.5) < 3 * row["se"]  # the true long-term effect: 0.5 x 1
