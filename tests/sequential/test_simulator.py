"""The notification-volume simulator: a sequential log with a known ground truth."""

import itertools

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.exceptions import InvalidParameterError
from pexkit.sequential.policy import action_probabilities
from pexkit.simulate.sequential import (
    STATE_COLUMNS,
    SequentialSimulation,
    simulate_notification_volume,
    threshold_rule,
)

N_TRUE = 20_000  # rollout users: SE of a utility ~0.012, paired differences far less


@pytest.fixture(scope="module")
def sim() -> SequentialSimulation:
    return simulate_notification_volume(n_units=20_000, seed=0)


def _discounted_utility(frame: pd.DataFrame, gamma: float, push_cost: float) -> pd.Series:
    r = (frame["sessions"] - push_cost * frame["pushes"]) * gamma ** frame["t"]
    return r.groupby(frame["user"]).sum()


def test_simulate_dispatches_and_exports():
    sim = px.simulate("notification-volume", n_units=300, seed=3, horizon=10)
    assert isinstance(sim, px.SequentialSimulation)
    assert px.SequentialSimulation is SequentialSimulation
    assert sim.frame["t"].max() == 9
    spec = sim.spec
    assert spec.actions == ("none", "send")
    assert spec.reward_names == ("sessions", "pushes")
    assert spec.utility_weights == (1.0, -sim.push_cost)
    assert (spec.propensity, spec.done, spec.unit, spec.time) == (
        "p_logged",
        "churned",
        "user",
        "t",
    )
    assert set(spec.state_columns) == set(STATE_COLUMNS)
    assert spec.gamma == 0.9
    with pytest.raises(InvalidParameterError, match="shares"):
        px.simulate("notification-volume", n_units=10, shares=[0.5, 0.5])
    with pytest.raises(InvalidParameterError, match="notification-volume"):
        px.simulate("no-such-scenario")


def test_seeded():
    a = simulate_notification_volume(n_units=300, seed=4)
    b = simulate_notification_volume(n_units=300, seed=4)
    c = simulate_notification_volume(n_units=300, seed=5)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not a.frame.equals(c.frame)
    va = a.true_value(a.never(), n_units=500, seed=1)
    pd.testing.assert_frame_equal(va, a.true_value(a.never(), n_units=500, seed=1))
    assert not va.equals(a.true_value(a.never(), n_units=500, seed=2))


@pytest.mark.parametrize("priority", [False, True])
def test_frame_is_a_valid_log(priority):
    sim = simulate_notification_volume(n_units=2000, seed=1, priority=priority)
    f = sim.frame
    cols = ["user", "t", "action", "p_logged", *STATE_COLUMNS, "sessions", "pushes", "churned"]
    assert set(cols) <= set(f.columns)
    assert f.equals(f.sort_values(["user", "t"], ignore_index=True))
    # every user's rows: t = 0, 1, 2, ... with no gap
    assert (f["t"].to_numpy() == f.groupby("user").cumcount().to_numpy()).all()
    assert f["user"].nunique() == 2000
    # churned rows are each user's last row
    last = f.groupby("user")["t"].transform("max") == f["t"]
    assert (f.loc[f["churned"] == 1].index.isin(f.index[last])).all()
    assert set(f["churned"].unique()) <= {0, 1}
    # p_logged is the logging policy's probability of the logged action
    assert ((f["p_logged"] > 0) & (f["p_logged"] <= 1)).all()
    probs = sim.logging_policy(f[list(STATE_COLUMNS)])
    assert probs.shape == (len(f), len(sim.actions))
    idx = pd.Index(sim.actions).get_indexer(f["action"])
    assert (idx >= 0).all()
    np.testing.assert_allclose(f["p_logged"].to_numpy(), probs[np.arange(len(f)), idx])
    # every action is explored; exploration bounds the probabilities
    assert probs.min() >= 2 * sim.exploration / len(sim.actions) - 1e-12
    assert set(f["action"]) == set(sim.actions)
    assert (f["pushes"] == (f["action"] != "none")).all()


def test_variable_lengths():
    sim = simulate_notification_volume(n_units=4000, seed=2)
    per_user = sim.frame.groupby("user").agg(churned=("churned", "max"), n=("t", "size"))
    share = per_user["churned"].mean()
    assert 0.05 < share < 0.40, share
    assert (per_user.loc[per_user["churned"] == 0, "n"] == sim.horizon).all()
    assert per_user.loc[per_user["churned"] == 1, "n"].min() < sim.horizon / 2
    # random windows
    windows = simulate_notification_volume(n_units=2000, seed=2, horizon=20, min_horizon=10)
    n = windows.frame.groupby("user")["t"].size()
    assert n.max() == 20 and (n < 10).any() and n.between(10, 19).mean() > 0.3


