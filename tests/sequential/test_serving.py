"""ServedAgent: the in-process serving of an offline agent (fast path, exploration, checks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.exceptions import InvalidDataError, InvalidParameterError, ModelFormatError
from pexkit.sequential.agents import OfflineAgent
from pexkit.sequential.serving import ServedAgent, ServedUniform, time_key

EPS = 0.2


@pytest.fixture(scope="module")
def world() -> tuple[Any, dict[str, OfflineAgent], pd.DataFrame]:
    sim = px.simulate("notification-volume", n_units=200, seed=0, horizon=6)
    agents = {
        "fqi": OfflineAgent("fqi", iterations=3, rounds=20, min_data_in_leaf=20).fit(
            sim.log, progress=False
        ),
        "cql": OfflineAgent("cql", steps=30, hidden=(8,), batch_size=64).fit(
            sim.log, progress=False
        ),
    }
    return sim, agents, sim.frame[list(sim.spec.state_columns)]


@pytest.mark.parametrize("algorithm", ["fqi", "cql"])
def test_fast_path_is_the_agent(world: Any, algorithm: str) -> None:
    sim, agents, states = world
    agent = agents[algorithm]
    served = ServedAgent(agent.to_dict(), epsilon=EPS, salt="salt-1")
    records = states.to_dict("records")
    q = np.array([served.q_row(r) for r in records])
    # FQI: the same booster on the same rows; the network: one row at a time vs a batch
    np.testing.assert_allclose(q, agent.q_values(states), rtol=0, atol=1e-12)
    units, times = sim.frame["user"].tolist(), sim.frame["t"].tolist()
    ds = served.decisions(units, times, records)
    idx = np.array([d.action_index for d in ds])
    explored = np.array([d.explored for d in ds])
    assert (idx[~explored] == agent.choose(states)[~explored]).all()
    probs = agent.probabilities(states, EPS)[np.arange(len(idx)), idx]
    assert np.abs(probs - np.array([d.propensity for d in ds])).max() <= 1e-12
    # the single-decision path and a fresh server (same salt) give the same decisions: a replay
    again = ServedAgent(agent, epsilon=EPS, salt="salt-1")
    for k in range(0, len(records), 97):
        assert again.decide(units[k], times[k], records[k]) == (
            ds[k].action,
            ds[k].action_index,
            ds[k].propensity,
        )
    # the explored share is epsilon: n >= 1,000 independent hashes, 4.5 binomial SDs
    n = len(ds)
    assert abs(explored.mean() - EPS) < 4.5 * np.sqrt(EPS * (1 - EPS) / n)
    other = ServedAgent(agent, epsilon=EPS, salt="salt-2").decisions(units, times, records)
    assert [d.explored for d in other] != explored.tolist()


def test_epsilon_extremes_and_the_uniform_policy(world: Any) -> None:
    sim, agents, states = world
    agent = agents["fqi"]
    records = states.to_dict("records")[:300]
    units = list(range(300))
    greedy = ServedAgent(agent, epsilon=0.0).decisions(units, [0] * 300, records)
    assert [d.action_index for d in greedy] == agent.choose(states.iloc[:300]).tolist()
    assert {d.propensity for d in greedy} == {1.0}
    explore = ServedAgent(agent, epsilon=1.0).decisions(units, [0] * 300, records)
    assert all(d.explored and d.propensity == 0.5 for d in explore)
    uniform = ServedUniform(sim.spec, salt="s")
    ds = uniform.decisions(units, [0] * 300, records)
    assert {d.propensity for d in ds} == {0.5} and all(d.explored for d in ds)
    share = np.mean([d.action_index for d in ds])
    assert abs(share - 0.5) < 4.5 * np.sqrt(0.25 / 300)
    assert uniform.decide(7, 0, records[7]) == (ds[7].action, ds[7].action_index, 0.5)


def test_missing_values_are_encoded_as_the_agent_does(world: Any) -> None:
    _, agents, states = world
    row = states.iloc[[3]].copy()
    row["fatigue"] = np.nan
    row["platform"] = "unseen-platform"
    for agent in agents.values():
        served = ServedAgent(agent, epsilon=EPS)
        state = {**row.iloc[0].to_dict(), "fatigue": None}
        np.testing.assert_allclose(served.q_row(state), agent.q_values(row)[0], atol=1e-12)
        nan_state = {**state, "fatigue": float("nan")}
        np.testing.assert_allclose(served.q_row(nan_state), served.q_row(state))


def test_times_are_canonical() -> None:
    assert time_key(3) == time_key(3.0) == time_key(np.int64(3)) == ("3", 3.0)
    assert time_key("2026-03-01T13:00:00+01:00") == time_key("2026-03-01T12:00:00Z")
    for bad in ("2026-03-01T12:00:00", "monday", None, True, float("inf"), 2.0**60):
        with pytest.raises(InvalidDataError, match="time"):
            time_key(bad)


BAD_STATES = [
    ("not a dict", ["fatigue"], "expected an object"),
    ("missing", {"fatigue": 1.0}, "missing state column"),
    ("text number", {"fatigue": "high"}, "state.fatigue: expected a number"),
    ("bool number", {"fatigue": True}, "state.fatigue: expected a number"),
    ("infinite", {"fatigue": float("inf")}, "finite"),
    ("float category", {"platform": 1.5}, "state.platform: expected a category"),
]


@pytest.mark.parametrize(("label", "change", "words"), BAD_STATES, ids=[b[0] for b in BAD_STATES])
def test_bad_states_are_refused(world: Any, label: str, change: Any, words: str) -> None:
    _, agents, states = world
    served = ServedAgent(agents["fqi"], epsilon=EPS)
    good = states.iloc[0].to_dict()
    if label == "missing":
        state: Any = {k: v for k, v in good.items() if k != "activity"}
    elif isinstance(change, dict):
        state = {**good, **change}
    else:
        state = change
    with pytest.raises(InvalidDataError, match=words):
        served.decide("u", 0, state)


def test_bad_agents_and_settings_are_refused(world: Any) -> None:
    _, agents, _ = world
    raw = agents["fqi"].to_dict()
    with pytest.raises(ModelFormatError, match="pexkit-offline-agent"):
        ServedAgent({**raw, "format": "pickle"})
    with pytest.raises(ModelFormatError):
        ServedAgent({**raw, "encoder": {**raw["encoder"], "mean": []}})
    with pytest.raises(InvalidParameterError, match="epsilon"):
        ServedAgent(raw, epsilon=1.5)
    with pytest.raises(InvalidParameterError, match="OfflineAgent"):
        ServedAgent("agent.json")
