"""Recovery on the simulator: known CATE, errors that shrink with n."""

import numpy as np
import pytest

import pexkit as px

pytestmark = pytest.mark.slow
PARAMS = {"n_estimators": 60, "num_leaves": 15, "min_child_samples": 40}


def rmse(model, sim):
    err = model.effects_[:, 1:, :] - sim.true_cate()[:, 1:, :]
    return np.sqrt((err**2).mean(axis=0))  # (K-1, M)


def test_cate_error_shrinks_with_n():
    small = px.simulate("notifications", n_units=4000, seed=5)
    large = px.simulate("notifications", n_units=32000, seed=5)
    e_small = rmse(px.EffectModel(n_folds=3, base_params=PARAMS).fit(small.data), small)
    e_large = rmse(px.EffectModel(n_folds=3, base_params=PARAMS).fit(large.data), large)
    # 8x the data: every cell's error must fall; on average by at least a quarter
    assert (e_large < e_small).all(), (e_small, e_large)
    assert e_large.mean() < 0.75 * e_small.mean()


def test_auto_is_close_to_the_best_single_learner():
    sim = px.simulate("notifications", n_units=16000, seed=8)
    errors = {
        name: rmse(px.EffectModel(learner=name, n_folds=3, base_params=PARAMS).fit(sim.data), sim)
        for name in ("t", "s", "x", "dr", "auto")
    }
    best = np.min([errors[n] for n in ("t", "s", "x", "dr")], axis=0)
    # every error is against the simulator's true effects: auto picks per cell by a
    # held-out DR loss (a noisy proxy of this error), so it must land within 25% of the
    # best learner in every cell (it matched the best in all 6 cells on seeds 8 and 9)
    assert (errors["auto"] <= 1.25 * best).all(), (errors["auto"], best)
    # and it must capture the heterogeneity: in the three cells whose true effects vary
    # most (light/engagement, heavy/engagement, heavy/revenue) its error is under the
    # spread that a constant (the true ATE itself) would leave; measured 0.32-0.88 of it
    tc = sim.true_cate()[:, 1:, :]
    spread = tc.std(axis=0)
    varied = spread > np.median(spread)
    assert (errors["auto"][varied] < spread[varied]).all(), (errors["auto"], spread)


def test_ate_recovers_the_true_average_effect():
    sim = px.simulate("notifications", n_units=20000, seed=2)
    model = px.EffectModel(learner="t", n_folds=3, base_params=PARAMS).fit(sim.data)
    ate = model.ate()
    true = sim.true_cate().mean(axis=0)
    spec = sim.spec
    for row in ate.itertuples():
        t = true[spec.treatment_index(row.treatment), spec.outcome_index(row.outcome)]
        # 4 standard errors: a false alarm has probability ~6e-5 per cell
        assert abs(row.estimate - t) < 4 * row.se, (row, t)
