"""Arm labels match by value where they are numbers; the sample-ratio warning names the fix."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.exceptions import InvalidDataError, SampleRatioMismatchWarning, SpecError


def _frame(labels: list, n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "arm": [labels[i % len(labels)] for i in range(n)],
        "y": rng.normal(size=n),
        "x": rng.normal(size=n),
    })


def _spec(arms: list, **treatment: object) -> px.ExperimentSpec:
    return px.ExperimentSpec(treatment={"column": "arm", "arms": arms, **treatment},
                             outcomes=["y"], features={"numeric": ["x"]})


@pytest.mark.parametrize(("arms", "column"), [
    ([0, 1], [0.0, 1.0]),          # the case from the issue: a float column, integer arms
    (["0", "1"], [0, 1]),          # YAML strings, an integer column
    ([0, 1], ["0", "1.0"]),        # a text column, one of its labels written as a float
    ([1.5, 2], [1.5, 2.0]),
    (["a", "b"], ["a", "b"]),      # text stays text
])
def test_numeric_labels_are_one_arm_however_they_are_written(arms: list, column: list) -> None:
    data = px.LoggedData.from_frame(_frame(column), _spec(arms))
    # rows alternate arms, so each arm has exactly half of them, in the spec's order
    assert list(data.arm_counts.values()) == [300, 300]
    np.testing.assert_array_equal(data.treatment[:4], [0, 1, 0, 1])


def test_a_label_that_is_not_an_arm_is_named_and_text_is_not_a_number() -> None:
    with pytest.raises(InvalidDataError, match=r"unknown labels \['2'\]"):
        px.LoggedData.from_frame(_frame([0, 1, 2]), _spec([0, 1]))
    # " 1" and "1_0" are text, not the numbers 1 and 10
    with pytest.raises(InvalidDataError, match="unknown labels"):
        px.LoggedData.from_frame(_frame(["0", " 1"]), _spec([0, 1]))
    with pytest.raises(InvalidDataError, match="unknown labels"):
        px.LoggedData.from_frame(_frame(["0", "1_0"]), _spec([0, 10]))


def test_spec_labels_that_would_collide_are_refused() -> None:
    with pytest.raises(SpecError, match="are one arm"):
        _spec([0, "0.0", 1])
    spec = _spec([0, 1, 2])
    assert spec.treatment_index(1.0) == 1 and spec.treatment_index("2") == 2
    with pytest.raises(SpecError, match="unknown treatment"):
        spec.treatment_index(3)


def test_an_unequal_design_without_shares_is_told_about_treatment_shares() -> None:
    labels = ["c", "c", "c", "t"]  # 75/25 on purpose, spec says nothing: 1/2 each assumed
    with pytest.warns(SampleRatioMismatchWarning, match="treatment.shares") as caught:
        px.LoggedData.from_frame(_frame(labels, n=2000), _spec(["c", "t"]))
    assert "'c': 0.75" in str(caught[0].message)
    # declared, the same log is balanced against its design: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleRatioMismatchWarning)
        data = px.LoggedData.from_frame(_frame(labels, n=2000),
                                        _spec(["c", "t"], shares=[0.75, 0.25]))
    assert data.srm is not None and not data.srm.mismatch
    # a spec that declares unequal shares and still mismatches is not told to declare them
    with pytest.warns(SampleRatioMismatchWarning) as caught:
        px.LoggedData.from_frame(_frame(["c", "t"], n=2000),
                                 _spec(["c", "t"], shares=[0.75, 0.25]))
    assert "treatment.shares" not in str(caught[0].message)
