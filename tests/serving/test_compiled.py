"""Compiled policies reproduce policy.choose(model.predict(x)) for every learner."""

from __future__ import annotations

import numpy as np
import pytest

import pexkit as px
from pexkit.exceptions import InvalidParameterError
from pexkit.serving import bucket, compile_policy, uniform_arm


@pytest.fixture(scope="module")
def sim() -> px.Simulation:
    return px.simulate("notifications", n_units=3000, seed=5)


@pytest.mark.parametrize("learner", ["t", "s", "x", "dr"])
def test_compiled_matches_predict(sim: px.Simulation, learner: str) -> None:
    model = px.EffectModel(learner=learner, n_folds=2, random_state=0, progress=False).fit(sim.data)
    policy = px.LinearPolicy(model.spec_, weights={"engagement": 1, "unsubscribe": 5, "revenue": 1},
                             biases={"heavy": {"engagement": -0.1}})
    compiled = compile_policy(policy, model)
    assert compiled.kernel == "quickscorer"  # the fast path is the one checked against predict
    test = px.simulate("notifications", n_units=1500, seed=6).frame
    test.loc[::7, "age"] = np.nan  # missing values follow LightGBM's rules
    test.loc[::11, "platform"] = "smart-tv"  # an unseen category
    u_ref = policy.utilities(model.predict(test))
    u = compiled.utilities_matrix(compiled.matrix(test))
    np.testing.assert_allclose(u, u_ref, atol=1e-9)
    recs = test.to_dict("records")
    for r in recs:
        if isinstance(r["age"], float) and np.isnan(r["age"]):
            r["age"] = None
    np.testing.assert_allclose(compiled.encode_records(recs), compiled.matrix(test), equal_nan=True)
    np.testing.assert_array_equal(compiled.choose(test), np.argmax(u_ref, axis=1))
    if learner == "s":
        # arm 0's model is walked once for both treated arms, and trees that never split
        # on the arm (f(x, k) - f(x, 0) = 0) not at all: fewer than 3 of the 4 walks
        _, models = model.learners_fitted_["s"]
        per_walk = sum(b.num_trees() for fold in models for b in fold)
        assert compiled.shifted
        assert compiled.n_trees < 3 * per_walk


def test_zero_weight_outcomes_are_skipped(sim: px.Simulation) -> None:
    model = px.EffectModel(learner="t", n_folds=2, random_state=0, progress=False).fit(sim.data)
    full = compile_policy(px.LinearPolicy(model.spec_, weights={"engagement": 1, "revenue": 1}),
                          model)
    one = compile_policy(px.LinearPolicy(model.spec_, weights={"engagement": 1}), model)
    assert one.n_trees * 2 == full.n_trees
    with pytest.raises(InvalidParameterError, match="encoded matrix"):
        one.utilities_matrix(np.zeros((2, 3)))


def test_assignment_is_deterministic_and_uniform() -> None:
    arms = [uniform_arm("salt-1234", "randomize", f"u{i}", 3) for i in range(30_000)]
    assert arms == [uniform_arm("salt-1234", "randomize", f"u{i}", 3) for i in range(30_000)]
    counts = np.bincount(arms, minlength=3)
    # Binomial(30000, 1/3): sd 81.6; 4 sd
    assert np.all(np.abs(counts - 10_000) < 4 * 81.6)
    # another salt or purpose gives an independent assignment (agreement ~1/3)
    other = [uniform_arm("salt-9999", "randomize", f"u{i}", 3) for i in range(30_000)]
    assert abs(np.mean(np.asarray(arms) == np.asarray(other)) - 1 / 3) < 0.02
    assert 0 <= bucket("s", "holdout", "u1") < 1
