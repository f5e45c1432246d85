"""Policy-tree search against brute force on small data."""

import numpy as np
import pytest

import pexkit as px
from pexkit.explain import fit_policy_tree


def best_leaf(rewards, rows):
    return rewards[rows].sum(axis=0).max() if rows.any() else 0.0


def brute_depth1(X, rewards, rows):
    best = best_leaf(rewards, rows)
    for j in range(X.shape[1]):
        for t in np.unique(X[rows, j]):
            left = rows & (X[:, j] <= t)
            right = rows & (X[:, j] > t)
            if left.any() and right.any():
                best = max(best, best_leaf(rewards, left) + best_leaf(rewards, right))
    return best


def brute_depth2(X, rewards):
    rows = np.ones(X.shape[0], dtype=bool)
    best = brute_depth1(X, rewards, rows)
    for j in range(X.shape[1]):
        for t in np.unique(X[:, j]):
            left = X[:, j] <= t
            right = ~left
            if left.any() and right.any():
                best = max(best, brute_depth1(X, rewards, left) + brute_depth1(X, rewards, right))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_depth1_and_depth2_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 40
    X = np.column_stack([rng.integers(0, 6, n), rng.normal(size=n).round(1), rng.integers(0, 3, n)]).astype(float)
    rewards = rng.normal(size=(n, 3))
    rows = np.ones(n, dtype=bool)
    t1 = fit_policy_tree(X, rewards, depth=1)
    assert t1.reward == pytest.approx(brute_depth1(X, rewards, rows), abs=1e-9)
    t2 = fit_policy_tree(X, rewards, depth=2)
    assert t2.reward == pytest.approx(brute_depth2(X, rewards), abs=1e-9)
    # the reported reward is what the tree's choices earn
    chosen = t2.choose(X)
    assert t2.reward == pytest.approx(rewards[np.arange(n), chosen].sum())


def test_deeper_trees_never_lose_reward_and_render():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(500, 4))
    rewards = np.column_stack([np.zeros(500), X[:, 0] + rng.normal(0, 0.5, 500), X[:, 1] * X[:, 2]])
    rewards_by_depth = [fit_policy_tree(X, rewards, depth=d).reward for d in (1, 2, 3)]
    assert rewards_by_depth[0] <= rewards_by_depth[1] + 1e-9 <= rewards_by_depth[2] + 2e-9
    tree = fit_policy_tree(X, rewards, depth=2, feature_names=["a", "b", "c", "d"], action_names=["none", "t1", "t2"])
    text = str(tree)
    assert "if " in text and "->" in text


def test_bad_input():
    with pytest.raises(px.InvalidParameterError, match="depth"):
        fit_policy_tree(np.zeros((5, 2)), np.zeros((5, 2)), depth=7)
    with pytest.raises(px.InvalidParameterError, match="same rows"):
        fit_policy_tree(np.zeros((5, 2)), np.zeros((4, 2)))
