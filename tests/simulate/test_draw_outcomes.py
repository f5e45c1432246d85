"""Simulation.draw_outcomes: outcomes for the arms someone else chose (e.g. the service)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.exceptions import InvalidParameterError


@pytest.mark.parametrize("scenario", ["notifications", "synthetic"])
def test_outcomes_follow_the_true_means_of_the_chosen_arm(scenario: str) -> None:
    sim = px.simulate(scenario, n_units=50, seed=0)
    n = 40_000
    users = sim.frame.iloc[[3] * n].reset_index(drop=True)  # one unit, many draws
    for k, arm in enumerate(sim.spec.arms):
        y = sim.draw_outcomes(users, [arm] * n, seed=k)
        assert list(y.columns) == list(sim.all_outcomes) and len(y) == n
        se = y.std(ddof=1).to_numpy() / np.sqrt(n)
        assert np.all(np.abs(y.mean().to_numpy() - sim.true_means[3, k]) < 5 * se + 1e-12)


def test_labels_indices_dicts_and_frames_agree() -> None:
    sim = px.simulate("notifications", n_units=200, seed=1)
    users = sim.frame.iloc[:50]
    arms = np.random.default_rng(0).integers(0, 3, 50)
    by_index = sim.draw_outcomes(users, arms, seed=7)
    by_label = sim.draw_outcomes(users.to_dict("records"),
                                 [sim.spec.arms[a] for a in arms], seed=7)
    pd.testing.assert_frame_equal(by_index, by_label)
    assert by_index["unsubscribe"].isin([0.0, 1.0]).all()


def test_bad_arguments_are_refused_with_the_fix() -> None:
    sim = px.simulate("notifications", n_units=20, seed=1)
    users = sim.frame.head(2)
    with pytest.raises(InvalidParameterError, match="unknown arm 'loud'"):
        sim.draw_outcomes(users, ["control", "loud"])
    with pytest.raises(InvalidParameterError, match="one arm per unit"):
        sim.draw_outcomes(users, ["control"])
    with pytest.raises(InvalidParameterError, match="index 0-2"):
        sim.draw_outcomes(users, [0, 3])
    with pytest.raises(InvalidParameterError, match=r"missing columns \['age'\]"):
        sim.draw_outcomes(users.drop(columns=["age"]), [0, 1])
