"""The meta-learner protocol: each learner's terms are its effect, written out by hand here."""

from __future__ import annotations

import numpy as np
import pytest

import pexkit as px
from pexkit.effects.boosting import make_base_learner
from pexkit.effects.learners import LEARNER_CLASSES, FitContext, MetaLearner


@pytest.fixture(scope="module")
def sim() -> px.Simulation:
    return px.simulate("notifications", n_units=2500, seed=3)


def _by_hand(model: px.EffectModel, learner: str, X: np.ndarray) -> np.ndarray:
    """tau (n, K, M) from the learner's fitted models, by each method's formula."""
    n_treat, n_out = model.spec_.n_treatments, model.spec_.n_outcomes
    tau = np.zeros((X.shape[0], n_treat, n_out))
    state = model.learners_fitted_[learner]

    def pred(booster: object, Z: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(Z))  # type: ignore[attr-defined]

    shares = np.bincount(model.data_.treatment, minlength=n_treat) / model.data_.n_units
    for k in range(1, n_treat):
        for m in range(n_out):
            if learner == "t":
                tau[:, k, m] = np.mean([pred(f[k][m], X) - pred(f[0][m], X)
                                        for f in model.outcome_models_], axis=0)
            elif learner == "dr":
                tau[:, k, m] = np.mean([pred(b, X) for b in state[k][m]], axis=0)
            elif learner == "x":
                g = shares[k] / (shares[k] + shares[0])
                tau[:, k, m] = np.mean([g * pred(t0, X) + (1 - g) * pred(t1, X)
                                        for t0, t1 in state[k][m]], axis=0)
            else:
                _, models = state

                def at(arm: int, X: np.ndarray = X) -> np.ndarray:
                    return np.column_stack([X, np.full(len(X), float(arm))])

                tau[:, k, m] = np.mean([pred(b, at(k)) - pred(b, at(0)) for b in models[m]], axis=0)
    return tau


@pytest.mark.parametrize("learner", ["t", "s", "x", "dr"])
def test_terms_are_the_learners_effect(sim: px.Simulation, learner: str) -> None:
    model = px.EffectModel(learner=learner, n_folds=3, random_state=0, progress=False,
                           base_params={"n_estimators": 30}).fit(sim.data)
    X = model._matrix(px.simulate("notifications", n_units=400, seed=4).frame)
    expected = _by_hand(model, learner, X)
    assert np.abs(expected[:, 1:]).max() > 1e-3  # a real effect, not zeros on both sides
    np.testing.assert_allclose(model.predict(X_frame := px.simulate(
        "notifications", n_units=400, seed=4).frame), expected, atol=1e-10)
    # the terms, evaluated one by one, add up to the same effect
    fitted: MetaLearner = model.fitted_learner(learner)
    assert isinstance(fitted, LEARNER_CLASSES[learner])
    for k in range(1, model.spec_.n_treatments):
        for m in range(model.spec_.n_outcomes):
            total = np.zeros(len(X))
            for term in fitted.terms(k, m):
                Z = X if term.arm is None else np.column_stack([X, np.full(len(X), term.arm)])
                total += term.coef * term.base.predict(term.model, Z)
            np.testing.assert_allclose(total, expected[:, k, m], atol=1e-10)
    assert len(X_frame) == 400


class _CountingBar:
    def __init__(self) -> None:
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.done += n


@pytest.mark.parametrize(("learner", "n_folds"), [("dr", 3), ("dr", 2), ("x", 3), ("s", 2), ("t", 3)])
def test_a_learner_refit_through_the_protocol_reproduces_the_model(
    sim: px.Simulation, learner: str, n_folds: int
) -> None:
    model = px.EffectModel(learner=learner, n_folds=n_folds, random_state=0, progress=False,
                           base_params={"n_estimators": 20}).fit(sim.data)
    ctx = FitContext(
        base=model._base, X=model._matrix(sim.data), data=sim.data, folds=model.folds_,
        n_folds=n_folds, seed=0, mu=model.mu_oof_, outcome_models=model.outcome_models_,
        make_base=lambda: make_base_learner("lightgbm", {"n_estimators": 20}, 0),
    )
    bar = _CountingBar()
    cls = LEARNER_CLASSES[learner]
    oof, _ = cls.fit(ctx, bar)
    np.testing.assert_array_equal(oof, model.effects_)
    # the progress bar's total is what the fit advances it by (it read 90/63 with DR pairs)
    assert bar.done == cls.stage_models(n_folds, model.spec_.n_treatments, model.spec_.n_outcomes)


def test_unfitted_learner_names_are_refused(sim: px.Simulation) -> None:
    model = px.EffectModel(learner="t", n_folds=2, progress=False,
                           base_params={"n_estimators": 5}).fit(sim.data)
    with pytest.raises(px.PexkitError, match="was not fitted"):
        model.fitted_learner("dr")
