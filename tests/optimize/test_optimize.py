import json

import numpy as np
import pytest

import pexkit as px
from pexkit.optimize import Guardrail, PolicySpace, is_non_dominated, load_policies

WEIGHTS = {"engagement": 1.0, "unsubscribe": 10.0, "revenue": 1.0}


def assert_hypervolume_by_monte_carlo(front, n: int = 400_000) -> None:
    """The exact (slicing) hypervolume against an independent Monte Carlo estimate.

    Uniform points in the box from the reference point to the front's best value
    per objective; the dominated fraction times the box volume. The estimate's
    standard error is ``vol * sqrt(p (1 - p) / n)``; 4 of them (plus rounding) is
    the tolerance.
    """
    ref = front.reference_point * front.signs
    pts = front.objectives[front.on_front]
    pts = pts[(pts > ref).all(axis=1)]
    exact = front.hypervolume()
    if len(pts) == 0:
        assert exact == 0.0
        return
    top = pts.max(axis=0)
    vol = float(np.prod(top - ref))
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(n // 50_000):
        u = ref + rng.random((50_000, len(ref))) * (top - ref)
        hits += int((pts[None, :, :] >= u[:, None, :]).all(axis=2).any(axis=1).sum())
    p = hits / n
    se = vol * np.sqrt(p * (1 - p) / n)
    assert exact > 0
    assert abs(exact - vol * p) <= 4 * se + 1e-12 * vol, (exact, vol * p, se)


@pytest.mark.parametrize("method", ["sobol", "nsga2", "qnparego"])
def test_methods_return_a_consistent_front(method, sim, fitted):
    budget = 40 if method != "qnparego" else 24
    front = px.optimize_policies(fitted, sim.data, method=method, budget=budget, random_state=1)
    assert isinstance(front, px.ParetoFront)
    P = len(front)
    assert front.lifts.shape == (P, 3) and front.shares.shape == (P, 3)
    on = front.on_front & ~np.array([lab.startswith("all ") for lab in front.labels])
    assert on.sum() >= 1
    assert is_non_dominated(front.objectives[front.on_front]).all()
    assert front.meta["n_evaluations"] == budget
    assert_hypervolume_by_monte_carlo(front)
    # the recorded lifts are what evaluating the policy gives
    p = int(np.flatnonzero(on)[0])
    again = px.evaluate_policy(front.policies[p], sim.data, fitted)
    np.testing.assert_allclose(again.lift, front.lifts[p], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(front.shares[p], list(again.share.values()))
    # single-treatment baselines are there for comparison
    assert front.labels[-3:] == ["all control", "all light", "all heavy"]
    np.testing.assert_allclose(front.lifts[-3], 0.0)


def test_select_and_include_single(sim, fitted):
    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=64)
    sub = front.select(q=3, distinct=0)
    assert len(sub) == min(3, int(front.on_front.sum())) and sub.candidate.all()
    assert sub.hypervolume() <= front.hypervolume() + 1e-12
    with_single = front.select(q=4, include_single=True)
    assert any(lab.startswith("all ") for lab in with_single.labels)


def test_candidates_are_distinct_policies_not_near_copies(sim, fitted):
    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=300, random_state=1)
    # 12 of the 62 front policies: the hypervolume-best twelve hold near-copies
    plain = front.select(q=12, distinct=0)
    picked = front.select(q=12)

    def copies(sub):
        # recomputed from the lifts and SEs: every outcome within one unpaired SE
        return [(a, b) for a in range(len(sub)) for b in range(a + 1, len(sub))
                if np.all(np.abs(sub.lifts[a] - sub.lifts[b])
                          < np.sqrt(sub.lift_se[a] ** 2 + sub.lift_se[b] ** 2))]

    assert copies(plain), "the dense front's plain selection should hold near-copies"
    assert not copies(picked)
    assert len(picked) < 12 and "distinct policies" in picked.meta["distinct"]
    # dropping copies costs little of what the candidates span
    assert picked.hypervolume() >= 0.8 * plain.hypervolume()
    # a front whose policies are all within noise of each other yields one candidate
    noisy = front.subset(list(range(len(front))))
    noisy.lift_se = noisy.lift_se * 1e6
    assert len(noisy.select(q=4)) == 1


