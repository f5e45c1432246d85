import pytest

import pexkit as px

DESIGN_YAML = """
name: email-campaign
unit: customer_id                 # optional; the row number when absent
treatment:
  column: segment
  arms: ["No E-Mail", "Mens E-Mail", "Womens E-Mail"]   # control first
outcomes:
  - {name: visit, goal: maximize}
  - {name: spend, goal: maximize, weight: 0.1}          # weight: the default utility's w_m
  - {name: unsubscribe, goal: minimize}
features:
  numeric: [recency, history]
  categorical: [zip_code, channel]
propensity: null                  # a column of P(logged arm | x), or null for the design's 1/K
"""


def test_design_yaml_parses(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(DESIGN_YAML)
    spec = px.ExperimentSpec.from_yaml(path)
    assert spec.arms == ("No E-Mail", "Mens E-Mail", "Womens E-Mail")
    assert spec.control == "No E-Mail"
    assert spec.outcome_names == ("visit", "spend", "unsubscribe")
    assert spec.signs == (1.0, 1.0, -1.0)
    assert spec.default_weights == {"visit": 0.0, "spend": 0.1, "unsubscribe": 0.0}
    assert spec.unit == "customer_id" and spec.propensity is None
    assert spec.features == ("recency", "history", "zip_code", "channel")
    assert spec.shares == pytest.approx((1 / 3,) * 3)


def test_yaml_round_trip(tmp_path):
    spec = px.ExperimentSpec.from_yaml(DESIGN_YAML)
    again = px.ExperimentSpec.from_yaml(spec.to_yaml())
    assert again == spec
    spec.to_yaml(tmp_path / "s.yaml")
    assert px.ExperimentSpec.from_yaml(tmp_path / "s.yaml") == spec


def test_python_form_matches_yaml_form():
    spec = px.ExperimentSpec(
        name="email-campaign",
        unit="customer_id",
        treatment={"column": "segment", "arms": ["No E-Mail", "Mens E-Mail", "Womens E-Mail"]},
        outcomes=[
            {"name": "visit", "goal": "maximize"},
            {"name": "spend", "goal": "maximize", "weight": 0.1},
            {"name": "unsubscribe", "goal": "minimize"},
        ],
        features={"numeric": ["recency", "history"], "categorical": ["zip_code", "channel"]},
    )
    assert spec == px.ExperimentSpec.from_yaml(DESIGN_YAML)


def test_default_weights_first_outcome_when_none_given():
    spec = px.ExperimentSpec(treatment="t", arms=["a", "b"], outcomes=["y", "z"], numeric=["x"])
    assert spec.default_weights == {"y": 1.0, "z": 0.0}


def test_spec_is_immutable():
    spec = px.ExperimentSpec(treatment="t", arms=["a", "b"], outcomes=["y"], numeric=["x"])
    with pytest.raises(AttributeError, match="immutable"):
        spec.arms = ("b", "a")


BAD = [
    ({"treatment": "t", "arms": ["a"], "outcomes": ["y"], "numeric": ["x"]}, "at least 2 arms"),
    ({"treatment": "t", "arms": ["a", "a"], "outcomes": ["y"], "numeric": ["x"]}, "duplicate"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": [], "numeric": ["x"]}, "at least one outcome"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": [{"name": "y", "goal": "up"}], "numeric": ["x"]}, "'goal' must be"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": [{"name": "y", "weight": -1}], "numeric": ["x"]}, "weight"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": [{"name": "y", "missing": "skip"}], "numeric": ["x"]}, "'missing' must be one of"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": [{"name": "y", "type": "count"}], "numeric": ["x"]}, "'type' must be one of"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": [{"name": "y", "aggregate": "mean"}], "numeric": ["x"]}, "'aggregate' must be one of"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": [{"name": "y", "window": "7 days"}], "numeric": ["x"]}, "'window' must be a positive number"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": ["y"], "numeric": ["y"]}, "also the treatment"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": ["y"], "numeric": ["x"], "categorical": ["x"]}, "both numeric"),
    ({"treatment": {"arms": ["a", "b"]}, "outcomes": ["y"], "numeric": ["x"]}, "needs a 'column'"),
    ({"treatment": "t", "arms": ["a", "b"], "outcomes": ["y"], "numeric": ["x"], "shares": [1]}, "one positive share"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD)
def test_bad_specs_raise_spec_error(kwargs, match):
    with pytest.raises(px.SpecError, match=match):
        px.ExperimentSpec(**kwargs)


def test_bad_yaml(tmp_path):
    with pytest.raises(px.SpecError, match="does not exist"):
        px.ExperimentSpec.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(px.SpecError, match="unknown keys"):
        px.ExperimentSpec.from_yaml(DESIGN_YAML + "colour: red\n")
    with pytest.raises(px.SpecError, match="no 'outcomes'"):
        px.ExperimentSpec.from_yaml("treatment: {column: t, arms: [a, b]}\nfeatures: {}\n")
    # no features is an A/B readout's spec (px.ab_readout), with the keys round-tripping
    spec = px.ExperimentSpec.from_yaml(
        "treatment: {column: t, arms: [a, b]}\n"
        "outcomes: [{name: y, type: binary, missing: drop, aggregate: any, window: 7d}]\n")
    assert spec.features == () and spec.outcomes[0].window_seconds == 7 * 86400
    assert px.ExperimentSpec.from_dict(spec.to_dict()) == spec


def test_spec_pickles_through_its_yaml_form() -> None:
    import pickle

    import pexkit as px

    spec = px.simulate("notifications", n_units=10, seed=0).spec
    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and back.to_dict() == spec.to_dict()
