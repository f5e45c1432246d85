import json

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.explain import distill
from pexkit.explain.distill import fieller, wilson

WEIGHTS = {"engagement": 1.0, "unsubscribe": 2.0, "revenue": 0.5}


@pytest.fixture(scope="module")
def distilled(sim, fitted):
    return distill(px.LinearPolicy(sim.spec, WEIGHTS), fitted, sim.data, max_depth=3)


def test_distill_contract(sim, fitted, distilled):
    policy = px.LinearPolicy(sim.spec, WEIGHTS)
    tree = distilled
    black = policy.choose(fitted.effects_)  # the cross-fitted black box on the model's data
    chosen = tree.choose(sim.data)
    np.testing.assert_array_equal(chosen, tree.choose(sim.frame))
    # out-of-sample fidelity sits near the in-sample agreement (a depth-3 tree on
    # 6,000 units overfits its labels by well under 3 points)
    assert abs(tree.fidelity - (chosen == black).mean()) < 0.03
    # the interval is a binomial one on the model's units: its width is the normal
    # approximation's 2 * 1.96 * sqrt(f (1 - f) / n) to within 2% at n = 6,000
    f, n = tree.fidelity, sim.data.n_units
    width = tree.fidelity_ci[1] - tree.fidelity_ci[0]
    assert width == pytest.approx(2 * 1.96 * np.sqrt(f * (1 - f) / n), rel=0.02)
    assert tree.value_kept_ci[0] < tree.value_kept < tree.value_kept_ci[1]
    assert tree.evaluation == "cross-fitted" and tree.n_units == sim.data.n_units
    assert tree.baseline in sim.spec.arms
    assert set(tree.lifts) == {"tree", "black box", f"all {tree.baseline}"}
    assert sum(tree.shares.values()) == pytest.approx(1.0)
    text = str(tree)
    assert "fidelity" in text and "if " in text
    # deeper trees imitate at least as much utility as shallower ones
    shallow = distill(policy, fitted, sim.data, max_depth=1)
    utilities = policy.utilities(fitted.effects_)
    rows = np.arange(len(chosen))
    assert utilities[rows, chosen].sum() >= utilities[rows, shallow.choose(sim.data)].sum() - 1e-9


def test_value_terms_are_the_dr_utility_lifts(sim, fitted, distilled):
    # the black box's lift is the DR utility lift of policy.choose(effects_), as evaluate_policy has it
    policy = px.LinearPolicy(sim.spec, WEIGHTS)
    value = px.evaluate_policy(policy.choose(fitted.effects_), sim.data, fitted)
    lifts = value.to_frame()["lift"].to_numpy()
    expected = float(lifts @ policy.signed_weights())
    assert distilled.lifts["black box"]["lift"] == pytest.approx(expected, rel=1e-9)
    gain = (fitted.scores_ - fitted.scores_[:, :1]) @ policy.signed_weights()
    assert distilled.baseline == sim.spec.arms[int(np.argmax(gain.mean(axis=0)))]


def test_fieller_matches_the_delta_method_and_knows_when_it_cannot_bound():
    rng = np.random.default_rng(0)
    n = 200_000
    den = 1.0 + rng.normal(0, 2, n)
    num = 0.5 * den + rng.normal(0, 1, n)
    ratio, lo, hi = fieller(num, den)
    # delta method: var(num - r den) / (n mean(den)^2)
    se = np.std(num - ratio * den, ddof=1) / np.sqrt(n) / abs(den.mean())
    assert ratio == pytest.approx(num.mean() / den.mean())
    assert lo == pytest.approx(ratio - 1.959964 * se, abs=2e-4)
    assert hi == pytest.approx(ratio + 1.959964 * se, abs=2e-4)
    # a denominator within noise of zero: no finite interval is honest
    flat = rng.normal(0, 1, 500)
    _, lo, hi = fieller(rng.normal(1, 1, 500), flat - flat.mean())
    assert (lo, hi) == (-np.inf, np.inf)
    # identical numerator and denominator: exactly 1
    same = rng.normal(1, 0.1, 100)
    assert fieller(same, same) == pytest.approx((1.0, 1.0, 1.0))


def test_wilson_interval():
    lo, hi = wilson(1000, 1000)
    assert hi == 1.0 and 0.995 < lo < 1.0
    lo, hi = wilson(500, 1000)
    assert lo == pytest.approx(0.5 - 1.96 * np.sqrt(0.25 / 1000), abs=1e-3)
    assert hi == pytest.approx(0.5 + 1.96 * np.sqrt(0.25 / 1000), abs=1e-3)


def test_compiled_distilled_policy_decides_like_the_plain_path(sim, fitted, distilled):
    compiled = distilled.compile()
    frame = px.simulate("notifications", n_units=3000, seed=5).frame.drop(columns=["arm"])
    # unseen and missing categories, missing numbers
    frame.loc[:99, "platform"] = "smart-tv"
    frame.loc[100:199, "region"] = None
    frame.loc[200:299, list(sim.spec.numeric)] = np.nan
    plain = distilled.choose(frame)
    np.testing.assert_array_equal(compiled.choose(frame), plain)
    np.testing.assert_array_equal(compiled.choose_matrix(fitted._matrix(frame)), plain)
    np.testing.assert_array_equal(compiled.choose_matrix(compiled.encode(frame)), plain)
    np.testing.assert_array_equal(compiled.choose(sim.data), distilled.choose(sim.data))
    # the compact matrix holds exactly the used features, as EffectModel encodes them
    full = fitted._matrix(frame)
    used = [list(sim.spec.features).index(f) for f in compiled.features]
    np.testing.assert_array_equal(compiled.encode(frame), full[:, used])
    assert set(compiled.features) <= set(sim.spec.features)


def test_to_dict_is_json(distilled):
    payload = json.loads(json.dumps(distilled.to_dict()))
    assert payload["kind"] == "distilled_policy"
    assert payload["rules"][0]["text"].startswith("if ")
    assert payload["tree"]["leaves"]
    assert 0 <= payload["fidelity"] <= 1


def test_distill_rejects_bad_input(fitted, sim):
    with pytest.raises(px.InvalidParameterError, match="LinearPolicy"):
        distill("policy", fitted, sim.data)
    policy = px.LinearPolicy(sim.spec, WEIGHTS)
    with pytest.raises(px.InvalidParameterError, match="max_depth"):
        distill(policy, fitted, max_depth=6)
    with pytest.raises(px.InvalidDataError, match="LoggedData"):
        distill(policy, fitted, pd.DataFrame())
    other = px.simulate("synthetic", n_units=50, seed=0, n_features=4)
    with pytest.raises(px.InvalidParameterError, match="model's spec"):
        distill(px.LinearPolicy(other.spec), fitted)
