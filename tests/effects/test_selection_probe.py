"""auto on a large log: learners compared on a subsample, only the chosen ones fitted in full."""

from __future__ import annotations

import numpy as np
import pytest

import pexkit as px

PARAMS = {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 40}


def test_only_the_chosen_learners_are_fitted_on_the_whole_log() -> None:
    sim = px.simulate("notifications", n_units=9000, seed=4)
    model = px.EffectModel(n_folds=2, base_params=PARAMS, selection_rows=3000,
                           progress=False).fit(sim.data)
    probe = model.selection_probe_
    assert probe is not None and set(probe.columns) >= {"loss_t", "loss_s", "loss_x", "loss_dr"}
    used = set(probe["learner"])
    # second stages only for what the subsample chose (T needs none)
    assert set(model.learners_fitted_) == used
    assert {str(v) for v in np.ravel(model.chosen_) if v is not None} <= used
    # the whole-log fit of the chosen learner is the plain fit of that learner: same folds,
    # same seeds, the same out-of-fold effects
    if len(used) == 1:
        (only,) = used
        plain = px.EffectModel(learner=only, n_folds=2, base_params=PARAMS,
                               progress=False).fit(sim.data)
        np.testing.assert_array_equal(model.effects_, plain.effects_)
    # and in truth it is as good as comparing every candidate on the whole log
    full = px.EffectModel(n_folds=2, base_params=PARAMS, selection_rows=None,
                          progress=False).fit(sim.data)
    assert full.selection_probe_ is None and set(full.learners_fitted_) == {"t", "s", "x", "dr"}
    truth = sim.true_cate()[:, 1:, :]

    def rmse(m: px.EffectModel) -> float:
        return float(np.sqrt(((m.effects_[:, 1:, :] - truth) ** 2).mean()))

    assert rmse(model) <= 1.1 * rmse(full), (rmse(model), rmse(full))


def test_selection_rows_is_checked() -> None:
    sim = px.simulate("notifications", n_units=500, seed=4)
    for bad in (10, 2.5, True):
        with pytest.raises(px.InvalidParameterError, match="'selection_rows'"):
            px.EffectModel(selection_rows=bad).fit(sim.data)
