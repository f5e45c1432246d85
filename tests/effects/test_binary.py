"""Binary outcomes: classification outcome models, probabilities in [0, 1], served exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import pexkit as px
from pexkit.serving import compile_policy
from pexkit.serving.artifact import export_policy
from pexkit.serving.evaluator import PolicyEvaluator

FEATURES = ["x0", "x1", "x2", "x3"]


def _clicks(n: int, seed: int, arms: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """A click-like log: P(click) = sigmoid(-2 + x0 + arm effect); true effects per unit."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    t = rng.integers(0, arms, n)
    logits = np.stack([-2 + X[:, 0] + k * (0.3 + 0.8 * X[:, 1]) / max(arms - 1, 1) * (1 + k)
                       for k in range(arms)], axis=1)
    p = expit(logits)
    df = pd.DataFrame(X, columns=FEATURES)
    df["t"] = t
    df["click"] = (rng.random(n) < p[np.arange(n), t]).astype(float)
    df["revenue"] = rng.normal(size=n) + 0.5 * X[:, 2] * (t > 0)
    return df, p[:, 1:] - p[:, :1]


def _spec(click_type: str | None, arms: int = 2) -> px.ExperimentSpec:
    click = {"name": "click", "weight": 3.0}
    if click_type is not None:
        click["type"] = click_type
    return px.ExperimentSpec(treatment="t", arms=list(range(arms)), numeric=FEATURES,
                             outcomes=[click, {"name": "revenue", "weight": 1.0}])


def test_binary_is_detected_and_declared_type_is_checked() -> None:
    df, _ = _clicks(500, 0)
    assert px.LoggedData.from_frame(df, _spec(None)).binary == (True, False)
    assert px.LoggedData.from_frame(df, _spec("continuous")).binary == (False, False)
    bad = df.assign(click=df.click * 2)
    with pytest.raises(px.InvalidDataError, match=r"declared 'type: binary'.*type: continuous"):
        px.LoggedData.from_frame(bad, _spec("binary"))


@pytest.mark.parametrize("learner", ["t", "s", "x", "dr"])
def test_outcome_predictions_are_probabilities(learner: str) -> None:
    df, _ = _clicks(4000, 1)
    data = px.LoggedData.from_frame(df, _spec(None))
    model = px.EffectModel(learner=learner, n_folds=3, random_state=0).fit(data)
    mu = model.predict_outcomes(df)[..., 0]
    assert mu.min() >= 0.0 and mu.max() <= 1.0
    assert np.all((model.mu_oof_[..., 0] >= 0) & (model.mu_oof_[..., 0] <= 1))
    # the same log fitted as a regression (the old behaviour) leaves [0, 1]
    reg = px.EffectModel(learner=learner, n_folds=3, random_state=0).fit(
        px.LoggedData.from_frame(df, _spec("continuous")))
    mu_reg = reg.predict_outcomes(df)[..., 0]
    assert mu_reg.min() < 0.0 or mu_reg.max() > 1.0


def test_classification_pehe_is_no_worse_than_regression() -> None:
    # 2 seeds of 20,000 units. Measured: auto (the S-learner here, which keeps squared
    # loss: a logistic one was 8% worse) 0.0636 both; T 0.119 vs 0.124; X 0.086 vs 0.089
    pehe: dict[tuple[str, str], list[float]] = {}
    for seed in (2, 3):
        df, tau = _clicks(20_000, seed)
        for kind in ("binary", "continuous"):
            data = px.LoggedData.from_frame(df, _spec(kind))
            for learner in ("auto", "t"):
                model = px.EffectModel(learner=learner, n_folds=3, random_state=seed).fit(data)
                err = np.sqrt(np.mean((model.effects_[:, 1, 0] - tau[:, 0]) ** 2))
                pehe.setdefault((learner, kind), []).append(float(err))
    mean = {key: float(np.mean(v)) for key, v in pehe.items()}
    assert mean[("auto", "binary")] <= 1.01 * mean[("auto", "continuous")], mean
    assert mean[("t", "binary")] < mean[("t", "continuous")], mean


@pytest.mark.parametrize("learner", ["t", "x"])
def test_compiled_policy_and_artifact_apply_the_sigmoid_exactly(learner: str) -> None:
    # three arms (the control terms are shared by both treated arms) and a binary outcome
    # whose T/S terms are probabilities: the kernel's columns per term and the sigmoid
    # afterwards reproduce the Python path
    df, _ = _clicks(5000, 4, arms=3)
    spec = _spec(None, arms=3)
    model = px.EffectModel(learner=learner, n_folds=2, random_state=0).fit(
        px.LoggedData.from_frame(df, spec))
    policy = px.LinearPolicy(spec, biases={1: {"click": 0.01}, 2: {"click": -0.02}})
    compiled = compile_policy(policy, model)
    # T's terms are the classifiers (probabilities); X's are regressions on imputed effects
    assert (compiled.links is not None and compiled.links.shape[1] == 3) == (learner == "t")
    X = compiled.matrix(df)
    effects = model.predict(df)
    reference = policy.utilities(effects)
    assert np.abs(compiled.utilities_matrix(X) - reference).max() < 1e-9
    assert np.array_equal(compiled.choose_matrix(X), policy.choose(effects))
    evaluator = PolicyEvaluator(export_policy(policy, model))
    assert np.abs(evaluator.utilities_matrix(X) - reference).max() < 1e-9
    assert np.array_equal(evaluator.choose_matrix(X), policy.choose(effects))
