"""QuickScorer lands every row in the same leaves as the tree walk and as LightGBM."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pexkit as px
from pexkit.serving import compile_policy
from pexkit.serving.compiled import CompiledPolicy, _Builder


class _Dumped:
    """A stand-in for a LightGBM booster: only ``dump_model`` is read by the builder."""

    def __init__(self, trees: list[dict[str, Any]]) -> None:
        self.trees = trees

    def dump_model(self) -> dict[str, Any]:
        return {"tree_info": [{"tree_structure": t} for t in self.trees]}


def _random_tree(rng: np.random.Generator, n_leaves: int, missing: tuple[str, ...]) -> dict[str, Any]:
    """A random binary tree with ``n_leaves`` leaves over features 0-1 (numeric), 2 (categorical)
    and 3 (the S-learner's arm column, categorical or numeric)."""
    if n_leaves == 1:
        return {"leaf_value": float(rng.normal())}
    n_left = int(rng.integers(1, n_leaves))
    left = _random_tree(rng, n_left, missing)
    right = _random_tree(rng, n_leaves - n_left, missing)
    feature = int(rng.choice(4, p=[0.35, 0.35, 0.15, 0.15]))
    node = {"split_feature": feature, "missing_type": str(rng.choice(missing)),
            "default_left": bool(rng.integers(2)), "left_child": left, "right_child": right}
    if feature == 2 or (feature == 3 and rng.random() < 0.5):
        top = 6 if feature == 2 else 3
        cats = sorted(rng.choice(top, size=int(rng.integers(1, 3)), replace=False).tolist())
        node.update(decision_type="==", threshold="||".join(str(c) for c in cats))
    elif feature == 3:
        node.update(decision_type="<=", threshold=float(rng.choice([0.5, 1.5])))
    else:
        # thresholds on a grid so that rows hit them exactly, and around zero
        node.update(decision_type="<=", threshold=float(rng.choice([-1.0, -1e-36, 0.0, 0.25, 0.5, 1.0])))
    return node


def _compiled(trees: list[dict[str, Any]], rng: np.random.Generator) -> CompiledPolicy:
    builder = _Builder(3)
    for t, tree in enumerate(trees):
        scale = float(rng.uniform(-2, 2))
        if t % 2:  # an S-learner tree: evaluated at each arm
            builder.add_targets(_Dumped([tree]), [(k, scale, float(k)) for k in range(3)],
                                arm_trees_only=False)
        else:
            builder.add_booster(_Dumped([_without_arm(tree)]), t % 3, scale, float("nan"))
    return CompiledPolicy(policy=None, model=None, n_trees=len(builder.roots),  # type: ignore[arg-type]
                          _arrays=builder.arrays(), _base=np.array([0.1, -0.2, 0.05]),
                          _n_features=3)


def _without_arm(node: dict[str, Any]) -> dict[str, Any]:
    """The same tree with splits on the arm column moved to feature 0 (a non-S model)."""
    if "split_feature" not in node:
        return node
    out = {**node, "left_child": _without_arm(node["left_child"]),
           "right_child": _without_arm(node["right_child"])}
    if node["split_feature"] == 3:
        out.update(split_feature=0, decision_type="<=", threshold=0.5)
    return out


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    grid = np.array([np.nan, -1.0, -0.5, -1e-36, -0.0, 0.0, 1e-36, 0.25, 0.5, 0.75, 1.0, 2.0])
    codes = np.array([np.nan, -1.0, -0.5, 0.0, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 1e9])
    X = np.empty((n, 3))
    X[:, 0] = rng.choice(grid, n)
    X[:, 1] = np.where(rng.random(n) < 0.5, rng.choice(grid, n), rng.normal(size=n))
    X[:, 2] = rng.choice(codes, n)
    return X


@pytest.mark.parametrize("seed", range(4))
def test_random_ensembles_match_the_walk(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trees = [_random_tree(rng, int(rng.integers(1, 33)), ("None", "NaN")) for _ in range(60)]
    compiled = _compiled(trees, rng)
    assert compiled.kernel == "quickscorer"
    for n in (5, 3000):  # the one-thread path and the parallel one
        X = _rows(rng, n)
        walk = compiled._walk_raw(X)
        fast = compiled._raw(X)
        # the same leaves, added in the same order: bit for bit
        np.testing.assert_array_equal(fast, walk)
        assert np.abs(walk).max() > 1.0  # the sums are not trivially zero


def test_ensembles_it_cannot_take_fall_back_to_the_walk() -> None:
    rng = np.random.default_rng(7)
    zero = [_random_tree(rng, 8, ("Zero",)) for _ in range(4)]
    assert _compiled(zero, rng).kernel == "walk"
    wide = [_random_tree(rng, 40, ("None",)) for _ in range(2)]
    assert _compiled(wide, rng).kernel == "walk"
    narrow = [_random_tree(rng, 32, ("None",)) for _ in range(2)]
    assert _compiled(narrow, rng).kernel == "quickscorer"


def test_models_fit_on_missing_values_match_predict() -> None:
    # training rows with NaN give LightGBM splits with missing_type NaN (default_left both ways)
    sim = px.simulate("notifications", n_units=3000, seed=8)
    frame = sim.frame.copy()
    rng = np.random.default_rng(0)
    frame.loc[rng.random(len(frame)) < 0.2, "activity"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.2, "tenure_days"] = np.nan
    data = px.LoggedData.from_frame(frame, sim.data.spec)
    model = px.EffectModel(learner="s", n_folds=2, random_state=0, progress=False).fit(data)
    kinds = {t["tree_structure"].get("missing_type") for fold in model.learners_fitted_["s"][1]
             for b in fold for t in b.dump_model()["tree_info"]}
    assert "NaN" in kinds
    policy = px.LinearPolicy(model.spec_, weights={"engagement": 1, "unsubscribe": 3, "revenue": 1})
    compiled = compile_policy(policy, model)
    assert compiled.kernel == "quickscorer"
    test = px.simulate("notifications", n_units=2000, seed=9).frame
    test.loc[::3, "activity"] = np.nan
    test.loc[::5, "tenure_days"] = np.nan
    np.testing.assert_allclose(compiled.utilities_matrix(compiled.matrix(test)),
                               policy.utilities(model.predict(test)), atol=1e-9)
