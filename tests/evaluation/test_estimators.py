"""Contract and hand-computed checks for every off-policy estimator."""

import numpy as np
import pytest

import pexkit as px
from pexkit.evaluation import ESTIMATORS, PolicyScores

NAMES = sorted(ESTIMATORS)


def tiny():
    spec = px.ExperimentSpec(treatment="arm", arms=["c", "t"], outcomes=["y"], numeric=["x"])
    treatment = np.array([0, 1, 0, 1])
    prop = np.array([0.5, 0.5, 0.5, 0.5])
    y = np.array([[1.0], [3.0], [2.0], [5.0]])
    mu = np.array([[[1.5], [4.0]], [[1.5], [4.0]], [[1.5], [4.0]], [[1.5], [4.0]]])
    return PolicyScores.from_arrays(spec, mu, treatment, prop, y)


def test_hand_computed_values():
    sc = tiny()
    treat_all = np.ones(4, dtype=int)
    # IPS: mean(1{T=1} y / 0.5) = (3/0.5 + 5/0.5)/4 = 4
    v = px.evaluate_policy(treat_all, None, estimator="ips", scores=sc)
    assert v.value[0] == pytest.approx(4.0)
    # control under IPS: (1/0.5 + 2/0.5)/4 = 1.5 -> lift 2.5
    assert v.lift[0] == pytest.approx(2.5)
    # DM: mean mu_1 = 4, lift = 4 - 1.5
    v = px.evaluate_policy(treat_all, None, estimator="dm", scores=sc)
    assert (v.value[0], v.lift[0]) == pytest.approx((4.0, 2.5))
    # DR: 4 + mean(1{T=1}(y - 4)/0.5) = 4 + ((3-4)+(5-4))/0.5/4 = 4
    v = px.evaluate_policy(treat_all, None, estimator="dr", scores=sc)
    assert v.value[0] == pytest.approx(4.0)
    # SNIPS: arm mean of treated = 4; of control = 1.5
    v = px.evaluate_policy(treat_all, None, estimator="snips", scores=sc)
    assert (v.value[0], v.lift[0]) == pytest.approx((4.0, 2.5))


@pytest.mark.parametrize("name", NAMES)
def test_estimator_contract(name, sim, fitted):
    data = sim.data
    n = data.n_units
    control = px.evaluate_policy(np.zeros(n, dtype=int), data, fitted, estimator=name)
    assert np.all(control.lift == 0)
    if name == "dm":  # no interval (the spread of predictions ignores the model's error)
        assert np.isnan(control.lift_se).all() and "no interval" in control.extra["no_ci"]
    else:
        assert np.all(control.lift_se == 0)
    assert control.share == {"control": 1.0, "light": 0.0, "heavy": 0.0}
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 3, n)
    det = px.evaluate_policy(actions, data, fitted, estimator=name)
    probs = np.eye(3)[actions]
    sto = px.evaluate_policy(probs, data, fitted, estimator=name)
    np.testing.assert_allclose(det.value, sto.value, rtol=1e-10)
    np.testing.assert_allclose(det.lift_se, sto.lift_se, rtol=1e-10)
    if name == "dm":
        assert np.isnan(det.lift_ci).all() and np.isnan(det.value_se).all()
        return
    frame = det.to_frame()
    assert list(frame.columns) == [
        "value", "value_se", "value_ci_low", "value_ci_high",
        "lift", "lift_se", "lift_ci_low", "lift_ci_high",
    ]
    assert list(frame.index) == list(data.spec.outcome_names)
    assert (frame.lift_ci_low <= frame.lift).all() and (frame.lift <= frame.lift_ci_high).all()
    assert np.isfinite(det.value_se).all() and (det.value_se > 0).all()


def test_stochastic_dr_formula(sim, fitted):
    data = sim.data
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=data.n_units)
    v = px.evaluate_policy(probs, data, fitted)
    G = fitted.scores_
    expected = np.einsum("nk,nkm->m", probs, G) / data.n_units
    np.testing.assert_allclose(v.value, expected)
    # the DR score by hand for one unit
    i = 17
    t = data.treatment[i]
    g = fitted.mu_oof_[i].copy()
    g[t] += (data.outcomes[i] - g[t]) / data.propensity[i]
    np.testing.assert_allclose(G[i], g)


