"""Online tuning with Ax in the bounded policy space (no server).

Ground truth: the simulator's true means give each arm's online metrics (plus
noise of a known standard error), as a tune round would measure them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import pexkit as px
from pexkit.exceptions import InvalidParameterError
from pexkit.service.tuning import OnlineTuner, TuningSpace

# Ax and BoTorch warn about their own internals (tensor copies, optimizer restarts)
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:ax.*"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:ax.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:botorch.*"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:botorch.*"),
]
FAST = {"n_estimators": 30, "num_leaves": 15}
GOALS = {"engagement": "maximize", "unsubscribe": "minimize", "revenue": "maximize",
         "retention_90d": "maximize"}  # retention_90d: a tracked long-term metric, not in the spec
SEM = 0.01
# A proposal "gives one treatment to everyone" when one arm gets more than this share.
SINGLE = 0.97


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    sim = px.simulate("notifications", n_units=4000, seed=3)
    model = px.EffectModel(learner="t", n_folds=2, base_params=FAST).fit(sim.data)
    front = px.optimize_policies(model, method="sobol", budget=200, random_state=0)
    return {"sim": sim, "model": model, "front": front, "tau": np.asarray(model.effects_)}


def shares(policy: px.LinearPolicy, tau: np.ndarray) -> np.ndarray:
    actions = policy.choose(tau)
    return np.bincount(actions, minlength=tau.shape[1]) / actions.shape[0]


def online_metrics(sim: Any, policy: px.LinearPolicy, tau: np.ndarray,
                   rng: np.random.Generator) -> dict[str, Any]:
    """What a round measures: the true mean of every metric under the policy, plus noise."""
    truth = sim.oracle_value(policy.choose(tau))
    return {o: {"mean": float(truth.loc[o, "value"] + rng.normal(0, SEM)), "sem": SEM, "n": 1000}
            for o in GOALS}


def assert_in_bounds(space: TuningSpace, policy: px.LinearPolicy) -> None:
    u = space.to_unit(policy, clip=False)  # the exact inverse of the proposal's point
    assert np.all(u >= -1e-6) and np.all(u <= 1 + 1e-6), u
    assert np.all(policy.weight_vector >= 0)
    assert np.all(np.abs(policy.bias_matrix[1:]) <= space.bias_bound * (1 + 1e-9)), (
        policy.bias_matrix, space.bias_bound)


def test_space_is_the_offline_space_and_round_trips(world: dict[str, Any]) -> None:
    model, front, tau = world["model"], world["front"], world["tau"]
    space = TuningSpace.from_model(model)
    assert space.dim == 2 + 2 * 3 and space.parameter_names[:3] == ["p0", "p1", "p2"]
    assert [r["kind"] for r in space.describe()] == ["weight angle"] * 2 + ["bias"] * 6
    again = TuningSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    np.testing.assert_array_equal(again.bias_bound, space.bias_bound)
    # every optimized policy of the front lies inside and maps back to itself
    searched = [p for p, lab in zip(front.policies, front.labels, strict=True)
                if not lab.startswith("all ")]
    assert searched
    for pol in searched:
        assert space.contains(pol)
        back = again.policy(again.to_unit(pol))
        np.testing.assert_array_equal(back.choose(tau), pol.choose(tau))
    # a single-treatment baseline (bias 1e9) is clipped to the bound, keeping its sign
    all_heavy = front.policy("all heavy")
    assert not space.contains(all_heavy)
    clipped = space.policy(space.to_unit(all_heavy))
    assert clipped.bias_matrix[2, 0] == pytest.approx(space.bias_bound[1, 0])
    assert shares(clipped, tau)[2] > 0.5
    with pytest.raises(InvalidParameterError, match="weights are all 0"):
        space.to_unit(px.LinearPolicy(model.spec_, weights={}))


def test_two_rounds_propose_bounded_personalized_policies(world: dict[str, Any]) -> None:
    sim, model, front, tau = world["sim"], world["model"], world["front"], world["tau"]
    rng = np.random.default_rng(0)
    space = TuningSpace.from_model(model)
    tuner = OnlineTuner.create(sim.spec, space.to_dict(), GOALS, seed=0)
    running = [(tuner.attach(pol), pol) for pol in front.select(q=4, distinct=0).policies]
    assert [t for t, _ in running] == [0, 1, 2, 3]
    # Justification of the personalization check: the offline front searched the same box
    # and holds its most concentrated policies; a proposal may be as concentrated as the
    # most concentrated of them (the front's extremes are legitimate trade-offs), but a
    # round where most arms give one treatment to (nearly) everyone is the failure of the
    # unbounded parameterization (biases of 1e8: every round-2 arm a single treatment).
    searched = [i for i, lab in enumerate(front.labels) if not lab.startswith("all ")]
    front_max = float(front.shares[searched].max())
    proposed = 0
    for rnd in range(2):
        for trial, pol in running:
            tuner.complete(trial, online_metrics(sim, pol, tau, rng), list(GOALS))
        if rnd == 1:  # the stored JSON state carries on
            tuner = OnlineTuner.load(json.loads(json.dumps(tuner.dump())))
        running = tuner.next(4)
        assert len(running) == 4
        assert sorted(t for t, _ in running) == list(range(4 + 4 * rnd, 8 + 4 * rnd))
        concentrated = 0
        for _, pol in running:
            assert_in_bounds(space, pol)
            top = float(shares(pol, tau).max())
            assert top <= max(SINGLE, front_max) + 1e-12
            concentrated += top > SINGLE
            proposed += 1
        assert concentrated <= 1, f"round {rnd + 2}: {concentrated} of 4 arms are single-arm"
    assert proposed == 8


def test_outcome_names_that_broke_the_objective_string() -> None:
    names = ["it's", "a;b", "x[0]", "back\\slash", "with space", "minus-sign"]
    spec = px.ExperimentSpec(
        treatment="arm", arms=["control", "t-1", "t 2"],
        outcomes=[{"name": n, "goal": "minimize" if i % 2 else "maximize"}
                  for i, n in enumerate(names)],
        numeric=["x"],
    )
    assert spec.outcome_names == tuple(names)  # the spec allows these names
    rng = np.random.default_rng(1)
    tau = rng.normal(size=(500, 3, len(names)))
    tau[:, 0] = 0.0
    space = TuningSpace.from_effects(spec, tau)
    objectives = {n: o.goal for n, o in zip(names, spec.outcomes, strict=True)} | {
        "long-term 'x'; [y]": "maximize"}
    tuner = OnlineTuner.create(spec, space, objectives, seed=1)
    assert set(tuner.metric_names.values()) == {f"m{i}" for i in range(len(objectives))}
    pols = space.policies(rng.random((3, space.dim)))
    for pol in pols:
        trial = tuner.attach(pol)
        metrics = {n: {"mean": float(rng.normal()), "sem": 0.1} for n in objectives}
        tuner.complete(trial, metrics, list(objectives))
    loaded = OnlineTuner.load(json.loads(json.dumps(tuner.dump())))
    assert loaded.objectives == list(objectives.items())
    (trial, pol), = loaded.next(1)
    assert trial == 3
    assert_in_bounds(space, pol)
    with pytest.raises(InvalidParameterError, match="no online value"):
        loaded.complete(trial, {names[0]: {"mean": 1.0, "sem": 0.1}})
    loaded.abandon(trial)  # a proposal that will not run


def test_old_bounds_and_old_state_are_refused(world: dict[str, Any]) -> None:
    spec = world["sim"].spec
    with pytest.raises(InvalidParameterError, match="TuningSpace"):
        OnlineTuner.create(spec, [[0.0, 1.0]] * 8, GOALS)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="start the tune phase again"):
        OnlineTuner.load({"client": "{}", "spec": spec.to_dict()})
