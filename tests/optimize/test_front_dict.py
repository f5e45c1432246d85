"""A Pareto front round-trips through its JSON document (front_from_dict)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pexkit as px
from pexkit.exceptions import InvalidDataError
from pexkit.optimize import front_from_dict, load_policies, optimize_policies


def test_front_round_trips_through_json(tmp_path) -> None:
    sim = px.simulate("notifications", n_units=2000, seed=4)
    model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 20}).fit(sim.data)
    front = optimize_policies(model, method="sobol", budget=40, random_state=0)
    front.mark_candidates(front.select(q=2))
    doc = json.loads(json.dumps(front.to_dict()))
    again = front_from_dict(doc)
    assert again.spec == front.spec
    assert again.labels == front.labels
    for name in ("lifts", "lift_se", "shares", "reference_point", "on_front", "candidate"):
        np.testing.assert_array_equal(getattr(again, name), getattr(front, name))
    assert [p.to_dict() for p in again.policies] == [p.to_dict() for p in front.policies]
    assert again.hypervolume() == front.hypervolume()
    assert again.to_dict() == doc
    front.save(tmp_path / "policies.json")
    assert load_policies(tmp_path / "policies.json").to_dict() == doc
    with pytest.raises(InvalidDataError, match="lacks 'policies'"):
        front_from_dict({"treatments": [], "outcomes": []})
