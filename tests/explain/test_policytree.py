"""Policy-tree search against brute force on small data."""

import numpy as np
import pytest

import pexkit as px
from pexkit.exceptions import InvalidParameterError
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


def brute_depth2_on_edges(X, rewards, edges):
    """Exhaustive depth-2 search restricted to the given thresholds per feature."""
    n, p = X.shape

    def best1(rows):
        best = best_leaf(rewards, rows)
        for j in range(p):
            for t in edges[j]:
                left, right = rows & (X[:, j] <= t), rows & (X[:, j] > t)
                best = max(best, best_leaf(rewards, left) + best_leaf(rewards, right))
        return best

    rows = np.ones(n, dtype=bool)
    best = best1(rows)
    for j in range(p):
        for t in edges[j]:
            best = max(best, best1(rows & (X[:, j] <= t)) + best1(rows & (X[:, j] > t)))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_binned_search_is_exhaustive_over_the_bin_edges(seed):
    # continuous features with more distinct values than bins: the search must
    # still be the best tree over every pair of bin-edge thresholds
    from pexkit.explain.policytree import _bin

    rng = np.random.default_rng(seed)
    n = 150
    X = rng.normal(size=(n, 3))
    rewards = rng.normal(size=(n, 3)) + np.column_stack([np.zeros(n), X[:, 0], -X[:, 1]])
    _, edges = _bin(X, 6)
    tree = fit_policy_tree(X, rewards, depth=2, max_bins=6)
    assert tree.reward == pytest.approx(brute_depth2_on_edges(X, rewards, edges), abs=1e-9)


def test_pair_table_and_per_feature_histograms_agree(monkeypatch):
    from pexkit.explain import policytree

    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 5))
    rewards = np.column_stack([np.zeros(2000), X[:, 0] + rng.normal(size=2000), X[:, 3] * X[:, 4]])
    table = fit_policy_tree(X, rewards, depth=3)
    monkeypatch.setattr(policytree, "PAIR_TABLE_BYTES", 0)
    per_feature = fit_policy_tree(X, rewards, depth=3)
    assert str(table) == str(per_feature)
    assert table.reward == pytest.approx(per_feature.reward)


def test_missing_values_go_left_at_fit_and_when_choosing():
    rng = np.random.default_rng(4)
    n = 400
    X = rng.normal(size=(n, 2))
    missing = rng.random(n) < 0.3
    X[missing, 0] = np.nan
    # action 2 pays only for the units with a missing x0, action 1 for x0 > 0.5
    rewards = np.zeros((n, 3))
    rewards[missing, 2] = 1.0
    rewards[~missing & (np.nan_to_num(X[:, 0]) > 0.5), 1] = 1.0
    tree = fit_policy_tree(X, rewards, depth=2, feature_names=["a", "b"])
    chosen = tree.choose(X)
    assert tree.reward == pytest.approx(rewards[np.arange(n), chosen].sum())
    assert tree.reward == pytest.approx(rewards.max(axis=1).sum())  # the tree is perfect
    assert (chosen[missing] == 2).all()
    np.testing.assert_array_equal(tree.compile().choose(X), chosen)
    assert tree.missing == ["a"]
    assert any("missing" in leaf.rule for leaf in tree.leaves())


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_compiled_tree_gives_the_plain_paths_actions(depth):
    rng = np.random.default_rng(depth)
    n = 3000
    X = np.column_stack([
        rng.normal(size=n), rng.integers(0, 4, n).astype(float), rng.uniform(size=n),
        rng.normal(size=n).round(1),
    ])
    rewards = np.column_stack([
        np.zeros(n), X[:, 0] + rng.normal(size=n), (X[:, 1] == 2) - 0.3 + rng.normal(size=n),
        X[:, 2] * X[:, 3] + rng.normal(0, 0.3, size=n),
    ])
    tree = fit_policy_tree(X, rewards, depth=depth)
    compiled = tree.compile()
    # new rows, with missing values and values on the thresholds themselves
    Z = np.column_stack([
        rng.normal(size=n), rng.integers(0, 4, n).astype(float), rng.uniform(size=n),
        rng.normal(size=n).round(1),
    ])
    Z[rng.random(Z.shape) < 0.05] = np.nan
    thresholds = compiled.threshold[compiled.feature >= 0]
    Z[:20, compiled.feature[compiled.feature >= 0][0]] = thresholds[0]
    np.testing.assert_array_equal(compiled.choose(Z), tree.choose(Z))
    np.testing.assert_array_equal(compiled.apply(Z), tree.apply(Z))
    Z32 = Z.astype(np.float32)
    np.testing.assert_array_equal(compiled.choose(Z32), tree.choose(Z32.astype(np.float64)))
    np.testing.assert_array_equal(compiled.choose(np.asfortranarray(Z)), tree.choose(Z))
    # leaves partition the rows: apply agrees with each leaf's action
    actions = np.array([leaf.action for leaf in tree.leaves()])
    np.testing.assert_array_equal(actions[tree.apply(Z)], tree.choose(Z))
    assert tree.depth <= depth


