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
    worst = np.max([errors[n] for n in ("t", "s", "x", "dr")], axis=0)
    # the held-out DR loss is a noisy proxy: auto must beat the worst learner in
    # every cell and stay within 25% of the best one on average
    assert (errors["auto"] <= worst + 1e-12).all()
    assert errors["auto"].mean() <= 1.25 * best.mean()


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
