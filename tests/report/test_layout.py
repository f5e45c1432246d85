"""The report fits common screen widths, in a real browser (Debian's headless Chromium).

At 1,280 and 1,920 px the page body never scrolls sideways (a wide table scrolls inside its
own box), and no legend of the Pareto-front figure covers an axis title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pexkit as px
from pexkit.report import write_report

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--no-first-run"]

_MEASURE = """() => {
  const de = document.documentElement;
  const tables = [];
  for (const t of document.querySelectorAll('main table')) {
    const sec = t.closest('section').getBoundingClientRect();
    const r = t.getBoundingClientRect();
    if (r.right > sec.right + 1) tables.push((t.closest('section').id) + ' ' + Math.round(r.right));
  }
  const overlaps = [];
  for (const plot of document.querySelectorAll('.plotly-graph-div')) {
    const legend = plot.querySelector('g.legend');
    if (!legend) continue;
    const l = legend.getBoundingClientRect();
    for (const t of plot.querySelectorAll('.g-xtitle text, .g-ytitle text, .g-x2title text, '
                                            + '[class^="g-x"][class$="title"] text, '
                                            + '[class^="g-y"][class$="title"] text')) {
      const r = t.getBoundingClientRect();
      if (r.width && l.left < r.right && r.left < l.right && l.top < r.bottom && r.top < l.bottom)
        overlaps.push(t.textContent);
    }
  }
  // subplot titles (annotations) never overlap each other nor leave their figure
  const titles = [];
  for (const plot of document.querySelectorAll('.plotly-graph-div')) {
    const box = plot.getBoundingClientRect();
    const rects = [...plot.querySelectorAll('.annotation-text')].map(t => [t.textContent, t.getBoundingClientRect()]);
    for (let i = 0; i < rects.length; i++) {
      const [name, r] = rects[i];
      if (r.left < box.left - 1 || r.right > box.right + 1) titles.push('outside: ' + name);
      for (let j = i + 1; j < rects.length; j++) {
        const q = rects[j][1];
        if (r.left < q.right && q.left < r.right && r.top < q.bottom && q.top < r.bottom)
          titles.push(name + ' / ' + rects[j][0]);
      }
    }
  }
  return {scroll: de.scrollWidth, client: de.clientWidth, tables, overlaps, titles};
}"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("layout")
    sim = px.simulate("notifications", n_units=2500, seed=5)
    out = {}
    # 3 outcomes (3 panels in one row) and 4 (6 panels: two rows), each with segments
    for name, spec in (("three", sim.spec), ("four", sim.analysis_spec())):
        data = px.LoggedData.from_frame(sim.frame, spec)
        model = px.EffectModel(learner="t", n_folds=2, random_state=0, progress=False,
                               base_params={"n_estimators": 30, "num_leaves": 15}).fit(data)
        front = px.optimize_policies(model, data, method="sobol", budget=64)
        out[name] = write_report(tmp / f"{name}.html", data, model, front, front.select(q=3))
    return out


@pytest.mark.parametrize("width", [1280, 1920])
def test_report_fits_the_screen(reports: dict[str, Path], width: int) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `make test` installs it "
                    "(bash scripts/install-system.sh).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name, path in reports.items():
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(path.as_uri())
            page.wait_for_selector("#front .main-svg")
            got: Any = page.evaluate(_MEASURE)
            assert got["scroll"] <= got["client"], (name, width, got)
            assert got["tables"] == [], (name, width, got)
            assert got["overlaps"] == [], (name, width, got)
            assert got["titles"] == [], (name, width, got["titles"])
            assert page.locator("#segments table").count() == 1
            page.close()
        browser.close()
