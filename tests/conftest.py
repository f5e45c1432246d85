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


# The longest test files, run first: `make test` spreads files over two processes in
# collection order, so a long file collected last (the README's) would run alone at the end.
LONG_FIRST = ("test_readme.py", "test_phases.py", "test_schema_fuzz.py", "test_tuning.py",
              "test_hardening.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable otherwise
