"""Stored distilled policies: exact round trips without the effect model, no pickle."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.effects.persist import dump_effect_model
from pexkit.exceptions import InvalidParameterError, ModelFormatError
from pexkit.explain import CompiledDistilledPolicy, DistilledPolicy
from pexkit.explain.persist import dump_distilled, load_distilled

FAST = {"n_estimators": 30, "num_leaves": 15}


@pytest.fixture(scope="module")
def fitted() -> tuple[px.EffectModel, DistilledPolicy]:
    frame = px.simulate("notifications", n_units=3000, seed=1).frame
    frame.loc[::6, "age"] = np.nan  # the tree may split on missing values
    spec = px.simulate("notifications", n_units=10, seed=1).spec
    data = px.LoggedData.from_frame(frame, spec)
    model = px.EffectModel(learner="t", n_folds=2, base_params=FAST, progress=False).fit(data)
    policy = px.LinearPolicy(model.spec_, weights={"engagement": 1, "unsubscribe": 5, "revenue": 1})
    return model, px.distill(policy, model, max_depth=3)


@pytest.fixture(scope="module")
def test_frame() -> pd.DataFrame:
    frame = px.simulate("notifications", n_units=1500, seed=6).frame
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "platform"] = "smart-tv"  # unseen category
    frame.loc[::13, "region"] = None
    return frame


def test_round_trip_without_the_model(
    fitted: tuple[px.EffectModel, DistilledPolicy], test_frame: pd.DataFrame
) -> None:
    model, tree = fitted
    blob = dump_distilled(tree)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for name in zf.namelist():
            assert name.rsplit(".", 1)[-1] in ("json", "npy"), name
            if name.endswith(".npy"):
                np.load(io.BytesIO(zf.read(name)), allow_pickle=False)
    loaded = load_distilled(blob)
    assert str(loaded) == str(tree)
    assert str(loaded.tree) == str(tree.tree)
    assert loaded.to_dict() == tree.to_dict()
    assert loaded.tree.missing == tree.tree.missing
    compiled = loaded.compile()
    assert isinstance(compiled, CompiledDistilledPolicy)
    expected = tree.choose(test_frame)
    np.testing.assert_array_equal(compiled.choose(test_frame), expected)
    np.testing.assert_array_equal(loaded.choose(test_frame), expected)
    np.testing.assert_array_equal(compiled.choose_matrix(model._matrix(test_frame)), expected)
    assert compiled.features == tree.compile().features
    # the shell has the spec and encoder, and no effect estimates
    assert loaded.model.spec_ == model.spec_
    with pytest.raises(px.NotFittedError):
        loaded.model.predict(test_frame)
    # stored again, the same bytes' content
    assert load_distilled(dump_distilled(loaded)).to_dict() == tree.to_dict()


def test_attach_the_model(fitted: tuple[px.EffectModel, DistilledPolicy]) -> None:
    model, tree = fitted
    loaded = load_distilled(dump_distilled(tree), model)
    assert loaded.model is model
    frame = px.simulate("notifications", n_units=900, seed=9).frame
    frame = frame[frame["platform"] != frame["platform"].iloc[0]]  # other categories
    other = px.EffectModel(
        learner="t", n_folds=2, base_params={"n_estimators": 5}, progress=False
    ).fit(px.LoggedData.from_frame(frame, model.spec_, warn_srm=False))
    with pytest.raises(InvalidParameterError, match="another spec or with other categories"):
        load_distilled(dump_distilled(tree), other)


def test_refusals(fitted: tuple[px.EffectModel, DistilledPolicy]) -> None:
    model, tree = fitted
    with pytest.raises(ModelFormatError, match="expected format 'pexkit.distilled-policy'"):
        load_distilled(dump_effect_model(model))
    blob = dump_distilled(tree)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            raw = src.read(name)
            if name == "manifest.json":
                raw = json.dumps({**json.loads(raw), "version": 2}).encode()
            dst.writestr(name, raw)
    with pytest.raises(ModelFormatError, match="version 2"):
        load_distilled(out.getvalue())
    with pytest.raises(ModelFormatError):
        load_distilled(b"\x00" * 40)
    with pytest.raises(InvalidParameterError, match="DistilledPolicy"):
        dump_distilled(tree.tree)  # type: ignore[arg-type]