def test_rules_read_categories_merge_bounds_and_serialize():
    import json

    rng = np.random.default_rng(5)
    n = 3000
    age = rng.uniform(18, 80, n)
    plan = rng.integers(0, 3, n).astype(float)  # codes of ["basic", "pro", "team"]
    X = np.column_stack([age, plan])
    mid = (age > 30) & (age <= 50)
    rewards = np.column_stack([np.zeros(n), np.where(mid, 1.0, -1.0), np.where(plan == 2, 0.5, -1.0)])
    tree = fit_policy_tree(
        X, rewards, depth=3, feature_names=["age", "plan"], action_names=["none", "mid", "team"],
        categories={"plan": ["basic", "pro", "team"]},
    )
    text = str(tree)
    assert "plan in {" in text and "age <= " in text
    rules = [leaf.rule for leaf in tree.leaves()]
    # two splits on age on one path read as one interval
    assert any(" < age <= " in rule for rule in rules), rules
    assert sum(leaf.share for leaf in tree.leaves()) == pytest.approx(1.0)
    payload = json.loads(json.dumps(tree.to_dict()))
    assert payload["kind"] == "policy_tree" and payload["leaves"]
    assert json.loads(json.dumps(tree.compile().to_dict()))["n_features"] == 2


def test_compiled_tree_checks_its_input():
    tree = fit_policy_tree(np.arange(20.0).reshape(10, 2), np.eye(10, 2))
    with pytest.raises(px.InvalidParameterError, match="2 columns"):
        tree.compile().choose(np.zeros((3, 5)))
    with pytest.raises(px.InvalidParameterError, match="max_bins"):
        fit_policy_tree(np.zeros((5, 2)), np.zeros((5, 2)), max_bins=1000)
    with pytest.raises(px.InvalidParameterError, match="finite"):
        fit_policy_tree(np.zeros((5, 2)), np.full((5, 2), np.nan))


def test_min_leaf_share_merges_small_leaves_and_same_action_siblings() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    X = rng.normal(size=(n, 3))
    # action 1 pays off for x0 > 0 except a 1% pocket (x1 > 2.33) that favours action 2
    rewards = np.zeros((n, 3))
    rewards[:, 1] = np.where(X[:, 0] > 0, 1.0, -1.0)
    pocket = X[:, 1] > 2.33
    rewards[pocket, 2] = 5.0
    rewards += rng.normal(scale=0.1, size=rewards.shape)
    exact = fit_policy_tree(X, rewards, depth=2)
    pruned = fit_policy_tree(X, rewards, depth=2, min_leaf_share=0.05)
    small = min(leaf.n for leaf in exact.leaves())
    assert small < 0.05 * n  # the exact optimum isolates the pocket
    assert min(leaf.n for leaf in pruned.leaves()) >= 0.05 * n
    assert pruned.reward <= exact.reward
    # the exact tree spends a split on two leaves with the same action; pruning merges them
    assert len(pruned.leaves()) < len(exact.leaves())
    with pytest.raises(InvalidParameterError, match="min_leaf_share"):
        fit_policy_tree(X, rewards, depth=2, min_leaf_share=0.7)
