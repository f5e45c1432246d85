"""Pareto utilities against brute force, hypervolume against BoTorch and hand computation."""

import itertools

import numpy as np
import pytest

import pexkit as px
from pexkit.optimize import hypervolume, is_non_dominated, select_subset


def brute_non_dominated(Y):
    n = len(Y)
    keep = []
    for i in range(n):
        dominated = any(
            (Y[j] >= Y[i]).all() and (Y[j] > Y[i]).any() for j in range(n) if j != i
        )
        duplicate = any((Y[j] == Y[i]).all() for j in range(i))
        keep.append(not dominated and not duplicate)
    return np.array(keep)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("m", [2, 3, 4])
def test_non_dominated_matches_brute_force(seed, m):
    rng = np.random.default_rng(seed)
    Y = rng.integers(0, 6, size=(60, m)).astype(float)  # ties and duplicates on purpose
    np.testing.assert_array_equal(is_non_dominated(Y), brute_non_dominated(Y))


def test_hypervolume_2d_by_hand():
    # boxes [0,3]x[0,1], [0,2]x[0,2], [0,1]x[0,3]: union area = 3 + 2 + 1 = 6
    Y = np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [0.5, 0.5]])
    assert hypervolume(Y, np.zeros(2)) == pytest.approx(6.0)
    # reference shifts; points not above the reference add nothing
    assert hypervolume(Y, np.array([1.0, 1.0])) == pytest.approx(1.0 * 1.0 + 1.0 * 0 + 0)
    assert hypervolume(np.array([[-1.0, 5.0]]), np.zeros(2)) == 0.0


def monte_carlo_hv(Y, ref, n=400_000, seed=0):
    rng = np.random.default_rng(seed)
    hi = Y.max(axis=0)
    U = rng.uniform(ref, hi, size=(n, len(ref)))
    dominated = np.zeros(n, dtype=bool)
    for y in Y:
        dominated |= (y >= U).all(axis=1)
    return dominated.mean() * np.prod(hi - ref)


@pytest.mark.parametrize("m", [3, 4])
def test_hypervolume_against_botorch_and_monte_carlo(m):
    torch = pytest.importorskip("torch")
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    rng = np.random.default_rng(m)
    Y = rng.uniform(0, 1, size=(25, m))
    ref = np.full(m, 0.1)
    ours = hypervolume(Y, ref)
    nd = Y[is_non_dominated(Y)]
    theirs = Hypervolume(torch.tensor(ref)).compute(torch.tensor(nd))
    assert ours == pytest.approx(float(theirs), rel=1e-9)
    assert ours == pytest.approx(monte_carlo_hv(Y, ref), rel=0.02)


def brute_subset(Y, ref, q, include=()):
    rest = [i for i in range(len(Y)) if i not in include]
    best = max(
        itertools.combinations(rest, q - len(include)),
        key=lambda c: hypervolume(Y[list(include) + list(c)], ref),
    )
    return hypervolume(Y[list(include) + list(best)], ref)


@pytest.mark.parametrize("seed", range(4))
def test_subset_selection_is_optimal_on_small_fronts(seed):
    rng = np.random.default_rng(seed)
    theta = np.sort(rng.uniform(0, np.pi / 2, 10))
    Y = np.column_stack([np.cos(theta), np.sin(theta)])
    ref = np.zeros(2)
    for q in (2, 3, 4):
        chosen = select_subset(Y, ref, q)
        assert len(set(chosen)) == q
        assert hypervolume(Y[chosen], ref) == pytest.approx(brute_subset(Y, ref, q))
    chosen = select_subset(Y, ref, 3, include=[0])
    assert chosen[0] == 0
    assert hypervolume(Y[chosen], ref) == pytest.approx(brute_subset(Y, ref, 3, include=(0,)))


def test_greedy_subset_within_bound():
    rng = np.random.default_rng(9)
    theta = rng.uniform(0, np.pi / 2, 22)
    Y = np.column_stack([np.cos(theta), np.sin(theta), rng.uniform(0.1, 1, 22)])
    ref = np.zeros(3)
    greedy = select_subset(Y, ref, 4, exact_limit=0)
    exact = brute_subset(Y, ref, 4)
    assert hypervolume(Y[greedy], ref) >= (1 - 1 / np.e) * exact


def test_bad_inputs():
    with pytest.raises(px.InvalidParameterError, match="shape"):
        hypervolume(np.ones(3), np.zeros(3))
    with pytest.raises(px.InvalidParameterError, match="'q' must be"):
        select_subset(np.ones((3, 2)), np.zeros(2), 5)
    with pytest.raises(px.InvalidParameterError, match="finite"):
        is_non_dominated(np.array([[np.nan, 1.0]]))
