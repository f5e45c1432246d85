"""`pexkit export`: a stored policy version to a numpy-only artifact."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pexkit as px
from pexkit.cli.main import app, main
from pexkit.effects.persist import dump_effect_model
from pexkit.explain.persist import dump_distilled
from pexkit.serving.evaluator import PolicyEvaluator
from pexkit.store import schema
from pexkit.store.db import EventStore

FAST = {"n_estimators": 30, "num_leaves": 15}
NAME = "exported"


def experiment_row(spec: px.ExperimentSpec) -> dict[str, Any]:
    """The experiments row the service writes (only the columns this schema has)."""
    values = {
        "name": NAME, "spec": spec.to_dict(), "tracking": [], "phase": "randomize",
        "salt": "0123456789abcdef", "epoch": 1, "holdout": 0.03, "launched_version": None,
        "arms": [], "state": {"epochs": {"1": "randomize"}}, "duplicates": 0, "version": 1,
        "created_at": datetime.now(UTC),
    }
    return {c.name: values[c.name] for c in schema.experiments.c if c.name in values}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    sim = px.simulate("notifications", n_units=3000, seed=1)
    spec = px.ExperimentSpec.from_dict({**sim.spec.to_dict(), "name": NAME})
    data = px.LoggedData.from_frame(sim.frame, spec)
    model = px.EffectModel(learner="x", n_folds=2, base_params=FAST, progress=False).fit(data)
    policy = px.LinearPolicy(spec, weights={"engagement": 1, "unsubscribe": 5, "revenue": 1})
    tree = px.distill(policy, model, max_depth=2)
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'pexkit.db'}"
    store = EventStore(url)
    assert store.create_experiment(experiment_row(spec))
    model_id = store.add_model(NAME, dump_effect_model(model), {})
    linear = store.add_policy(NAME, "linear", policy.to_dict(), model_id, "x")
    tree_id = store.add_model(NAME, dump_distilled(tree), {})
    tree_version = store.add_policy(NAME, "tree", {"source_version": linear}, tree_id, "tree")
    old_id = store.add_model(NAME, pickle.dumps({"a pickled": "model"}), {})
    old = store.add_policy(NAME, "linear", policy.to_dict(), old_id, "pickled")
    store.close()
    frame = px.simulate("notifications", n_units=500, seed=8).frame
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "platform"] = "smart-tv"
    return {
        "url": url, "model": model, "policy": policy, "tree": tree, "frame": frame,
        "linear": linear, "tree_version": tree_version, "old": old,
    }


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
        for rec in frame.to_dict("records")
    ]


def export(stored: dict[str, Any], version: int | str, out: Path, name: str = NAME) -> Any:
    return CliRunner().invoke(
        app, ["export", name, str(version), "--db", stored["url"], "--out", str(out)]
    )


def test_export_linear_and_tree_versions(stored: dict[str, Any], tmp_path: Path) -> None:
    frame = stored["frame"]
    result = export(stored, stored["linear"], tmp_path / "linear.json")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "evaluator.py" in result.output
    ev = PolicyEvaluator.load(tmp_path / "linear.json")
    expected = stored["policy"].choose(stored["model"].predict(frame))
    np.testing.assert_array_equal(ev.choose(records(frame)), expected)
    assert ev.doc["policy_version"] == stored["linear"]

    result = export(stored, stored["tree_version"], tmp_path / "sub" / "tree.json")
    assert result.exit_code == 0, result.output
    ev = PolicyEvaluator.load(tmp_path / "sub" / "tree.json")
    assert ev.kind == "tree"
    np.testing.assert_array_equal(ev.choose(records(frame)), stored["tree"].choose(frame))


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("nope", 2, "experiment 'nope' is not in the store"),
        (NAME, 99, "has no policy version 99"),
        (NAME, 1, "'uniform'"),
        (NAME, "launched", "has not launched a policy"),
        (NAME, "latest", "expected a policy version number or 'launched'"),
    ],
)
def test_export_errors_exit_2(
    stored: dict[str, Any], tmp_path: Path, name: str, version: int, message: str
) -> None:
    result = export(stored, version, tmp_path / "out.json", name=name)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out.json").exists()


def test_pickled_blob_is_refused(stored: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", NAME, str(stored["old"]), "--db", stored["url"], "--out",
              str(tmp_path / "old.json")])
    assert exit_info.value.code == 2
    assert "pickle" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "old.json").exists()
