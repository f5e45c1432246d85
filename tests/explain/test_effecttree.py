"""Distill-HTE: one multi-output tree over every (treatment, outcome) effect."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pexkit as px
from pexkit.explain import EffectTree, distill_effects

from .conftest import SMALL, make_log


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def test_a_tree_shaped_truth_is_summarized_well(tree_log):
    data, tau, model = tree_log
    tree = distill_effects(model, max_depth=3)
    assert isinstance(tree, EffectTree)
    assert list(tree.r2.columns) == ["treatment", "outcome", "r2"]
    assert len(tree.r2) == 4
    # fidelity to the model's (noisy, out-of-fold) effects: the steps of 0.8-1.1
    # dominate the GBDT noise (R^2 seen 0.71-0.83 over three seeds); the 0.6 step
    # of a:cost less so (seen 0.51-0.59)
    small_step = (tree.r2.treatment == "a") & (tree.r2.outcome == "cost")
    assert (tree.r2.r2[~small_step] > 0.6).all(), tree.r2
    assert (tree.r2.r2[small_step] > 0.4).all(), tree.r2
    # and the tree recovers the truth itself (seen >= 0.96 on those tasks)
    pred = tree.predict(data)
    for k, m in [(1, 0), (2, 0), (2, 1)]:
        assert r2(tau[:, k, m], pred[:, k, m]) > 0.9
    text = str(tree)
    assert "x1 <= " in text and "x3 <= " in text and "R^2" in text


def test_pure_noise_effects_are_not_summarized(tree_log):
    del tree_log
    data, _ = make_log(8000, seed=1, signal=False)
    model = px.EffectModel(learner="t", n_folds=2, base_params=SMALL, random_state=1).fit(data)
    tree = distill_effects(model, max_depth=3)
    # the model's effects are noise fits; 8 leaves explain little of them (seen <= 0.15
    # over four seeds)
    assert (tree.r2.r2 < 0.3).all(), tree.r2


def test_predict_leaves_and_apply_agree(tree_log):
    data, _, model = tree_log
    tree = distill_effects(model, max_depth=2, min_share=0.05)
    pred = tree.predict(data)
    assert pred.shape == (data.n_units, 3, 2)
    assert (pred[:, 0, :] == 0).all()
    leaves = tree.leaves()
    assert 2 <= len(leaves) <= 4
    assert sum(leaf.n for leaf in leaves) == data.n_units
    assert min(leaf.share for leaf in leaves) >= 0.05 - 1e-12
    index = tree.apply(data)
    for leaf in leaves:
        rows = index == leaf.index
        assert rows.sum() == leaf.n
        np.testing.assert_allclose(pred[rows], np.broadcast_to(leaf.effects, pred[rows].shape))
        # leaf means are the model's mean effects there (original units)
        np.testing.assert_allclose(leaf.effects[1:], model.effects_[rows, 1:].mean(axis=0), atol=1e-9)
    np.testing.assert_array_equal(tree.apply(model._matrix(data)), index)
    payload = json.loads(json.dumps(tree.to_dict()))
    assert payload["kind"] == "effect_tree" and len(payload["leaves"]) == len(leaves)


def test_held_out_data_uses_predictions(tree_log):
    _, _, model = tree_log
    holdout, _ = make_log(3000, seed=7)
    tree = distill_effects(model, holdout, max_depth=2)
    assert tree.n_units == 3000 and tree.source == "predicted effects"


def test_bad_input(tree_log):
    _, _, model = tree_log
    with pytest.raises(px.InvalidParameterError, match="max_depth"):
        distill_effects(model, max_depth=0)
    with pytest.raises(px.InvalidParameterError, match="min_share"):
        distill_effects(model, min_share=0.9)
    with pytest.raises(px.InvalidDataError, match="different spec"):
        distill_effects(model, px.simulate("synthetic", n_units=60, seed=0, n_features=4).data)
    with pytest.raises(px.InvalidParameterError, match="6 columns"):
        distill_effects(model, max_depth=1).predict(np.zeros((2, 3)))