def test_a_sequential_rule_beats_every_baseline(sim):
    # brute force over a small family of rules (search seed != evaluation seed)
    grid = itertools.product([0.5, 1.0, 2.0], [0, 3, 5], [0.3, 1.0])
    search = {
        g: sim.true_value(
            threshold_rule(g[0], g[1], max_activity=g[2]), n_units=10_000, seed=7
        ).loc["utility", "value"]
        for g in grid
    }
    best = max(search, key=search.__getitem__)
    rules = {
        "best_rule": threshold_rule(best[0], best[1], max_activity=best[2]),
        "always": sim.always(1),
        "never": sim.never(),
        "logging": sim.logging_policy,
        "myopic": sim.true_myopic_policy(),
    }
    values = {k: sim.true_value(p, n_units=N_TRUE) for k, p in rules.items()}
    u = {k: v.loc["utility", "value"] for k, v in values.items()}
    se = {k: v.loc["utility", "se"] for k, v in values.items()}
    for other in ("always", "never", "logging", "myopic"):
        gap = u["best_rule"] - u[other]
        assert gap > max(4 * np.hypot(se["best_rule"], se[other]), 0.15), (other, u, best)
    # the myopic policy sends far more than the best rule and does worse than never sending
    assert values["myopic"].loc["pushes", "value"] > 2 * values["best_rule"].loc["pushes", "value"]
    assert u["myopic"] < u["never"] < u["best_rule"]
    assert u["always"] < u["logging"]


def test_true_value_matches_the_log(sim):
    logged = _discounted_utility(sim.frame, sim.gamma, sim.push_cost)
    truth = sim.true_value(sim.logging_policy, n_units=N_TRUE)
    se = np.hypot(logged.std(ddof=1) / np.sqrt(len(logged)), truth.loc["utility", "se"])
    assert abs(logged.mean() - truth.loc["utility", "value"]) < 4 * se
    sessions = (
        (sim.frame["sessions"] * sim.gamma ** sim.frame["t"]).groupby(sim.frame["user"]).sum()
    )
    assert abs(sessions.mean() - truth.loc["sessions", "value"]) < 4 * np.hypot(
        sessions.std() / np.sqrt(len(sessions)), truth.loc["sessions", "se"]
    )
    assert list(truth.index) == ["sessions", "pushes", "utility"]
    np.testing.assert_allclose(
        truth.loc["utility", "value"],
        truth.loc["sessions", "value"] - sim.push_cost * truth.loc["pushes", "value"],
    )


def test_true_value_takes_any_policy_form():
    sim = simulate_notification_volume(n_units=200, seed=0, priority=True)
    uniform = sim.true_value(lambda s: np.full((len(s), 3), 1 / 3), n_units=2000, seed=3)
    # epsilon = 1 is uniform exploration whatever the policy (common random numbers)
    pd.testing.assert_frame_equal(uniform, sim.true_value(sim.never(), 2000, 3, epsilon=1.0))
    high = sim.true_value(sim.always(2), n_units=2000, seed=3)
    send = sim.true_value(sim.always(1), n_units=2000, seed=3)
    assert high.loc["pushes", "value"] < send.loc["pushes", "value"]  # more unsubscribes
    never = sim.true_value(sim.never(), n_units=2000, seed=3)
    assert never.loc["pushes", "value"] == 0.0
    assert never.loc["sessions", "value"] == never.loc["utility", "value"]


def test_custom_logging_policy():
    def half(states: pd.DataFrame) -> np.ndarray:
        p = np.where(states["fatigue"].to_numpy() > 1.0, 0.2, 0.6)
        return np.column_stack([1 - p, p])

    sim = simulate_notification_volume(n_units=500, seed=1, logging_policy=half)
    f = sim.frame
    send = f["action"] == "send"
    expected = np.where(f["fatigue"] > 1.0, 0.2, 0.6)
    np.testing.assert_allclose(f["p_logged"], np.where(send, expected, 1 - expected))
    np.testing.assert_allclose(
        sim.logging_policy(f[list(STATE_COLUMNS)]),
        action_probabilities(half, f[list(STATE_COLUMNS)], 2),
    )
    with pytest.raises(InvalidParameterError, match="one column per action"):
        simulate_notification_volume(n_units=50, logging_policy=lambda s: np.ones((len(s), 3)) / 3)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"n_units": 0}, r"'n_units' must be a positive integer \(>= 1\); got 0"),
        ({"n_units": -5}, r"'n_units' must be a positive integer \(>= 1\); got -5"),
        ({"exploration": 0.0}, r"'exploration' must be a number in \(0, 0.5\]; got 0.0"),
        ({"exploration": 0.7}, r"'exploration' must be a number in \(0, 0.5\]; got 0.7"),
        ({"gamma": 1.5}, r"'gamma' must be a number in \[0, 1\]; got 1.5"),
        ({"gamma": -0.1}, r"'gamma' must be a number in \[0, 1\]; got -0.1"),
        ({"horizon": 0}, r"'horizon' must be a positive integer"),
        ({"horizon": 10, "min_horizon": 20}, r"'min_horizon' must be in \[1, horizon=10\]; got 20"),
        ({"push_cost": -1}, r"'push_cost' must be a finite number >= 0"),
    ],
)
def test_bad_inputs(kwargs, pattern):
    with pytest.raises(InvalidParameterError, match=pattern):
        simulate_notification_volume(**{"n_units": 10, **kwargs})


def test_true_value_bad_inputs():
    sim = simulate_notification_volume(n_units=20, seed=0)
    with pytest.raises(InvalidParameterError, match="'n_units' must be a positive integer"):
        sim.true_value(sim.never(), n_units=0)
    with pytest.raises(InvalidParameterError, match="'epsilon' must be in"):
        sim.true_value(sim.never(), n_units=10, epsilon=2.0)
