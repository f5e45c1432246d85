"""Stored effect models: exact round trips, no pickle, clear refusals."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.effects.persist import (
    FORMAT,
    dump_effect_model,
    load_effect_model,
    load_training_log,
)
from pexkit.exceptions import InvalidDataError, ModelFormatError, PexkitError
from pexkit.optimize import optimize_policies

FAST = {"n_estimators": 30, "num_leaves": 15}
XGB_FAST = {"n_estimators": 30, "max_depth": 4}


@pytest.fixture(scope="module")
def sim() -> px.Simulation:
    return px.simulate("notifications", n_units=3000, seed=1)


@pytest.fixture(scope="module")
def test_frame() -> pd.DataFrame:
    frame = px.simulate("notifications", n_units=800, seed=2).frame
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "platform"] = "smart-tv"  # unseen category
    return frame


def fit(data: px.LoggedData, learner: str, base: str) -> px.EffectModel:
    params = FAST if base == "lightgbm" else XGB_FAST
    return px.EffectModel(
        learner=learner, base=base, n_folds=2, random_state=0, base_params=params, progress=False
    ).fit(data)


def assert_same_model(a: px.EffectModel, b: px.EffectModel, frame: pd.DataFrame) -> None:
    np.testing.assert_allclose(b.predict(frame), a.predict(frame), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.predict_outcomes(frame), a.predict_outcomes(frame), rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(b.ate(), a.ate(), rtol=0, atol=1e-12)
    for name in ("folds_", "mu_oof_", "scores_", "effects_", "arm_shares_"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    assert b.spec_ == a.spec_
    assert b.encoder_.categories == a.encoder_.categories
    assert b.get_params() == a.get_params()
    assert b.chosen_.tolist() == a.chosen_.tolist()
    pd.testing.assert_frame_equal(b.selection_, a.selection_)
    np.testing.assert_array_equal(b.training_keys_, a.training_keys_)


def assert_same_log(b: px.LoggedData, a: px.LoggedData) -> None:
    pd.testing.assert_frame_equal(b.X, a.X)
    np.testing.assert_array_equal(b.unit_ids, a.unit_ids)
    np.testing.assert_array_equal(b.outcomes, a.outcomes)
    np.testing.assert_array_equal(b.propensity, a.propensity)
    np.testing.assert_array_equal(b.treatment, a.treatment)
    assert b.srm == a.srm


def assert_no_pickle(blob: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        assert "manifest.json" in names
        for name in names:
            assert name.rsplit(".", 1)[-1] in ("json", "txt", "npy"), name
            raw = zf.read(name)
            assert not (raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), name
            if name.endswith(".npy"):
                arr = np.load(io.BytesIO(raw), allow_pickle=False)
                assert arr.dtype.kind in "biuf", (name, arr.dtype)
        json.loads(zf.read("manifest.json"))


@pytest.mark.parametrize("base", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("learner", ["t", "s", "x", "dr", "auto"])
def test_round_trip_is_exact(
    sim: px.Simulation, test_frame: pd.DataFrame, learner: str, base: str
) -> None:
    model = fit(sim.data, learner, base)
    blob = dump_effect_model(model, sim.data)
    assert_no_pickle(blob)
    loaded, log = load_effect_model(blob), load_training_log(blob)
    assert_same_model(model, loaded, test_frame)
    assert_same_log(log, sim.data)
    front = optimize_policies(model, method="sobol", budget=50, random_state=0)
    again = optimize_policies(loaded, log, method="sobol", budget=50, random_state=0)
    np.testing.assert_allclose(again.lifts, front.lifts, rtol=0, atol=1e-12)
    np.testing.assert_allclose(again.lift_se, front.lift_se, rtol=0, atol=1e-12)
    # a loaded model stores again to the same model
    assert_same_model(model, load_effect_model(dump_effect_model(loaded)), test_frame)


def test_missing_values_categoricals_and_string_ids(test_frame: pd.DataFrame) -> None:
    frame = px.simulate("notifications", n_units=3000, seed=3).frame
    frame.loc[::5, "age"] = np.nan  # missing values at fit time
    frame.loc[::9, "region"] = None
    frame["unit_id"] = "u" + frame["unit_id"].astype(str)  # ids that are not numbers
    spec = px.simulate("notifications", n_units=10, seed=3).spec
    data = px.LoggedData.from_frame(frame, spec)
    model = fit(data, "auto", "lightgbm")
    blob = dump_effect_model(model, data)
    assert_no_pickle(blob)
    loaded, log = load_effect_model(blob), load_training_log(blob)
    assert_same_model(model, loaded, test_frame)
    assert_same_log(log, data)
    assert log.unit_ids[0] == "u0"
    tree = px.distill(px.LinearPolicy(model.spec_), model, max_depth=2)
    tree_loaded = px.distill(px.LinearPolicy(loaded.spec_), loaded, log, max_depth=2)
    assert str(tree_loaded) == str(tree)


def test_the_model_keeps_fingerprints_not_its_training_log(sim: px.Simulation) -> None:
    import gc
    import weakref

    data = px.LoggedData.from_frame(sim.frame.copy(), sim.spec)
    model = fit(data, "t", "lightgbm")
    assert model.data_ is data and model.holds(data)
    bare, with_log = dump_effect_model(model), dump_effect_model(model, data)
    # the log's arrays travel only when asked for: 3000 rows x (5 features + arm + 3 outcomes
    # + propensity + id) float64 is ~0.2 MB before compression
    assert len(with_log) - len(bare) > 50_000, (len(bare), len(with_log))
    with pytest.raises(ModelFormatError, match="without its training log"):
        load_training_log(bare)
    with pytest.raises(ModelFormatError, match="the LoggedData the model was fitted on"):
        dump_effect_model(model, sim.data.subset(np.arange(100)))
    gone = weakref.ref(data)
    del data
    gc.collect()
    assert gone() is None  # the model did not keep the log alive
    with pytest.raises(InvalidDataError, match="no longer has its training log"):
        optimize_policies(model, method="sobol", budget=10)
    # its training rows are still recognized, in a reloaded copy, by their content
    again = px.LoggedData.from_frame(sim.frame.copy(), sim.spec)
    assert (model.training_rows(again) == np.arange(len(sim.frame))).all()
    assert (load_effect_model(bare).training_rows(again) == np.arange(len(sim.frame))).all()
    # a model pickles (to Dask workers, say): the weak reference stays behind, the keys travel
    restored = pickle.loads(pickle.dumps(model))
    assert (restored.training_rows(again) == np.arange(len(sim.frame))).all()


def _rewrite_manifest(blob: bytes, **changes: object) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            raw = src.read(name)
            if name == "manifest.json":
                doc = json.loads(raw)
                doc.update(changes)
                raw = json.dumps(doc).encode()
            dst.writestr(name, raw)
    return out.getvalue()


@pytest.fixture(scope="module")
def small_blob(sim: px.Simulation) -> bytes:
    return dump_effect_model(fit(sim.data, "t", "lightgbm"))


def test_unknown_version_or_format_is_refused(small_blob: bytes) -> None:
    with pytest.raises(ModelFormatError, match=r"version 999 .*Upgrade pexkit"):
        load_effect_model(_rewrite_manifest(small_blob, version=999))
    with pytest.raises(ModelFormatError, match=rf"expected format '{FORMAT}'; found 'other.thing'"):
        load_effect_model(_rewrite_manifest(small_blob, format="other.thing"))
    with pytest.raises(ModelFormatError, match="incomplete or malformed"):
        load_effect_model(_rewrite_manifest(small_blob, outcome_models=None))
    assert issubclass(ModelFormatError, PexkitError)
    assert issubclass(ModelFormatError, ValueError)


def test_garbage_and_pickles_are_refused(small_blob: bytes) -> None:
    with pytest.raises(ModelFormatError, match="not one"):
        load_effect_model(b"definitely not a model")
    with pytest.raises(ModelFormatError, match="not one"):
        load_effect_model(small_blob[: len(small_blob) // 2])  # truncated
    with pytest.raises(ModelFormatError, match="pickle"):
        load_effect_model(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFormatError, match="expected the bytes"):
        load_effect_model("a string")  # type: ignore[arg-type]
    # an npy member that would need pickle is refused, not unpickled
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(small_blob)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            raw = src.read(name)
            if name.endswith("effects.npy"):
                buf = io.BytesIO()
                np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
                raw = buf.getvalue()
            dst.writestr(name, raw)
    with pytest.raises(ModelFormatError, match="without pickle"):
        load_effect_model(out.getvalue())


def test_unfitted_model_is_refused() -> None:
    with pytest.raises(px.NotFittedError, match="not fitted"):
        dump_effect_model(px.EffectModel())
    with pytest.raises(ModelFormatError, match="stores an EffectModel"):
        dump_effect_model("model")  # type: ignore[arg-type]
