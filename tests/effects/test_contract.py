"""Contract tests run on every registered learner and base learner (sklearn's test_common style)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import pexkit as px
from pexkit.effects import LEARNERS

FAST = {"n_estimators": 20, "num_leaves": 15}
ALL = [*LEARNERS, "auto"]


@pytest.fixture(scope="module")
def small():
    return px.simulate("notifications", n_units=1500, seed=3)


def test_default_constructor_and_params():
    model = px.EffectModel()
    params = model.get_params()
    assert params["learner"] == "auto" and params["base"] == "lightgbm"
    assert params["n_folds"] == 3 and params["random_state"] == 0
    cloned = clone(model)
    assert cloned is not model and cloned.get_params() == params
    with pytest.raises(px.InvalidParameterError, match="no parameter"):
        model.set_params(depth=3)


@pytest.mark.parametrize("learner", ALL)
@pytest.mark.parametrize("base", ["lightgbm", "xgboost"])
def test_learner_contract(small, learner, base):
    params = FAST if base == "lightgbm" else {"n_estimators": 20, "max_depth": 4}
    model = px.EffectModel(learner=learner, base=base, n_folds=2, base_params=params, random_state=1)
    with pytest.raises(px.NotFittedError, match="not fitted"):
        model.predict(small.data)
    assert model.fit(small.data) is model
    n, K, M = small.data.n_units, 3, 3
    tau = model.predict(small.data)
    assert tau.shape == (n, K, M)
    assert np.all(tau[:, 0, :] == 0)
    assert np.isfinite(tau).all()
    assert model.effects_.shape == (n, K, M) and np.all(model.effects_[:, 0, :] == 0)
    assert model.mu_oof_.shape == (n, K, M) and model.scores_.shape == (n, K, M)
    # a raw frame predicts the same as the LoggedData
    np.testing.assert_allclose(model.predict(small.frame.head(50)), tau[:50])
    # same seed -> same result
    again = clone(model).fit(small.data)
    np.testing.assert_allclose(again.predict(small.data), tau)
    # ate frame
    ate = model.ate()
    assert list(ate.columns) == ["treatment", "outcome", "estimate", "se", "ci_low", "ci_high"]
    assert len(ate) == (K - 1) * M
    assert (ate.ci_low < ate.estimate).all() and (ate.estimate < ate.ci_high).all()
    sel = model.selection_
    expected = {learner} if learner != "auto" else set(LEARNERS)
    assert set(sel.learner) <= expected
    assert len(sel) == (K - 1) * M


def test_auto_picks_the_cell_best_or_the_overall_best(small):
    model = px.EffectModel(n_folds=2, base_params=FAST).fit(small.data)
    sel = model.selection_
    losses = sel[[f"loss_{name}" for name in LEARNERS]].to_numpy()
    best = np.array(LEARNERS)[losses.argmin(axis=1)]
    assert (sel.best_in_cell.to_numpy() == best).all()
    assert sel.overall_best.nunique() == 1
    for row in sel.itertuples():
        expected = row.best_in_cell if row.z_vs_overall > 2 else row.overall_best
        assert row.learner == expected


def test_different_seeds_differ(small):
    a = px.EffectModel(learner="dr", n_folds=2, base_params=FAST, random_state=0).fit(small.data)
    b = px.EffectModel(learner="dr", n_folds=2, base_params=FAST, random_state=1).fit(small.data)
    assert not np.allclose(a.effects_, b.effects_)


BAD = [
    ({"learner": "forest"}, "'learner' must be"),
    ({"n_folds": 1}, "'n_folds' must be"),
    ({"candidates": ("t", "q")}, "'candidates' must be"),
    ({"base": "catboost"}, "'base' must be one of"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD)
def test_bad_parameters(small, kwargs, match):
    with pytest.raises(px.InvalidParameterError, match=match):
        px.EffectModel(**kwargs).fit(small.data)


def test_too_few_rows_for_folds():
    sim = px.simulate("notifications", n_units=60, seed=0)
    data = px.LoggedData.from_frame(sim.frame, sim.spec, min_rows_per_arm=5)
    with pytest.raises(px.InvalidDataError, match="rows per arm to cross-fit"):
        px.EffectModel(n_folds=15).fit(data)


def test_fit_rejects_a_frame(small):
    with pytest.raises(px.InvalidDataError, match="LoggedData"):
        px.EffectModel().fit(pd.DataFrame(small.frame))


def test_predict_needs_the_features(fitted, sim):
    with pytest.raises(px.InvalidDataError, match="missing"):
        fitted.predict(sim.frame.drop(columns=["age"]))
