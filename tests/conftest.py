from __future__ import annotations

import os
from pathlib import Path

import pytest

import pexkit as px

ROOT = Path(__file__).resolve().parents[1]
FAST = {"n_estimators": 30, "num_leaves": 15}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("PEXKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "hillstrom").is_dir():
        pytest.skip(f"shared data not found at {path}; set PEXKIT_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def sim() -> px.Simulation:
    return px.simulate("notifications", n_units=6000, seed=11)


@pytest.fixture(scope="session")
def fitted(sim: px.Simulation) -> px.EffectModel:
    return px.EffectModel(learner="t", n_folds=2, base_params=FAST).fit(sim.data)
