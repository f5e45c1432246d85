"""Training rows are recognized by content: a reloaded log, a subset, an overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.evaluation.scores import build_scores

WEIGHTS = {"engagement": 1.0, "unsubscribe": 2.0, "revenue": 1.0}


@pytest.fixture(scope="module")
def setup() -> tuple[px.Simulation, px.EffectModel, px.Simulation]:
    sim = px.simulate("notifications", n_units=3000, seed=21)
    model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 30},
                           progress=False).fit(sim.data)
    return sim, model, px.simulate("notifications", n_units=1000, seed=22)


def test_a_reloaded_log_is_in_sample(setup, tmp_path) -> None:
    sim, model, _ = setup
    path = tmp_path / "log.csv"
    sim.frame.to_csv(path, index=False)
    again = px.LoggedData.from_frame(pd.read_csv(path), sim.spec)
    assert again is not model.data_
    assert (model.training_rows(again) == np.arange(sim.data.n_units)).all()
    policy = px.LinearPolicy(sim.spec, WEIGHTS)
    same = px.evaluate_policy(policy, again, model)
    ref = px.evaluate_policy(policy, sim.data, model)
    np.testing.assert_allclose(same.value, ref.value, rtol=1e-12)
    np.testing.assert_allclose(same.lift_se, ref.lift_se, rtol=1e-12)
    # what object identity used to give (the fold-averaged models, on rows they saw) differs
    assert not np.allclose(model.predict_outcomes(again), model.mu_oof_)


def test_a_subset_and_an_overlap_keep_out_of_fold_rows(setup) -> None:
    sim, model, new = setup
    half = sim.data.subset(np.arange(0, sim.data.n_units, 2))
    np.testing.assert_array_equal(build_scores(half, model).dr, model.scores_[::2])
    np.testing.assert_array_equal(model.effects_for(half), model.effects_[::2])
    # the first 500 training rows, then 1,000 new units
    fresh = new.frame.copy()
    fresh[sim.spec.unit] += 10**6  # other units
    both = px.LoggedData.from_frame(
        pd.concat([sim.frame.iloc[:500], fresh], ignore_index=True), sim.spec)
    rows = model.training_rows(both)
    assert (rows[:500] == np.arange(500)).all() and (rows[500:] == -1).all()
    tau = model.effects_for(both)
    np.testing.assert_array_equal(tau[:500], model.effects_[:500])
    np.testing.assert_allclose(tau[500:], model.predict(new.data), rtol=1e-12)
    mu = model.outcomes_for(both)
    np.testing.assert_array_equal(mu[:500], model.mu_oof_[:500])


def test_other_rows_do_not_match(setup) -> None:
    sim, model, new = setup
    # another log of the same size has the same row positions but other content
    other = px.simulate("notifications", n_units=3000, seed=23)
    assert (model.training_rows(other.data) == -1).all()
    # one changed outcome makes a row new
    frame = sim.frame.iloc[:10].copy()
    frame.loc[3, sim.spec.outcome_names[0]] += 1.0
    rows = model.training_rows(px.LoggedData.from_frame(frame, sim.spec, min_rows_per_arm=1,
                                                        warn_srm=False))
    assert rows[3] == -1 and (np.delete(rows, 3) == np.delete(np.arange(10), 3)).all()


def test_explanations_on_a_subset_use_its_training_folds(setup) -> None:
    sim, model, _ = setup
    half = sim.data.subset(np.arange(0, sim.data.n_units, 2))
    policy = px.LinearPolicy(sim.spec, WEIGHTS)
    tree = px.distill(policy, model, half, max_depth=2)
    assert tree.evaluation == "cross-fitted" and tree.n_units == half.n_units
    seg = px.segments(model, half, max_depth=2)
    assert "cross-fitting fold" in seg.method
