"""Lifts against any arm (`baseline=`), and personalization's value against the best single arm."""

from __future__ import annotations

import numpy as np
import pytest

import pexkit as px
from pexkit._stats import mean_se
from pexkit.analysis import analyze


def test_lift_against_a_named_arm_is_the_paired_difference(sim, fitted):
    data = sim.data
    n = data.n_units
    actions = np.random.default_rng(3).integers(0, 3, n)
    G = px.build_scores(data, fitted).dr
    rows = np.arange(n)
    for estimator in ("dr", "ips"):
        table = G if estimator == "dr" else px.build_scores(data, fitted).ips()
        v = px.evaluate_policy(actions, data, fitted, estimator=estimator, baseline="heavy")
        terms = table[rows, actions] - table[:, 2]
        np.testing.assert_allclose(v.lift, terms.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(v.lift_se, mean_se(terms), rtol=1e-9)
        assert v.extra["baseline"] == "heavy"
        # the default is the control arm, and naming it changes nothing
        ctl = px.evaluate_policy(actions, data, fitted, estimator=estimator)
        named = px.evaluate_policy(actions, data, fitted, estimator=estimator, baseline="control")
        np.testing.assert_allclose(named.lift, ctl.lift, rtol=1e-12)
        np.testing.assert_allclose(named.lift_se, ctl.lift_se, rtol=1e-9)
    # a ratio estimator: its value minus all-heavy's, each normalized by its own weights
    snips = px.evaluate_policy(actions, data, fitted, estimator="snips", baseline=2)
    y, t, e = data.outcomes, data.treatment, data.propensity
    w_pi, w_b = (actions == t) / e, (t == 2) / e
    by_hand = (w_pi[:, None] * y).sum(0) / w_pi.sum() - (w_b[:, None] * y).sum(0) / w_b.sum()
    np.testing.assert_allclose(snips.lift, by_hand, rtol=1e-9)
    # the baseline against itself: lift 0
    same = px.evaluate_policy(np.full(n, 2), data, fitted, baseline="heavy")
    assert np.all(same.lift == 0)
    with pytest.raises(px.PexkitError, match="unknown treatment 'medium'"):
        px.evaluate_policy(actions, data, fitted, baseline="medium")


def test_analyze_states_personalizations_value_against_the_best_single_arm():
    """The gain of the utility policy over the best single arm, with a CI that covers the
    oracle's difference. On 8,000 notifications units the per-unit choice is too noisy to
    beat all-light (the truth is -0.11 in utility; at 30,000 units -0.03), and the readout
    must say so instead of reporting the +x% vs control."""
    sim = px.simulate("notifications", n_units=8000, seed=5)
    spec = sim.analysis_spec()
    spec = px.ExperimentSpec.from_dict({**spec.to_dict(), "outcomes": [
        o for o in spec.to_dict()["outcomes"] if o["name"] != "retention_90d"]})
    data = px.LoggedData.from_frame(sim.frame, spec)
    result = analyze(data, n_folds=2, optimize=False, progress=False, random_state=0)
    pers = result.summary["personalization"]
    best = pers["best_single"]
    row = pers["policies"]["utility"]
    # the oracle's answer: utility of the policy minus utility of all-best, on these units
    policy = px.LinearPolicy(spec)
    actions = policy.choose(result.model.effects_)
    sw = policy.signed_weights()
    names = list(spec.outcome_names)
    mine = sim.oracle_value(actions)["value"].reindex(names).to_numpy()
    k = spec.treatment_index(best)
    theirs = sim.oracle_value(np.full(data.n_units, k))["value"].reindex(names).to_numpy()
    # all-best really is the best single arm by true utility
    true_arms = [sw @ sim.oracle_value(np.full(data.n_units, j))["value"].reindex(names)
                 .to_numpy() for j in range(3)]
    assert int(np.argmax(true_arms)) == k
    truth = float(sw @ (mine - theirs))
    assert row["utility_ci_low"] <= truth <= row["utility_ci_high"], (row, truth)
    # the per-outcome lifts are against all-best, not control
    lifts = row["lifts"]
    assert set(lifts) == set(names)
    sentence = pers["sentence"]
    assert f"all-{best}" in sentence
    if row["utility_ci_low"] > 0:
        assert sentence.startswith("personalizing adds +")
    elif row["utility_ci_high"] < 0:
        assert sentence.startswith("no policy here beats")
    else:
        assert sentence.startswith("personalizing adds at most")


def test_lift_against_the_logging_policy(sim, fitted):
    """baseline="logged": the logging policy's value is the mean observed outcome."""
    data = sim.data
    n = data.n_units
    actions = np.random.default_rng(9).integers(0, 3, n)
    sc = px.build_scores(data, fitted)
    v = px.evaluate_policy(actions, data, fitted, baseline="logged")
    terms = sc.dr[np.arange(n), actions] - data.outcomes
    np.testing.assert_allclose(v.lift, terms.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(v.lift_se, mean_se(terms), rtol=1e-9)
    assert v.extra["baseline"] == "the logging policy"
    # the logging policy (uniform over the arms here) against itself: DR's lift is ~0
    uniform = np.full((n, 3), 1 / 3)
    same = px.evaluate_policy(uniform, data, fitted, baseline="logged")
    assert np.all(same.lift_ci[:, 0] <= 0) and np.all(same.lift_ci[:, 1] >= 0)


def test_policies_json_gives_every_policy_against_the_best_single_arm(tmp_path):
    import json

    sim = px.simulate("notifications", n_units=4000, seed=8)
    result = analyze(sim.data, n_folds=2, budget=60, progress=False, out=tmp_path)
    doc = json.loads((tmp_path / "policies.json").read_text())
    best = result.summary["personalization"]["best_single"]
    entries = {p["id"]: p for p in doc["policies"]}
    assert all(p["vs_best_single"]["arm"] == best for p in doc["policies"])
    # all-best against itself: zero
    assert all(v == 0 for v in entries[f"all {best}"]["vs_best_single"]["lift"].values())
    # one front policy, checked against the single-policy path (per-unit terms, not the kernel)
    label = next(p["id"] for p in doc["policies"] if p["on_front"] and not p["id"].startswith("all"))
    policy = result.front.policy(label)
    single = px.evaluate_policy(policy, sim.data, result.model, baseline=best)
    got = entries[label]["vs_best_single"]
    for m, o in enumerate(sim.spec.outcome_names):
        assert got["lift"][o] == pytest.approx(single.lift[m], rel=1e-9, abs=1e-12)
        assert got["lift_ci"][o] == pytest.approx(list(single.lift_ci[m]), rel=1e-6, abs=1e-12)
    # the candidates' own front carries the same numbers
    cand = result.candidates
    if cand is not None and len(cand.labels):
        c = cand.to_dict()["policies"][0]
        assert c["vs_best_single"]["lift"] == entries[c["id"]]["vs_best_single"]["lift"]
