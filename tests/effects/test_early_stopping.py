"""LightGBM models stop early on a held-out share of their rows, and keep only their best trees."""

from __future__ import annotations

import numpy as np
import pytest

import pexkit as px
from pexkit.effects.boosting import LightGBMLearner, final_stage
from pexkit.exceptions import InvalidParameterError


def _data(n: int = 30_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = np.sin(X[:, 0]) + 0.5 * (X[:, 1] > 0) + rng.normal(size=n) * 2.0  # little signal
    return X, y


def test_a_noisy_target_stops_well_before_the_last_round_and_keeps_its_best_trees() -> None:
    X, y = _data()
    learner = LightGBMLearner({"n_estimators": 300, "early_stopping_rounds": 10})
    learner.bind(X, [])
    rows = np.arange(X.shape[0])
    model = learner.fit(rows, y, seed=1)
    full = LightGBMLearner({"n_estimators": 300, "early_stopping_rounds": 0})
    full.bind(X, [])
    every = full.fit(rows, y, seed=1)
    assert every.num_trees() == 300
    # with this much noise the held-out loss bottoms out early; the booster is cut there
    assert 5 <= model.num_trees() < 150
    # so on fresh rows from the same process it beats training every round (overfitting)
    Xn, yn = _data(20_000, seed=5)
    truth = np.sin(Xn[:, 0]) + 0.5 * (Xn[:, 1] > 0)
    err_stop = np.mean((model.predict(Xn) - truth) ** 2)
    err_all = np.mean((every.predict(Xn) - truth) ** 2)
    assert err_stop < err_all
    # what it saves and reloads is the cut model (no trees past its best round)
    again = type(model)(model_str=model.model_to_string())
    np.testing.assert_array_equal(again.predict(Xn), model.predict(Xn))


def test_small_models_and_the_second_stage_follow_their_own_rules() -> None:
    X, y = _data(5_000)
    learner = LightGBMLearner({"n_estimators": 80})  # default: stop after 10 flat rounds
    learner.bind(X, [])
    assert learner.stop_rounds == 10 and final_stage(learner).stop_rounds == 30
    assert learner.stop_rounds == 10  # the second stage is a copy sharing the bins
    # under 20,000 rows (the default early_stopping_min_rows) every round is trained
    assert learner.fit(np.arange(5_000), y, seed=0).num_trees() == 80
    with pytest.raises(InvalidParameterError, match="validation_fraction"):
        LightGBMLearner({"validation_fraction": 0.9})
    with pytest.raises(InvalidParameterError, match="early_stopping_rounds"):
        px.EffectModel(learner="t", base_params={"early_stopping_rounds": -1},
                       progress=False).fit(px.simulate("notifications", n_units=2000,
                                                       seed=0).data)
