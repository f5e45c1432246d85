"""Exported policy artifacts: the numpy-only evaluator decides as pexkit does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.exceptions import InvalidParameterError
from pexkit.serving import compile_policy
from pexkit.serving import evaluator as evaluator_module
from pexkit.serving.artifact import export_distilled, export_policy, write_artifact
from pexkit.serving.evaluator import PolicyEvaluator

WEIGHTS = {"engagement": 1.0, "unsubscribe": 5.0, "revenue": 1.0}
BIASES = {"heavy": {"engagement": -0.1}}
FAST = {"n_estimators": 40, "num_leaves": 15}


@pytest.fixture(scope="module")
def sim() -> px.Simulation:
    return px.simulate("notifications", n_units=3000, seed=5)


@pytest.fixture(scope="module")
def test_frame() -> pd.DataFrame:
    frame = px.simulate("notifications", n_units=1500, seed=6).frame
    frame.loc[::7, "age"] = np.nan  # missing values follow LightGBM's rules
    frame.loc[::11, "platform"] = "smart-tv"  # an unseen category
    frame.loc[::13, "region"] = None  # a missing category
    return frame


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in frame.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()})
    return out


@pytest.fixture(scope="module")
def models(sim: px.Simulation) -> dict[str, px.EffectModel]:
    return {
        learner: px.EffectModel(
            learner=learner, n_folds=2, random_state=0, base_params=FAST, progress=False
        ).fit(sim.data)
        for learner in ("t", "x", "dr", "s")
    }


def through_json(artifact: dict[str, Any]) -> dict[str, Any]:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(json.dumps(artifact, allow_nan=False), parse_constant=refuse)  # type: ignore[no-any-return]


@pytest.mark.parametrize("learner", ["t", "x", "dr", "s"])
def test_linear_artifact_matches_compiled_and_predict(
    models: dict[str, px.EffectModel], test_frame: pd.DataFrame, learner: str
) -> None:
    model = models[learner]
    policy = px.LinearPolicy(model.spec_, weights=WEIGHTS, biases=BIASES)
    compiled = compile_policy(policy, model)
    artifact = through_json(export_policy(policy, model))
    assert artifact["format"] == "pexkit.policy-artifact" and artifact["version"] == 1
    assert artifact["kind"] == "linear"
    ev = PolicyEvaluator.load(artifact)
    assert ev.arms == list(model.spec_.arms)
    assert ev.features == list(model.spec_.features)
    X = compiled.matrix(test_frame)
    records = records_of(test_frame)
    np.testing.assert_array_equal(ev.encode(records), compiled.encode_records(records))
    # the same additions in the same order as the compiled kernel: identical utilities
    np.testing.assert_array_equal(ev.utilities_matrix(X), compiled.utilities_matrix(X))
    np.testing.assert_allclose(
        ev.utilities_matrix(X), policy.utilities(model.predict(test_frame)), atol=1e-9
    )
    expected = policy.choose(model.predict(test_frame))
    np.testing.assert_array_equal(compiled.choose_matrix(X), expected)
    np.testing.assert_array_equal(ev.choose_matrix(X), expected)
    np.testing.assert_array_equal(ev.choose(records), expected)
    np.testing.assert_array_equal(ev.choose_matrix(X.astype(np.float32)),
                                  compiled.choose_matrix(X.astype(np.float32)))
    assert len(set(expected.tolist())) > 1  # the test decides something


def test_one_outcome_policy_and_single_record(models: dict[str, px.EffectModel],
                                              test_frame: pd.DataFrame) -> None:
    model = models["t"]
    policy = px.LinearPolicy(model.spec_, weights={"revenue": 1.0})
    ev = PolicyEvaluator.load(export_policy(policy, model))
    rec = records_of(test_frame.head(1))[0]
    assert ev.choose(rec).tolist() == policy.choose(model.predict(test_frame.head(1))).tolist()
    assert ev.choose([]).shape == (0,)
    with pytest.raises(ValueError, match="encoded matrix with 10 columns"):
        ev.choose_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="record 0, feature 'age': expected a number"):
        ev.choose([{**rec, "age": "old"}])


def test_distilled_tree_artifact(models: dict[str, px.EffectModel], test_frame: pd.DataFrame) -> None:
    model = models["t"]
    policy = px.LinearPolicy(model.spec_, weights=WEIGHTS, biases=BIASES)
    tree = px.distill(policy, model, max_depth=3)
    artifact = through_json(export_distilled(tree))
    assert artifact["kind"] == "tree"
    ev = PolicyEvaluator.load(artifact)
    expected = tree.choose(test_frame)
    np.testing.assert_array_equal(tree.compile().choose(test_frame), expected)
    np.testing.assert_array_equal(ev.choose(records_of(test_frame)), expected)
    np.testing.assert_array_equal(ev.choose_matrix(model._matrix(test_frame)), expected)
    with pytest.raises(ValueError, match="linear policy artifacts only"):
        ev.utilities_matrix(model._matrix(test_frame))
    with pytest.raises(InvalidParameterError, match="DistilledPolicy"):
        export_distilled(policy)  # type: ignore[arg-type]


def test_refuses_other_formats_and_versions(models: dict[str, px.EffectModel], tmp_path: Path) -> None:
    model = models["t"]
    artifact = export_policy(px.LinearPolicy(model.spec_), model)
    with pytest.raises(ValueError, match="version 2 is not one this evaluator reads"):
        PolicyEvaluator.load({**artifact, "version": 2})
    with pytest.raises(ValueError, match="expected format 'pexkit.policy-artifact'; found 'x'"):
        PolicyEvaluator.load({**artifact, "format": "x"})
    with pytest.raises(ValueError, match="incomplete or malformed"):
        PolicyEvaluator.load({k: v for k, v in artifact.items() if k != "linear"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        PolicyEvaluator.load(tmp_path / "bad.json")
    xgb = px.EffectModel(learner="t", base="xgboost", n_folds=2,
                         base_params={"n_estimators": 5}, progress=False).fit(model.data_)
    with pytest.raises(InvalidParameterError, match="base='lightgbm'"):
        export_policy(px.LinearPolicy(xgb.spec_), xgb)


BLOCKED = ("pexkit", "lightgbm", "xgboost", "pandas", "numba", "scipy", "sklearn")
SCRIPT = r"""
import importlib.abc, importlib.util, json, sys
blocked = set(sys.argv[4].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError("blocked in this test: " + name)
        return None
sys.meta_path.insert(0, Block())
for name in blocked:
    sys.modules[name] = None  # poisoned as well
spec = importlib.util.spec_from_file_location("evaluator", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
ev = module.PolicyEvaluator.load(sys.argv[2])
with open(sys.argv[3]) as fh:
    records = json.load(fh)
print(json.dumps({"arms": ev.arms, "choices": ev.choose(records).tolist(),
                  "modules": sorted({m.split(".")[0] for m in sys.modules if sys.modules[m] is not None})}))
"""


def test_evaluator_runs_with_numpy_alone(
    models: dict[str, px.EffectModel], test_frame: pd.DataFrame, tmp_path: Path
) -> None:
    model = models["s"]
    policy = px.LinearPolicy(model.spec_, weights=WEIGHTS, biases=BIASES)
    tree = px.distill(policy, model, max_depth=2)
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(evaluator_module.__file__, app / "evaluator.py")  # what users copy
    records = records_of(test_frame.head(300))
    (app / "records.json").write_text(json.dumps(records))
    cases = {
        "linear": (export_policy(policy, model), policy.choose(model.predict(test_frame.head(300)))),
        "tree": (export_distilled(tree), tree.choose(test_frame.head(300))),
    }
    for kind, (artifact, expected) in cases.items():
        path = write_artifact(artifact, app / f"{kind}.json")
        result = subprocess.run(
            [sys.executable, "-I", "-c", SCRIPT, str(app / "evaluator.py"), str(path),
             str(app / "records.json"), ",".join(BLOCKED)],
            capture_output=True, text=True, timeout=300, cwd=app,
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["choices"] == expected.tolist(), kind
        assert out["arms"] == list(model.spec_.arms)
        assert not set(out["modules"]) & set(BLOCKED), out["modules"]


class _FakeBooster:
    """What ``_Builder.add_booster`` reads from a LightGBM booster: ``dump_model()``."""

    def __init__(self, trees: list[dict[str, Any]]) -> None:
        self.trees = trees

    def dump_model(self) -> dict[str, Any]:
        return {"tree_info": [{"tree_structure": t} for t in self.trees]}


def _split(feature: int, threshold: Any, decision: str, missing: str, default_left: bool,
           left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {"split_feature": feature, "threshold": threshold, "decision_type": decision,
            "missing_type": missing, "default_left": default_left,
            "left_child": left, "right_child": right}


def test_decision_rules_match_the_compiled_kernel_on_edge_cases() -> None:
    from pexkit.serving.compiled import _Builder, _groups, _utilities, _utilities_serial

    rng = np.random.default_rng(0)

    def leaf() -> dict[str, Any]:
        return {"leaf_value": float(rng.normal())}

    trees = []
    for missing in ("None", "Zero", "NaN"):
        for default_left in (True, False):
            for threshold in (0.5, 0.0, -1e-36, 1e-300):
                trees.append(_split(0, threshold, "<=", missing, default_left, leaf(), leaf()))
    for cats in ("0||2||5", "1", "3||4"):
        trees.append(_split(1, cats, "==", "NaN", False, leaf(), leaf()))
    # deeper: numeric under categorical under numeric, and the S-learner's arm column (2)
    trees.append(_split(0, 1.5, "<=", "NaN", True,
                        _split(1, "2||5", "==", "None", True, leaf(),
                               _split(0, -2.0, "<=", "Zero", False, leaf(), leaf())),
                        _split(2, "1", "==", "None", False, leaf(), leaf())))
    builder = _Builder(2)
    for t, tree in enumerate(trees):
        builder.add_booster(_FakeBooster([tree]), t % 3, float(rng.uniform(-2, 2)), float(t % 3))
    arrays = builder.arrays()
    base = np.array([0.1, -0.2, 0.05])
    doc = {
        "format": "pexkit.policy-artifact", "version": 1, "kind": "linear",
        "arms": ["a", "b", "c"], "features": {"numeric": ["x"], "categorical": ["c"]},
        "categories": {"c": [str(i) for i in range(8)]},
        "linear": {"base": base.tolist(), "arrays": {
            k: (v.tolist() if k not in ("threshold", "leaf_value", "tree_scale", "tree_arm")
                else [str(x) if not np.isfinite(x) else float(x) for x in v])
            for k, v in arrays.items()
        }},
    }
    ev = PolicyEvaluator.load(through_json(doc))
    x0 = [np.nan, 0.0, -0.0, 1e-36, -1e-36, 1e-35, 0.5, np.nextafter(0.5, 1), -3.0, 3.0, 1e-300]
    x1 = [np.nan, 0.0, 1.0, 2.0, 5.0, 7.0, -1.0, 2.5, -0.5, 1e9, 4.0]
    X = np.array([(a, b) for a in x0 for b in x1])
    args = (X, 3, base, 2, arrays["roots"], _groups(arrays["roots"]), arrays["tree_out"], arrays["tree_scale"],
            arrays["tree_arm"], arrays["feature"], arrays["threshold"], arrays["kind"],
            arrays["missing"], arrays["default_left"], arrays["left"], arrays["right"],
            arrays["cat_start"], arrays["cat_len"], arrays["cats"], arrays["leaf_value"])
    expected = _utilities_serial(*args)
    np.testing.assert_array_equal(ev.utilities_matrix(X), expected)
    np.testing.assert_array_equal(ev.utilities_matrix(np.tile(X, (3, 1))), _utilities(
        np.tile(X, (3, 1)), *args[1:]))
    np.testing.assert_array_equal(ev.choose_matrix(X), np.argmax(expected, axis=1))
    # ties take the first arm, as np.argmax in the compiled path
    tie = {**doc, "linear": {**doc["linear"], "base": [1.0, 1.0, 1.0],
                             "arrays": {**doc["linear"]["arrays"], "roots": [], "tree_out": [],
                                        "tree_scale": [], "tree_arm": []}}}
    assert PolicyEvaluator.load(tie).choose_matrix(X[:2]).tolist() == [0, 0]
