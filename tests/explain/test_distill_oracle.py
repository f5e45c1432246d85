"""Distillation against the simulator's truth (issue "Understanding the policy").

Setting: notifications simulator, utility weights engagement 1, unsubscribe 2,
revenue 0.5. There the best single treatment is "heavy" (true utility lift vs
control 0.627 on the population) and the oracle-optimal personalized policy
reaches 0.715, so personalization is worth about 0.09; a T-learner on 10,000
units gets about 0.05-0.06 of it (checked below as a precondition: the
black box must beat every single treatment in truth by at least 0.02, about
4 population standard errors of nothing -- the truth here has no sampling noise
beyond the 100,000-unit population average, whose Monte Carlo error is < 0.005).
(The earlier setting, weights 1/10/1, had the black box below "all light" in
truth: its ratio was meaningless.)

Truth: ``true_means`` of a fresh 100,000-unit population. The black box's
oracle counterpart is defined like the estimate's (see pexkit.explain.distill):
on held-out data, ``policy.choose(model.predict(x))``; on the model's own data,
the cross-fitted black box, each population unit decided by one fold's models
(drawn at random, as each training unit is decided by the fold model that did
not see it).
"""

from __future__ import annotations

import numpy as np
import pytest

import pexkit as px
from pexkit.explain import distill

WEIGHTS = {"engagement": 1.0, "unsubscribe": 2.0, "revenue": 0.5}
PARAMS = {"n_estimators": 30, "num_leaves": 15}

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def population() -> px.Simulation:
    return px.simulate("notifications", n_units=100_000, seed=999)


def fold_effects(model: px.EffectModel, X: np.ndarray, fold: int) -> np.ndarray:
    """T-learner effects from one cross-fitting fold's outcome models."""
    K, M = model.spec_.n_treatments, model.spec_.n_outcomes
    mu = np.stack(
        [
            np.stack([model._base.predict(model.outcome_models_[fold][k][m], X) for m in range(M)], -1)
            for k in range(K)
        ],
        axis=1,
    )
    return mu - mu[:, :1, :]


def oracle(pop: px.Simulation, policy: px.LinearPolicy, tree_actions, black_actions, baseline: int):
    U = pop.true_means[:, :, : pop.spec.n_outcomes] @ policy.signed_weights()
    rows = np.arange(U.shape[0])

    def lift(actions):
        return float(np.mean(U[rows, actions] - U[:, 0]))

    tree, black, single = lift(tree_actions), lift(black_actions), float(np.mean(U[:, baseline] - U[:, 0]))
    return {
        "fidelity": float(np.mean(tree_actions == black_actions)),
        "value_kept": tree / black,
        "gain_kept": (tree - single) / (black - single),
    }


def covers(ci, x) -> bool:
    return ci[0] <= x <= ci[1]


def test_depth3_tree_keeps_the_black_box_gain_and_cis_cover_the_truth(population):
    pop = population
    U = pop.true_means[:, :, :3] @ px.LinearPolicy(pop.spec, WEIGHTS).signed_weights()
    single = (U - U[:, :1]).mean(axis=0)
    best_single = int(np.argmax(single))
    assert pop.spec.arms[best_single] == "heavy"
    covered = {(kind, q): 0 for kind in ("held-out", "cross-fitted")
               for q in ("fidelity", "value_kept", "gain_kept")}
    for seed in SEEDS:
        sim = px.simulate("notifications", n_units=10_000, seed=seed)
        holdout = px.simulate("notifications", n_units=10_000, seed=100 + seed)
        model = px.EffectModel(learner="t", n_folds=2, base_params=PARAMS, random_state=seed).fit(sim.data)
        policy = px.LinearPolicy(sim.spec, WEIGHTS)
        Xp = model._matrix(pop.frame)
        served = policy.choose(model.predict(pop.frame))
        pick = np.random.default_rng(seed).integers(0, 2, Xp.shape[0])
        tau_cf = np.where(pick[:, None, None] == 0, fold_effects(model, Xp, 0), fold_effects(model, Xp, 1))
        crossfit = policy.choose(tau_cf)

        # precondition: the black box clearly beats every single treatment in truth
        black_lift = float(np.mean(U[np.arange(len(U)), served] - U[:, 0]))
        assert black_lift - single.max() > 0.02, (seed, black_lift, single)

        for kind, d, black in (
            ("held-out", distill(policy, model, holdout.data, max_depth=3), served),
            ("cross-fitted", distill(policy, model, max_depth=3), crossfit),
        ):
            assert d.evaluation == kind
            assert d.baseline == "heavy"  # the DR-estimated best single arm is the true one
            tree_actions = d.choose(pop.frame)
            truth = oracle(pop, policy, tree_actions, black, best_single)
            # the tree keeps >= 90% of the served black box's oracle gain over "all heavy"
            gain_vs_served = oracle(pop, policy, tree_actions, served, best_single)["gain_kept"]
            assert gain_vs_served >= 0.9, (seed, kind, gain_vs_served)
            covered[(kind, "fidelity")] += covers(d.fidelity_ci, truth["fidelity"])
            covered[(kind, "value_kept")] += covers(d.value_kept_ci, truth["value_kept"])
            covered[(kind, "gain_kept")] += covers(d.gain_kept_ci, truth["gain_kept"])
    # 95% intervals over 3 seeds: demand 2 of 3 (a 95% interval misses 2+ of 3 with
    # probability < 0.01). Over 12 seeds we saw fidelity cover 11/12, both ratios 12/12.
    assert all(count >= 2 for count in covered.values()), covered
