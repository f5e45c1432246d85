"""Seeded experiment logs whose true effects are a known tree (or zero)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pexkit as px

ARMS = ["control", "a", "b"]
SMALL = {"n_estimators": 40, "num_leaves": 7}


def tree_truth(X: np.ndarray, plan: np.ndarray) -> np.ndarray:
    """True effects (n, 3, 2): a step tree in x1, x3 and plan == "team" (the last category)."""
    n = X.shape[0]
    tau = np.zeros((n, 3, 2))
    tau[:, 1, 0] = np.where(X[:, 1] > 0, 1.0, 0.0)
    tau[:, 1, 1] = np.where(plan == "team", 0.6, 0.0)
    tau[:, 2, 0] = np.where(X[:, 3] < -0.3, 0.9, -0.2)
    tau[:, 2, 1] = np.where(X[:, 1] > 0, 0.4, -0.4)
    return tau


def make_log(n: int, seed: int, signal: bool = True) -> tuple[px.LoggedData, np.ndarray]:
    """A randomized log: 5 uniform features and a categorical plan, 3 arms, 2 outcomes (noise sd 1)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 5))
    plan = rng.choice(["basic", "pro", "team"], n)
    arm = rng.integers(0, 3, n)
    tau = tree_truth(X, plan) if signal else np.zeros((n, 3, 2))
    base = np.column_stack([0.5 * X[:, 0], 0.3 * X[:, 2]])
    mu = base[:, None, :] + tau
    y = mu[np.arange(n), arm] + rng.normal(0, 1, (n, 2))
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(5)])
    frame["plan"] = plan
    frame["arm"] = np.asarray(ARMS)[arm]
    frame["clicks"] = y[:, 0]
    frame["cost"] = y[:, 1]
    spec = px.ExperimentSpec(
        name="tree-truth",
        treatment={"column": "arm", "arms": ARMS},
        outcomes=[{"name": "clicks", "goal": "maximize"}, {"name": "cost", "goal": "minimize"}],
        numeric=[f"x{j}" for j in range(5)],
        categorical=["plan"],
    )
    return px.LoggedData.from_frame(frame, spec), tau


@pytest.fixture(scope="module")
def tree_log() -> tuple[px.LoggedData, np.ndarray, px.EffectModel]:
    data, tau = make_log(8000, seed=0)
    model = px.EffectModel(learner="t", n_folds=2, base_params=SMALL, random_state=0).fit(data)
    return data, tau, model
