"""Exploration after launch: logged propensities make launched traffic usable.

A policy launched with epsilon = 0.05 serves the policy's arm with probability
0.95 + 0.05/K and every other arm with 0.05/K, and logs that propensity. Ground
truth comes from the simulator's true means for every unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pexkit as px
from pexkit.service import training
from pexkit.service.core import DecisionService
from pexkit.simulate.scenarios import NotificationsScenario
from pexkit.store.db import EventStore

NAME = "explore"
OUTCOMES = ["engagement", "unsubscribe", "revenue"]
WEIGHTS = {"engagement": 1.0, "unsubscribe": 2.0, "revenue": 1.0}
FAST = {"learner": "t", "n_folds": 3, "base_params": {"n_estimators": 60, "num_leaves": 15}}


class World:
    def __init__(self, svc: DecisionService, seed: int) -> None:
        self.svc, self.sc = svc, NotificationsScenario()
        self.rng = np.random.default_rng(seed)
        self.next_id = 0

    def run(self, n: int) -> tuple[list[Any], Any]:
        feats = self.sc.features(n, self.rng)
        ids = [f"u{self.next_id + i}" for i in range(n)]
        self.next_id += n
        recs = feats.to_dict("records")
        ds = []
        for j in range(0, n, 5000):
            ds += self.svc.decide(NAME, [{"unit": u, "features": f}
                                         for u, f in zip(ids[j:j + 5000], recs[j:j + 5000],
                                                         strict=True)])
        t = np.array([d.treatment_index for d in ds])
        mu = self.sc.means(feats)
        y = self.sc.draw(mu[np.arange(n), t, :], self.rng, feats)
        events = [{"unit": ids[i], "outcome": o, "value": float(y[i, m]),
                   "event_id": f"{ids[i]}:{o}"} for i in range(n) for m, o in enumerate(OUTCOMES)]
        for j in range(0, len(events), 9000):
            self.svc.log(NAME, events[j:j + 9000])
        return ds, mu


def earlier_launch(svc: DecisionService, data: Any) -> Any:
    """What the launched version chooses for the units of ``data``."""
    version = svc.experiment(NAME).state.launched_version
    assert version is not None
    policy, model = svc.registry.linear_policy(NAME, version)
    return policy.choose(model.predict(data))


def utility(mu: np.ndarray) -> np.ndarray:
    return (WEIGHTS["engagement"] * mu[..., 0] - WEIGHTS["unsubscribe"] * mu[..., 1]
            + WEIGHTS["revenue"] * mu[..., 2])


@pytest.mark.slow
def test_launched_traffic_with_exploration_feeds_evaluation_and_retraining(tmp_path: Path) -> None:
    svc = DecisionService(EventStore(f"sqlite:///{tmp_path / 'events.db'}"))
    try:
        spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
        spec["name"] = NAME
        spec["outcomes"] = [{**o, "weight": WEIGHTS[o["name"]]} for o in spec["outcomes"]]
        svc.create_experiment(spec, holdout=0.05, salt="exploration-test-salt")  # reproducible
        world = World(svc, seed=21)
        world.run(3000)  # randomize
        first = training.run_train(svc, NAME, dict(FAST))
        launched = svc.store.add_policy(NAME, "linear", px.LinearPolicy(
            px.ExperimentSpec.from_dict(spec)).to_dict(), first["model_id"], "utility")
        # its serving twin: one model per term instead of one per fold (a third of the trees)
        twin = training.run_refit(svc, NAME, {"version": launched})
        assert twin["agreement"] > 0.5, twin  # chance is about 1/3
        assert (svc.registry.chooser(NAME, twin["version"]).impl.n_trees * 3
                == svc.registry.chooser(NAME, launched).impl.n_trees)
        svc.launch(NAME, launched, holdout=0.05, explore=0.05)
        ds, mu = world.run(24000)
        K = 3
        hold = np.array([d.holdout for d in ds])
        explored = np.array([d.arm == "explore" for d in ds])
        assert 0.04 < hold.mean() < 0.06 and 0.04 < explored[~hold].mean() < 0.06
        served = [d for d in ds if not d.holdout]
        # the logged propensity is the serving distribution's, whichever arm was drawn
        p_best, p_other = 0.95 + 0.05 / K, 0.05 / K
        assert {round(d.propensity, 12) for d in served} == {round(p_best, 12), round(p_other, 12)}

        # (1) a candidate's DR value from launched traffic alone covers its true value
        data = svc.training_data(NAME, ("launched",))
        assert data.n_units == len(served)
        # the candidate comes from the earlier (randomize-phase) model, as a next candidate
        # would: a fixed policy, not one fitted to the traffic that evaluates it
        earlier = svc.registry.effect_model(first["model_id"])
        candidate = px.LinearPolicy(earlier.spec_, weights={"engagement": 1.0,
                                                            "unsubscribe": 0.5, "revenue": 0.2})
        actions = candidate.choose(earlier.predict(data))
        served_t = np.array([d.treatment_index for d in served])
        policy_t = np.array([d.treatment_index for d in served if d.arm == "policy"])
        assert len(policy_t) > 0.9 * len(served_t)
        differs = float(np.mean(actions != earlier_launch(svc, data)))
        assert differs > 0.1, differs  # it needs the explored arms: not the launched policy
        model = px.EffectModel(**FAST, random_state=0, progress=False).fit(data)
        value = px.evaluate_policy(actions, data, model).to_frame()
        row_of = {d.unit: i for i, d in enumerate(ds)}
        idx = np.array([row_of[str(u)] for u in data.unit_ids])  # rows in the store's order
        truth = mu[idx, actions, :][:, :3].mean(axis=0)  # its true value on the same units
        for m, o in enumerate(OUTCOMES):
            row = value.loc[o]
            # within 3 of its standard errors (a 99.7% band: with three outcomes a false
            # alarm has probability < 1%; a 95% band fails ~14% of assignment salts)
            z = abs(row["value"] - truth[m]) / row["value_se"]
            assert z < 3.0, (o, row, truth[m], z)

        # (2) retraining on launched + holdout is no worse in truth than on the holdout alone
        fresh = NotificationsScenario().features(20000, np.random.default_rng(5))
        u_true = utility(NotificationsScenario().means(fresh))  # (n, K)
        values = {}
        for sources in (("holdout",), ("holdout", "launched")):
            res = training.run_train(svc, NAME, {**FAST, "sources": list(sources)})
            fitted = svc.registry.effect_model(res["model_id"])
            pol = px.LinearPolicy(fitted.spec_)
            chosen = pol.choose(fitted.predict(fresh))
            values[sources] = float(u_true[np.arange(len(fresh)), chosen].mean())
        assert values[("holdout", "launched")] >= values[("holdout",)] - 0.002, values
    finally:
        svc.close()


@pytest.mark.slow
def test_retraining_with_tune_rounds_is_no_worse_in_truth(tmp_path: Path) -> None:
    """Every phase's data for retraining: the tune round's units (with their marginal
    propensities over the round's arms) added to the launch holdout do not hurt the
    retrained utility policy's true value, and the job says how many units of each it used."""
    svc = DecisionService(EventStore(f"sqlite:///{tmp_path / 'events.db'}"))
    try:
        spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
        spec["name"] = NAME
        spec["outcomes"] = [{**o, "weight": WEIGHTS[o["name"]]} for o in spec["outcomes"]]
        svc.create_experiment(spec, holdout=0.05, salt="tune-retrain-salt")
        world = World(svc, seed=31)
        world.run(3000)  # randomize
        first = training.run_train(svc, NAME, dict(FAST))
        assert first["units_by_source"] == {"randomize": 3000, "tune": 0, "holdout": 0,
                                            "launched": 0}
        training.run_optimize(svc, NAME, {"q": 3, "budget": 200, "random_state": 0})
        svc.start_tune(NAME)
        tune_ds, _ = world.run(6000)
        randomized = sum(d.propensity < 1.0 for d in tune_ds)
        assert randomized > 1000  # the arms disagree on many units
        launched = svc.store.add_policy(NAME, "linear", px.LinearPolicy(
            px.ExperimentSpec.from_dict(spec)).to_dict(), first["model_id"], "utility")
        svc.launch(NAME, launched, holdout=0.05)
        ds, _ = world.run(10000)
        hold = sum(d.holdout for d in ds)
        fresh = NotificationsScenario().features(20000, np.random.default_rng(7))
        u_true = utility(NotificationsScenario().means(fresh))
        values = {}
        for sources in (("holdout",), ("tune", "holdout")):
            res = training.run_train(svc, NAME, {**FAST, "sources": list(sources)})
            assert res["units_by_source"] == {"holdout": hold, **(
                {"tune": randomized} if "tune" in sources else {})}
            fitted = svc.registry.effect_model(res["model_id"])
            chosen = px.LinearPolicy(fitted.spec_).choose(fitted.predict(fresh))
            values[sources] = float(u_true[np.arange(len(fresh)), chosen].mean())
        oracle = float(u_true.max(axis=1).mean())
        assert values[("tune", "holdout")] >= values[("holdout",)] - 0.002, (values, oracle)
    finally:
        svc.close()
