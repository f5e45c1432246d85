import itertools

import numpy as np
import pytest

import pexkit as px

SPEC = px.ExperimentSpec(
    treatment="arm", arms=["c", "a", "b"],
    outcomes=[{"name": "y1"}, {"name": "y2", "goal": "minimize"}, {"name": "y3"}],
    numeric=["x"],
)


def random_tau(n=500, seed=0):
    rng = np.random.default_rng(seed)
    tau = rng.normal(size=(n, 3, 3))
    tau[:, 0, :] = 0
    return tau


def brute_force(tau, w, b, signs):
    n, K, M = tau.shape
    out = np.empty(n, dtype=int)
    for i in range(n):
        util = [sum(w[m] * signs[m] * (tau[i, k, m] + b[k][m]) for m in range(M)) for k in range(K)]
        out[i] = int(np.argmax(util))
    return out


def test_choose_matches_brute_force():
    tau = random_tau()
    w = {"y1": 1.0, "y2": 0.5, "y3": 2.0}
    b = {"a": {"y1": 0.1, "y2": -0.3}, "b": {"y3": 0.4}}
    policy = px.LinearPolicy(SPEC, weights=w, biases=b)
    bias = [[0, 0, 0], [0.1, -0.3, 0], [0, 0, 0.4]]
    expected = brute_force(tau, [1.0, 0.5, 2.0], bias, [1, -1, 1])
    np.testing.assert_array_equal(policy.choose(tau), expected)


def test_vector_round_trip():
    policy = px.LinearPolicy(SPEC, {"y1": 2.0, "y2": 1.0, "y3": 0.5}, {"a": {"y1": 0.2}, "b": {"y2": -1.0}})
    vec = policy.to_vector()
    assert vec.shape == (policy.n_params,) == ((3 - 1) + (3 - 1) * 3,)
    back = px.LinearPolicy.from_vector(SPEC, vec)
    tau = random_tau()
    np.testing.assert_array_equal(back.choose(tau), policy.choose(tau))
    np.testing.assert_allclose(back.to_vector(), vec)


def test_shrinkage_equals_weights_and_biases():
    tau = random_tau(seed=1)
    rng = np.random.default_rng(2)
    ate = np.vstack([np.zeros(3), rng.normal(size=(2, 3))])
    w = {"y1": 1.0, "y2": 0.7, "y3": 0.3}
    alpha = {"y1": 0.5, "y2": 0.9, "y3": 0.2}
    policy = px.LinearPolicy.from_shrinkage(SPEC, w, alpha, ate)
    a = np.array([alpha[o] for o in SPEC.outcome_names])
    shrunk = a * tau + (1 - a) * ate[None, :, :]
    direct = px.LinearPolicy(SPEC, w).choose(shrunk)
    np.testing.assert_array_equal(policy.choose(tau), direct)


def test_batch_equals_loop():
    tau = random_tau(n=300, seed=3)
    rng = np.random.default_rng(4)
    params = np.column_stack([rng.uniform(0, 2, size=(40, 2)), rng.normal(size=(40, 6))])
    batch = px.choose_batch(SPEC, tau, params, chunk=7)
    for p in range(40):
        np.testing.assert_array_equal(batch[p], px.LinearPolicy.from_vector(SPEC, params[p]).choose(tau))
    policies = [px.LinearPolicy.from_vector(SPEC, params[p]) for p in range(5)]
    np.testing.assert_array_equal(px.choose_batch(SPEC, tau, policies), batch[:5])


def test_ties_go_to_control():
    tau = np.zeros((4, 3, 3))
    assert px.LinearPolicy(SPEC).choose(tau).tolist() == [0, 0, 0, 0]


def test_every_arm_reachable_by_biases():
    tau = random_tau(n=50)
    for k, arm in itertools.product(range(1, 3), ["a", "b"]):
        if SPEC.arms[k] != arm:
            continue
        policy = px.LinearPolicy(SPEC, {"y1": 1.0}, {arm: {"y1": 100.0}})
        assert (policy.choose(tau) == k).all()


BAD = [
    (lambda: px.LinearPolicy(SPEC, {"y1": -1.0}), "must be a finite number >= 0"),
    (lambda: px.LinearPolicy(SPEC, {"nope": 1.0}), "unknown outcome"),
    (lambda: px.LinearPolicy(SPEC, {"y1": 1.0}, {"zz": {"y1": 1.0}}), "unknown treatment"),
    (lambda: px.LinearPolicy(SPEC, {"y1": 1.0}, {"c": {"y1": 1.0}}), "control arm"),
    (lambda: px.LinearPolicy.from_vector(SPEC, [1.0, 2.0]), r"shape \(8,\)"),
    (lambda: px.LinearPolicy(SPEC).choose(np.zeros((3, 2, 3))), r"must have shape"),
    (lambda: px.LinearPolicy(SPEC, {"y2": 1.0}).to_vector(), "first outcome"),
    (lambda: px.choose_batch(SPEC, random_tau(), np.ones((2, 5))), r"shape \(P, 8\)"),
]


@pytest.mark.parametrize(("call", "match"), BAD)
def test_bad_policy_input(call, match):
    with pytest.raises(px.PexkitError, match=match):
        call()
