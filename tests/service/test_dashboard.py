"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright
against a `pexkit serve` started by the test on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import pexkit as px

from .conftest import ADMIN, client
from .test_api import spec_dict
from .test_phases import WEIGHTS, World

NAME = "notif"
ARTIFACTS = Path(os.environ.get("PEXKIT_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from .conftest import Server

    tmp = tmp_path_factory.mktemp("dash")
    srv = Server(f"sqlite:///{tmp / 'events.db'}", tmp).start()
    api = client(srv.url, ADMIN, timeout=120)
    spec = spec_dict()
    spec["outcomes"] = [{"name": o, "goal": g, "weight": WEIGHTS[o]} for o, g in
                        (("engagement", "maximize"), ("unsubscribe", "minimize"),
                         ("revenue", "maximize"))]
    api.create_experiment(spec, tracking=[{"name": "retention_90d"}], salt="dash-salt-0001")
    world = World(api, seed=3)
    world.run(3000)
    api.run_job(NAME, "train", learner="t", n_folds=2)
    api.run_job(NAME, "optimize", budget=300, q=3)
    version = next(p["version"] for p in api.policies(NAME) if p["label"].startswith("utility"))
    # launch the interpretable version: the utility policy distilled into a depth-3 tree
    tree = api.run_job(NAME, "distill", version=version, max_depth=3)
    assert tree["source_version"] == version and 0 <= tree["fidelity"] <= 1
    api.launch(NAME, tree["version"])
    decisions, feats = world.run(1500, with_features=True)
    api.close()
    srv.tree_version, srv.decisions, srv.features = tree["version"], decisions, feats
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `make test` installs it "
                    "(bash scripts/install-system.sh).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network: {r.url}")
            if not r.url.startswith(("http://127.0.0.1", "data:", "about:")) else None)
    page.goto(url)
    return page, errors


def test_launched_tree_serves_its_own_choices(launched: Any) -> None:
    from pexkit.explain.persist import load_distilled
    from pexkit.store.db import EventStore

    store = EventStore(launched.db)
    try:
        prow = store.policy(NAME, launched.tree_version)
        assert prow is not None and prow["kind"] == "tree"
        tree = load_distilled(store.model_blob(int(prow["model_id"])))  # no pickle: a manifest
    finally:
        store.close()
    served = [i for i, d in enumerate(launched.decisions) if not d.holdout]
    assert {launched.decisions[i].policy_version for i in served} == {launched.tree_version}
    expected = tree.choose(launched.features.iloc[served].reset_index(drop=True))
    got = [launched.decisions[i].treatment_index for i in served]
    assert list(expected) == got


def test_dashboard_needs_a_key(launched: Any, browser: Any) -> None:
    page, errors = open_page(browser, launched.url + "/")
    assert "Sign in" in page.content()
    page.close()


