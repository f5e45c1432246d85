"""DR confidence intervals cover the oracle value at about the nominal rate."""

import numpy as np
import pytest

import pexkit as px
from pexkit.simulate.scenarios import NotificationsScenario

pytestmark = pytest.mark.slow
WEIGHTS = np.array([1.0, -10.0, 1.0])  # engagement, unsubscribe (minimized), revenue


def rule(means):
    """A fixed policy (a function of x only): best true utility."""
    tau = means[:, :, :3] - means[:, :1, :3]
    return np.argmax(tau @ WEIGHTS, axis=1)


def test_dr_lift_ci_covers_oracle_over_seeds():
    proc = NotificationsScenario()
    big = proc.means(proc.features(400_000, np.random.default_rng(12345)))
    policies = {
        "rule": rule,
        "all light": lambda mu: np.ones(mu.shape[0], dtype=int),
        "all heavy": lambda mu: np.full(mu.shape[0], 2),
    }
    truth = {}
    for name, fn in policies.items():
        a = fn(big)
        truth[name] = (big[np.arange(big.shape[0]), a, :3] - big[:, 0, :3]).mean(axis=0)
    hits = []
    for seed in range(30):
        sim = px.simulate("notifications", n_units=3000, seed=1000 + seed)
        model = px.EffectModel(
            learner="t", n_folds=2, base_params={"n_estimators": 30, "num_leaves": 7}
        ).fit(sim.data)
        scores = px.build_scores(sim.data, model)
        for name, fn in policies.items():
            v = px.evaluate_policy(fn(sim.true_means), sim.data, scores=scores)
            hits.extend((v.lift_ci[:, 0] <= truth[name]) & (truth[name] <= v.lift_ci[:, 1]))
    coverage = float(np.mean(hits))
    # 270 intervals (correlated within a seed): binomial sd ~0.013 at 0.95; allow 4 sd
    assert 0.89 <= coverage <= 0.995, coverage