def test_guardrails_hold_on_the_front(sim, fitted):
    guard = Guardrail("unsubscribe", max_change=0.02)
    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=128, guardrails=[guard])
    control = front.meta["control_value"][1]
    on = front.on_front
    assert (front.lifts[on, 1] <= 0.02 * control + 1e-12).all()
    strict = Guardrail("unsubscribe", max_change=0.02, bound="ci")
    front2 = px.optimize_policies(fitted, sim.data, method="sobol", budget=128, guardrails=[strict])
    upper = front2.lift_ci[front2.on_front, 1, 1]
    assert (upper <= 0.02 * control + 1e-12).all()
    # without the guardrail, some policy breaks it (so the test can fail)
    free = px.optimize_policies(fitted, sim.data, method="sobol", budget=128)
    assert (free.lifts[free.on_front, 1] > 0.02 * control).any()
    with pytest.raises(px.InvalidParameterError, match="'bound'|bound must be"):
        Guardrail("unsubscribe", bound="median")
    with pytest.raises(px.SpecError, match="unknown outcome"):
        px.optimize_policies(fitted, sim.data, method="sobol", budget=8, guardrails=[Guardrail("nope")])


def test_policies_json_round_trip(tmp_path, sim, fitted):
    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=64)
    front.mark_candidates(front.select(q=3))
    path = front.save(tmp_path / "policies.json")
    doc = json.loads(path.read_text())
    for key in ("treatments", "outcomes", "reference_point", "hypervolume", "policies"):
        assert key in doc
    item = doc["policies"][0]
    for key in ("id", "weights", "biases", "lift", "lift_ci", "share", "on_front", "candidate"):
        assert key in item
    assert sum(p["candidate"] for p in doc["policies"]) == 3
    back = load_policies(path)
    np.testing.assert_allclose(back.lifts, front.lifts)
    np.testing.assert_allclose(back.lift_ci, front.lift_ci)
    assert back.labels == front.labels
    assert back.hypervolume() == pytest.approx(front.hypervolume())
    tau = fitted.effects_
    for a, b in zip(front.policies, back.policies, strict=True):
        np.testing.assert_array_equal(a.choose(tau), b.choose(tau))
    with pytest.raises(px.InvalidDataError, match="does not exist"):
        load_policies(tmp_path / "nope.json")


def test_space_shrinkage_and_no_bias(sim, fitted):
    tau = fitted.effects_
    space = PolicySpace.from_effects(sim.spec, tau, biases=False)
    assert space.dim == 2
    w, b = space.weights_biases(np.array([[0.0, 0.0], [1.0, 1.0]]))
    assert (w >= 0).all() and np.all(b == 0)
    assert w[0, 0] > 0 and w[0, 1] == 0 and w[1, 2] > 0 and w[1, 0] == 0
    shrink = PolicySpace.from_effects(sim.spec, tau, parameterization="shrinkage")
    assert shrink.dim == 2 + 3
    front = px.optimize_policies(fitted, sim.data, method="sobol", budget=32, parameterization="shrinkage")
    assert_hypervolume_by_monte_carlo(front)
    with pytest.raises(px.InvalidParameterError, match="parameterization"):
        PolicySpace.from_effects(sim.spec, tau, parameterization="magic")
    with pytest.raises(px.InvalidParameterError, match="'method' must be"):
        px.optimize_policies(fitted, sim.data, method="grid", budget=8)


def test_budgets_default_per_method_and_slow_ones_warn(sim, fitted):
    from pexkit.exceptions import SlowSearchWarning
    from pexkit.optimize.optimize import DEFAULT_BUDGETS, SLOW_QNPAREGO_BUDGET

    assert DEFAULT_BUDGETS == {"sobol": 2000, "nsga2": 2000, "qnparego": 200}
    front = px.optimize_policies(fitted, sim.data, method="sobol")
    assert front.meta["n_evaluations"] == 2000
    # the warning comes before any work (the suite turns warnings into errors)
    with pytest.raises(SlowSearchWarning, match="budget<=500"):
        px.optimize_policies(fitted, sim.data, method="qnparego", budget=SLOW_QNPAREGO_BUDGET + 1)
    for bad in (1, 2.5, True, "100"):
        with pytest.raises(px.InvalidParameterError, match="'budget' must be an integer"):
            px.optimize_policies(fitted, sim.data, method="sobol", budget=bad)
