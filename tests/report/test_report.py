import re

import numpy as np

import pexkit as px
from pexkit.report import render_report, tradeoff_sentences, write_report


def test_report_renders_self_contained_with_the_front(tmp_path, sim, fitted):
    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=48)
    cands = front.select(q=3)
    path = write_report(tmp_path / "report.html", sim.data, fitted, front, cands)
    html = path.read_text()
    assert html.startswith("<!doctype html>")
    # Plotly's JS is inlined exactly once and nothing is fetched from the network
    assert html.count("plotly.js v") >= 1
    # the library loads before any figure script runs
    assert html.index("plotly.js v") < html.index("Plotly.newPlot")
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=[\"']?https?:", html)
    for section in ("Pareto front", "Average effects", "Calibration", "Uplift", "Candidates"):
        assert section in html
    for label in cands.labels:
        assert label in html
    assert "gains" in html
    # what personalizing adds over the best single treatment, stated in the summary
    assert re.search(r"(Personalizing adds|No policy here beats)", html)
    assert re.search(r"all-(control|light|heavy)", html)


def test_tradeoff_sentences_name_gains_costs_and_shares(sim, fitted):
    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=32)
    control = np.asarray(front.meta["control_value"])
    heavy = front.labels.index("all heavy")
    [sentence] = tradeoff_sentences(front, control, [heavy])
    # heavy raises engagement (a gain) and unsubscribes (a cost)
    assert sentence.startswith("all heavy gains")
    gain_part, cost_part = sentence.split(" at ", 1)
    assert "engagement" in gain_part and "unsubscribe" in cost_part
    assert "100% heavy" in sentence
    assert "%" in sentence and "[" in sentence


def test_report_on_srm_warns(sim, fitted):
    from scipy.stats import chisquare

    html = render_report(sim.data, fitted, px.optimize_policies(fitted, sim.data, method="sobol", budget=16))
    assert "Balanced" in html and "Sample ratio mismatch" not in html
    # a log that lost a fifth of its control units: the report says so, with the chi-square
    # that scipy computes from the arm counts against the design's equal shares
    frame = sim.frame
    control = np.flatnonzero(frame[sim.spec.treatment].to_numpy() == sim.spec.arms[0])
    broken = frame.drop(frame.index[control[: len(control) // 5]])
    data = px.LoggedData.from_frame(broken, sim.spec, warn_srm=False)
    counts = broken[sim.spec.treatment].value_counts().reindex(sim.spec.arms).to_numpy()
    chi2 = chisquare(counts).statistic
    html = render_report(data, fitted, px.optimize_policies(fitted, data, method="sobol", budget=16))
    assert "Sample ratio mismatch" in html and "Balanced" not in html
    assert f"chi-square {chi2:.1f}" in html


def test_report_explains_the_headline_policy_and_its_segments(sim, fitted):
    from pexkit.explain import distill, segments

    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=32)
    html = render_report(sim.data, fitted, front)
    for section in ("Interpretable policy", "Segments", "fidelity", "value kept", "gain kept",
                    "What drives the effects"):
        assert section in html
    # the rule list is escaped HTML, one indented line per rule
    assert "if " in html and "&lt;=" in html and "padding-left: 1.6em" in html
    # precomputed pieces are used as given
    policy = px.LinearPolicy(sim.spec, {"engagement": 1.0, "unsubscribe": 2.0, "revenue": 0.5})
    tree = distill(policy, fitted, sim.data, max_depth=2)
    segs = segments(fitted, sim.data, max_depth=1)
    html = render_report(sim.data, fitted, front, distilled=tree, segments=segs)
    for line in str(tree.tree).splitlines():
        assert line.strip().replace("<", "&lt;").replace(">", "&gt;") in html
    rows = re.findall(r'<td class="l">S\d</td>', html)
    assert len(rows) == len(segs)
    assert not re.search(r"<script[^>]+src=", html)
    # and can be left out
    plain = render_report(sim.data, fitted, front, explain=False)
    assert "Interpretable policy" not in plain and 'id="segments"' not in plain


def test_report_has_the_analysis_staples(sim, fitted):
    from pexkit.effects.diagnostics import auuc_table

    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=16)
    html = render_report(sim.data, fitted, front)
    assert "Per-unit effect estimates" in html  # CATE distributions
    # the AUUC table: one row per (treatment, outcome), the numbers of auuc_table
    table = re.search(r'<table id="auuc">(.*?)</table>', html, re.S).group(1)
    expected = auuc_table(fitted)
    assert table.count("<tr>") == 1 + len(expected)
    assert f"{expected.iloc[0]['auuc']:.3g}" in table
    assert "share treated, best first" in html and "gain per unit" in html  # labelled axes
    balance = re.search(r'<table id="balance">(.*?)</table>', html, re.S).group(1)
    assert balance.count("<tr>") >= 2 and "standardized difference" in balance
    assert "What drives each effect" in html  # importance per effect


def test_a_first_split_on_a_feature_without_heterogeneity_is_flagged():
    from pexkit.explain import feature_importance
    from pexkit.report.staples import noise_split_warning

    rng = np.random.default_rng(0)
    n = 4000
    import pandas as pd

    df = pd.DataFrame({"a": rng.normal(size=n), "noise": rng.normal(size=n),
                       "t": rng.integers(0, 2, n)})
    df["y"] = df.t * (0.2 + df.a) + rng.normal(size=n)
    spec = px.ExperimentSpec(treatment="t", arms=[0, 1], outcomes=["y"], numeric=["a", "noise"])
    data = px.LoggedData.from_frame(df, spec)
    model = px.EffectModel(learner="t", n_folds=2).fit(data)
    imp = feature_importance(model, data)
    assert imp.set_index("feature").loc["noise", "importance"] < 0.05 < imp.set_index(
        "feature").loc["a", "importance"]
    assert "'noise'" in noise_split_warning("noise", imp)
    assert noise_split_warning("a", imp) is None