def test_experiment_page_renders_front_tree_segments(launched: Any, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = open_page(browser, f"{launched.url}/?key={ADMIN}")
    assert page.locator("#experiments").inner_text().count(NAME) == 1
    page.click(f"text={NAME}")
    page.wait_for_selector("#front .main-svg")
    assert page.locator("#phase").inner_text() == "launched"
    # the front has points; the tree and segments are there
    points = page.locator("#front .scatterlayer .point")
    assert points.count() >= 3
    tree = page.locator("#policy-tree").inner_text()
    assert any(arm in tree for arm in ("control", "light", "heavy"))
    assert page.locator("#segments tbody tr").count() >= 2
    assert page.locator("#backtest tbody tr").count() == 5  # 4 outcomes + utility
    page.screenshot(path=str(ARTIFACTS / "dashboard-experiment.png"), full_page=True)
    # clicking a front point shows that policy
    point = points.nth(points.count() // 2)
    point.scroll_into_view_if_needed()
    point.hover(force=True)  # Plotly computes hover data on mouse moves; a click then fires
    page.wait_for_selector(".hoverlayer .hovertext")
    point.click(force=True)
    page.wait_for_selector("#policy-detail h2")  # the clicked policy's heading
    detail = page.locator("#policy-detail").inner_text()
    assert "weights" in detail and "lift" in detail
    assert "vs all-" in detail and "(95% CI)" in detail  # against the best single treatment
    # one name per policy (its front label; the version it became), its lifts with CIs and
    # its rule in words
    assert re.search(r"^policy \d+", detail) and "lift vs control (95% CI)" in detail
    assert "rule" in detail and "largest predicted" in detail
    # the launched version (a tree distilled from the utility version) is marked on the front
    legend = page.locator("#front .legendtext").all_text_contents()
    assert f"launched (version {launched.tree_version})" in legend and "candidate" in legend
    # and the page says what personalizing adds over that treatment, in words
    assert "Personalization: " in page.locator("p.personalization").first.inner_text()
    page.locator("#policy-detail").screenshot(path=str(ARTIFACTS / "dashboard-policy-click.png"))
    assert errors == []
    page.close()


def test_full_report_page_renders(launched: Any, browser: Any) -> None:
    page, errors = open_page(browser, f"{launched.url}/experiments/{NAME}?key={ADMIN}")
    page.click("#report-link")
    page.wait_for_selector("#interpretable-policy")
    text = page.content()
    assert "Pareto front" in text and "Segments" in text
    page.screenshot(path=str(ARTIFACTS / "dashboard-report.png"))
    assert errors == []
    page.close()


def test_front_marks_candidates_versions_tuned_arms_and_the_launch() -> None:
    from pexkit.service.dashboard import _front_section

    spec = px.ExperimentSpec(treatment="t", arms=["control", "a"], numeric=["x"],
                             outcomes=["y", {"name": "z", "goal": "minimize"}])
    pols = [{"id": f"policy {i}", "weights": {"y": 1.0, "z": float(i)}, "biases": {},
             "lift": {"y": 0.1 * i, "z": 0.01 * i}, "lift_ci": {"y": [0, 1], "z": [0, 1]},
             "share": {"control": 0.5, "a": 0.5}, "candidate": i == 2} for i in range(1, 4)]
    front = {"outcomes": [{"name": "y", "goal": "maximize"}, {"name": "z", "goal": "minimize"}],
             "spec": spec.to_dict(), "policies": pols, "meta": {"versions": {"policy 2": 7}}}
    marks = {"tuned": [{"version": 9, "label": "tune round 1 arm 1",
                        "lift": {"y": 0.5, "z": 0.0}, "lift_ci": {}}],
             "launched": 11, "launched_label": "policy 2", "launched_offline": None}
    html = _front_section(front, marks)
    figure = json.loads(re.search(r'id="front-figure"[^>]*>(.*?)</script>', html, re.S).group(1))
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["front", "candidate", "tuned arm (online)", "launched (version 11)"]
    launch = figure["data"][3]
    assert (launch["x"], launch["y"]) == ([0.2], [0.02])  # at policy 2, the launch's source
    detail = json.loads(re.search(r'id="front-policies"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert detail["policy 2"]["title"] == "policy 2 · version 7"
    assert "2 z" in detail["policy 2"]["rules"] and "largest predicted" in detail["policy 2"]["rules"]


# the scorecard colours (pexkit.report.scorecard.COLORS) as Chromium computes them
SCORE_RGB = {"good": "rgb(19, 115, 51)", "bad": "rgb(179, 38, 30)",
             "inconclusive": "rgb(95, 99, 104)"}
GOALS = {"engagement": "maximize", "unsubscribe": "minimize", "revenue": "maximize",
         "retention_90d": "maximize", "utility": "maximize"}


def _scorecard_cells(page: Any, tables: str) -> dict[str, list[tuple[str, str, str]]]:
    """Per verdict: (metric, change text, computed colour) of each Change cell in ``tables``."""
    cells: list[dict[str, str]] = page.eval_on_selector_all(
        ", ".join(f"{t} tr[data-verdict] td.sc-change" for t in tables.split(",")),
        "els => els.map(e => ({verdict: e.parentElement.dataset.verdict, "
        "metric: e.parentElement.dataset.metric, text: e.textContent, "
        "color: getComputedStyle(e).color}))")
    out: dict[str, list[tuple[str, str, str]]] = {"good": [], "bad": [], "inconclusive": []}
    for c in cells:
        out[c["verdict"]].append((c["metric"], c["text"], c["color"]))
    return out


def _check_colours(found: dict[str, list[tuple[str, str, str]]]) -> None:
    for verdict, rgb in SCORE_RGB.items():
        assert found[verdict], f"no {verdict} cell"
        assert {color for _, _, color in found[verdict]} == {rgb}, verdict
    # good and bad follow each metric's goal: a minimized metric that rises is bad
    for verdict, up_is in (("good", "maximize"), ("bad", "minimize")):
        for metric, text, _ in found[verdict]:
            rose = text.startswith("+")
            assert rose == (GOALS[metric] == up_is), (verdict, metric, text)


def test_scorecards_are_coloured_by_goal(launched: Any, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = open_page(browser, f"{launched.url}/experiments/{NAME}?key={ADMIN}")
    page.wait_for_selector("#ate")
    heads = page.locator("#ate thead th").all_inner_texts()
    assert heads[:8] == ["Treatment", "Metric", "Control mean", "Treatment mean", "Change",
                         "95% CI", "Relative change", "Verdict"]
    assert page.locator("#backtest thead th").all_inner_texts()[1:3] == ["Holdout mean",
                                                                          "Policy mean"]
    text = page.locator("#ate").inner_text() + page.locator("#backtest").inner_text()
    assert "[+0, +0]" not in text and "ci_low" not in text and "nan" not in text.lower()
    _check_colours(_scorecard_cells(page, "#ate, #backtest"))
    page.locator("#ate").screenshot(path=str(ARTIFACTS / "scorecard-dashboard-effects.png"))
    page.locator("#backtest").screenshot(path=str(ARTIFACTS / "scorecard-dashboard-backtest.png"))
    # the report: effects and candidates as scorecards; the headline says what got worse
    page.click("#report-link")
    page.wait_for_selector("#ate")
    found = _scorecard_cells(page, "#ate, #candidate-scorecard")
    _check_colours(found)
    # the headline policy: each metric coloured by its verdict, the worse ones first
    headline = page.locator("#headline-policy")
    spans = headline.evaluate(
        "h => [...h.querySelectorAll('span.sc-good, span.sc-bad, span.sc-inconclusive')]"
        ".map(e => [e.className, getComputedStyle(e).color])")
    assert len(spans) == 3  # engagement, unsubscribe, revenue
    assert all(color == SCORE_RGB[cls.removeprefix("sc-")] for cls, color in spans)
    order = [cls for cls, _ in spans]
    assert order == sorted(order, key=["sc-bad", "sc-good", "sc-inconclusive"].index)
    assert " vs all-control: " in headline.inner_text()
    page.locator("#summary").screenshot(path=str(ARTIFACTS / "scorecard-report-headline.png"))
    page.locator("#effects").screenshot(path=str(ARTIFACTS / "scorecard-report-effects.png"))
    assert errors == []
    page.close()


def test_tuning_table_means_carry_cis_without_signs() -> None:
    from pexkit.service.dashboard import _arm_means

    outs = ["engagement", "unsubscribe", "revenue"]
    got = _arm_means({"n": 100, "engagement": {"mean": 3.3217, "sem": 0.1},
                      "unsubscribe": {"mean": 0.0453, "sem": 0.004}}, outs)
    assert got == {"engagement: mean [95% CI]": "3.32 [3.13, 3.52]",
                   "unsubscribe: mean [95% CI]": "0.0453 [0.0375, 0.0531]",
                   "revenue: mean [95% CI]": "–"}
    one = _arm_means({"n": 1, "engagement": {"mean": 2.0, "sem": 0.0}}, outs[:1])
    assert one == {"engagement: mean [95% CI]": "2.00 no CI (n too small)"}