@pytest.mark.parametrize("name", ["dr", "ips", "dm"])
def test_batch_equals_single(name, sim, fitted):
    data = sim.data
    rng = np.random.default_rng(2)
    actions = rng.integers(0, 3, size=(9, data.n_units))
    batch = px.evaluate_policies(actions, data, fitted, estimator=name)
    for p in range(9):
        single = px.evaluate_policy(actions[p], data, fitted, estimator=name)
        np.testing.assert_allclose(batch.value[p], single.value, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batch.lift[p], single.lift, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batch.lift_se[p], single.lift_se, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(batch.value_se[p], single.value_se, rtol=1e-7)
        assert np.isnan(batch.lift_se[p]).all() == (name == "dm")
    assert batch.to_frame().shape == (9 * 3, 10)


def test_batch_of_parameter_vectors(sim, fitted):
    data = sim.data
    params = np.array([[1.0, 1.0, 0, 0, 0, 0, 0, 0], [0.5, 2.0, 0.1, 0, 0, -0.2, 0, 0]])
    batch = px.evaluate_policies(params, data, fitted)
    for p in range(2):
        policy = px.LinearPolicy.from_vector(data.spec, params[p])
        single = px.evaluate_policy(policy, data, fitted)
        np.testing.assert_allclose(batch.lift[p], single.lift)
    policies = [px.LinearPolicy.from_vector(data.spec, row) for row in params]
    np.testing.assert_allclose(px.evaluate_policies(policies, data, fitted).lift, batch.lift)


def test_bootstrap_ci_close_to_normal_ci(sim, fitted):
    data = sim.data
    actions = np.full(data.n_units, 2)
    normal = px.evaluate_policy(actions, data, fitted)
    boot = px.evaluate_policy(actions, data, fitted, n_bootstrap=400, random_state=0)
    width_n = normal.lift_ci[:, 1] - normal.lift_ci[:, 0]
    width_b = boot.lift_ci[:, 1] - boot.lift_ci[:, 0]
    # 400 resamples estimate a 95% interval's width to within ~10%
    np.testing.assert_allclose(width_b, width_n, rtol=0.2)
    assert boot.extra["n_bootstrap"] == 400


def test_new_data_uses_fold_averaged_outcome_models(fitted):
    other = px.simulate("notifications", n_units=800, seed=99).data
    v = px.evaluate_policy(np.ones(800, dtype=int), other, fitted)
    sc = px.build_scores(other, fitted)
    np.testing.assert_allclose(sc.mu, fitted.predict_outcomes(other))
    assert np.isfinite(v.lift).all()


BAD = [
    (lambda d, m: px.evaluate_policy(np.zeros(5, dtype=int), d, m), "one entry per unit"),
    (lambda d, m: px.evaluate_policy(np.full(d.n_units, 3), d, m), r"in \[0, 2\]"),
    (lambda d, m: px.evaluate_policy(np.full((d.n_units, 3), 0.5), d, m), "sum to 1"),
    (lambda d, m: px.evaluate_policy(np.zeros(d.n_units, dtype=int), d, m, estimator="magic"), "'estimator' must be"),
    (lambda d, m: px.evaluate_policies(np.zeros((2, d.n_units), dtype=int), d, m, estimator="snips"), "linear estimator"),
    (lambda d, m: px.evaluate_policy(np.zeros(d.n_units, dtype=int), d), "pass 'model'"),
    (lambda d, m: px.evaluate_policy(np.full(d.n_units, 0.5), d, m), "integers"),
]


@pytest.mark.parametrize(("call", "match"), BAD)
def test_bad_evaluation_input(call, match, sim, fitted):
    with pytest.raises(px.PexkitError, match=match):
        call(sim.data, fitted)


# --------------------------------------------------------------------------------------
# SNDR and Switch-DR against Open Bandit Pipeline's formulas, transcribed from
# obp/ope/estimators.py (v0.5; SelfNormalizedDoublyRobust and SwitchDoublyRobust,
# `_estimate_round_rewards`, one position), so the check runs without OBP installed.
# `make bench` also runs OBP itself on the same inputs (benchmarks/peers_ope.py).
def obp_round_rewards(kind, reward, action, pscore, action_dist, q_hat, lambda_=np.inf):
    n = action.shape[0]
    iw = action_dist[np.arange(n), action] / pscore
    q_hat_factual = q_hat[np.arange(n), action]
    estimated_rewards = np.average(q_hat, weights=action_dist, axis=1)
    if kind == "sndr":
        estimated_rewards += iw * (reward - q_hat_factual) / iw.mean()
    else:
        switch_indicator = np.array(iw <= lambda_, dtype=int)
        estimated_rewards += switch_indicator * iw * (reward - q_hat_factual)
    return estimated_rewards


@pytest.mark.parametrize("kind", ["sndr", "switch-dr"])
@pytest.mark.parametrize("stochastic", [False, True])
def test_sndr_and_switch_dr_equal_obp(kind, stochastic, sim, fitted):
    data = sim.data
    n = data.n_units
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(3), size=n) if stochastic else np.eye(3)[rng.integers(0, 3, n)]
    sc = px.build_scores(data, fitted)
    for lam in ([np.inf] if kind == "sndr" else [np.inf, 2.5, 0.0]):
        est = "sndr" if kind == "sndr" else px.evaluation.SwitchDR(lam)
        v = px.evaluate_policy(probs, data, fitted, estimator=est)
        for m in range(data.n_outcomes):
            obp = obp_round_rewards(kind, data.outcomes[:, m], data.treatment, data.propensity,
                                    probs, sc.mu[:, :, m], lam).mean()
            assert v.value[m] == pytest.approx(obp, rel=1e-9, abs=1e-12)
            control = np.eye(3)[np.zeros(n, dtype=int)]
            obp0 = obp_round_rewards(kind, data.outcomes[:, m], data.treatment,
                                     data.propensity, control, sc.mu[:, :, m], lam).mean()
            assert v.lift[m] == pytest.approx(obp - obp0, rel=1e-9, abs=1e-12)
        assert np.isfinite(v.lift_se).all() and (v.lift_se > 0).all()
    if kind == "switch-dr":  # the two ends: lambda = inf is DR, lambda = 0 is DM
        dr = px.evaluate_policy(probs, data, fitted, estimator="dr")
        dm = px.evaluate_policy(probs, data, fitted, estimator="dm")
        inf = px.evaluate_policy(probs, data, fitted, estimator=px.evaluation.SwitchDR())
        zero = px.evaluate_policy(probs, data, fitted, estimator=px.evaluation.SwitchDR(0.0))
        np.testing.assert_allclose(inf.value, dr.value, rtol=1e-12)
        np.testing.assert_allclose(inf.lift_se, dr.lift_se, rtol=1e-9)
        np.testing.assert_allclose(zero.value, dm.value, rtol=1e-12)


def test_sndr_se_matches_the_delta_method_by_simulation(sim, fitted):
    """SNDR's influence-function SE against the spread of its estimate over resampled logs."""
    data = sim.data
    n = data.n_units
    probs = np.eye(3)[np.full(n, 2)]
    v = px.evaluate_policy(probs, data, fitted, estimator="sndr")
    sc = px.build_scores(data, fitted)
    rng = np.random.default_rng(11)
    draws = []
    for _ in range(400):
        rows = rng.integers(0, n, n)
        r = obp_round_rewards("sndr", data.outcomes[rows, 0], data.treatment[rows],
                              data.propensity[rows], probs[rows], sc.mu[rows, :, 0])
        draws.append(r.mean())
    # 400 bootstrap draws estimate an SD to ~3.5% (1 / sqrt(2 * 400)); 15% is > 4 of those
    assert v.value_se[0] == pytest.approx(np.std(draws, ddof=1), rel=0.15)


def test_switch_dr_threshold_is_checked():
    with pytest.raises(px.PexkitError, match="'lambda_' must be a number >= 0"):
        px.evaluation.SwitchDR(-1.0)
