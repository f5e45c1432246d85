"""Store a fitted EffectModel as portable bytes (no pickle) and load it back.

The bytes are a zip archive (see :mod:`pexkit._archive`):

* ``manifest.json``: ``{"format": "pexkit.effect-model", "version": 1}``, the
  spec, the constructor parameters, the feature encoder (categories per
  categorical feature, in code order), the learners fitted and chosen per
  (treatment, outcome), the learner selection table, and, wherever a fitted
  model sits, the name of the member holding it; when the training log is
  stored beside the model, its non-numeric parts (unit ids when they are not
  numbers, the sample ratio test);
* ``boosters/*.txt`` (LightGBM ``model_to_string``) or ``boosters/*.json``
  (XGBoost raw JSON): every cross-fitted outcome model and second-stage model;
* ``arrays/*.npy`` (read with ``allow_pickle=False``): folds, out-of-fold outcome
  predictions, DR scores, out-of-fold effects, arm shares, a 64-bit fingerprint
  per training row (how a later log's training rows are recognized), and, when
  ``dump_effect_model(model, data)`` is given the training log, its encoded
  features, arms, outcomes and propensities (:func:`load_training_log`).

Loading refuses another format or an unknown version with
:class:`~pexkit.exceptions.ModelFormatError`: whoever can write the model store
can no longer run code through it, and a library upgrade either reads a stored
model exactly or says why not.

Examples
--------
>>> import pexkit as px
>>> from pexkit.effects.persist import dump_effect_model, load_effect_model, load_training_log
>>> sim = px.simulate("notifications", n_units=1000, seed=0)
>>> model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 5}).fit(sim.data)
>>> blob = dump_effect_model(model, sim.data)
>>> loaded, log = load_effect_model(blob), load_training_log(blob)
>>> bool((loaded.predict(sim.frame) == model.predict(sim.frame)).all())
True
>>> bool((loaded.training_rows(log) == range(1000)).all()), log.n_units
(True, 1000)
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from pexkit._archive import ArchiveReader, ArchiveWriter, decode_float, encode_float
from pexkit.data import FeatureEncoder, LoggedData
from pexkit.data.logged import SampleRatioTest
from pexkit.effects.boosting import make_base_learner
from pexkit.effects.insample import row_keys
from pexkit.effects.model import EffectModel
from pexkit.exceptions import ModelFormatError, NotFittedError
from pexkit.spec import ExperimentSpec

__all__ = [
    "FORMAT", "VERSION", "dump_effect_model", "encoder_from_dict", "load_effect_model",
    "load_training_log",
]

FORMAT = "pexkit.effect-model"
VERSION = 1
_ARRAYS = ("folds_", "mu_oof_", "scores_", "effects_", "arm_shares_")
_WHAT = "effect model"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:  # pragma: no cover - depends on the install
        return "unknown"


# ------------------------------------------------------------------ boosters
def _booster_text(base: str, booster: Any) -> str | bytes:
    if base == "lightgbm":
        text: str = booster.model_to_string(num_iteration=-1)
        return text
    return bytes(booster.save_raw("json"))


def _load_booster(base: str, content: bytes) -> Any:
    try:
        if base == "lightgbm":
            import lightgbm as lgb

            return lgb.Booster(model_str=content.decode())
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(content))
        booster.set_param({"nthread": 1})
        return booster
    except ImportError:
        raise
    except Exception as exc:  # the libraries raise their own error types
        raise ModelFormatError(
            f"{_WHAT}: a stored {base} booster cannot be read ({type(exc).__name__}: {exc}). "
            "The archive is corrupt or was written by an incompatible library version: "
            "re-train the model."
        ) from None


# ------------------------------------------------------------------ encoders
def encoder_to_dict(encoder: FeatureEncoder) -> dict[str, Any]:
    """JSON form of a feature encoder: column order and categories in code order."""
    spec = encoder.spec
    return {
        "numeric": list(spec.numeric),
        "categorical": list(spec.categorical),
        "categories": {col: [str(c) for c in encoder.categories[col]] for col in spec.categorical},
    }


def encoder_from_dict(doc: dict[str, Any], spec: ExperimentSpec) -> FeatureEncoder:
    """Rebuild a :class:`~pexkit.data.FeatureEncoder` for ``spec`` from :func:`encoder_to_dict`."""
    if list(doc["numeric"]) != list(spec.numeric) or list(doc["categorical"]) != list(
        spec.categorical
    ):
        raise ModelFormatError(
            f"{_WHAT}: the stored encoder's columns {doc['numeric'] + doc['categorical']} "
            f"differ from the spec's features {list(spec.features)}. The archive is corrupt: "
            "re-train the model."
        )
    return FeatureEncoder(spec, {c: list(doc["categories"][c]) for c in spec.categorical})


# ------------------------------------------------------------------ frames
def _frame_to_dict(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_bool_dtype(series):
            cols.append({"name": str(name), "kind": "bool", "values": [bool(v) for v in series]})
        elif pd.api.types.is_integer_dtype(series):
            cols.append({"name": str(name), "kind": "int", "values": [int(v) for v in series]})
        elif pd.api.types.is_float_dtype(series):
            cols.append(
                {"name": str(name), "kind": "float", "values": [encode_float(v) for v in series]}
            )
        else:
            cols.append({"name": str(name), "kind": "str", "values": [str(v) for v in series]})
    return cols


def _frame_from_dict(cols: list[dict[str, Any]]) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for col in cols:
        if col["kind"] == "float":
            data[col["name"]] = np.asarray([decode_float(v) for v in col["values"]], dtype=np.float64)
        elif col["kind"] == "int":
            data[col["name"]] = np.asarray(col["values"], dtype=np.int64)
        elif col["kind"] == "bool":
            data[col["name"]] = np.asarray(col["values"], dtype=np.bool_)
        else:
            data[col["name"]] = list(col["values"])
    return pd.DataFrame(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------ training log
def _dump_data(w: ArchiveWriter, data: LoggedData) -> dict[str, Any]:
    ids = np.asarray(data.unit_ids)
    doc: dict[str, Any] = {
        "X": w.array("arrays/data_X.npy", data.encoder.matrix(data.X)),
        "treatment": w.array("arrays/data_treatment.npy", data.treatment),
        "outcomes": w.array("arrays/data_outcomes.npy", data.outcomes),
        "propensity": w.array("arrays/data_propensity.npy", data.propensity),
        "srm": None,
        "clusters": None if data.clusters is None
        else w.array("arrays/data_clusters.npy", data.clusters),
    }
    if ids.dtype.kind in "biuf":
        doc["unit_ids"] = w.array("arrays/data_unit_ids.npy", ids)
    else:
        doc["unit_ids_json"] = [_jsonable(v) if isinstance(v, int | float | str | np.generic)
                                else str(v) for v in ids.tolist()]
    if data.srm is not None:
        s = data.srm
        doc["srm"] = {
            "counts": s.counts, "expected": s.expected, "chi2": encode_float(s.chi2),
            "p_value": encode_float(s.p_value), "mismatch": s.mismatch,
        }
    return doc


def _load_data(r: ArchiveReader, doc: dict[str, Any], encoder: FeatureEncoder) -> LoggedData:
    spec = encoder.spec
    Xm = np.asarray(r.array(doc["X"]), dtype=np.float64)
    n_num = len(spec.numeric)
    cols: dict[str, Any] = {}
    for j, col in enumerate(spec.numeric):
        cols[col] = Xm[:, j].copy()
    for j, col in enumerate(spec.categorical):
        raw = Xm[:, n_num + j]
        codes = np.where(np.isnan(raw), -1, raw).astype(np.int64)
        cols[col] = pd.Categorical.from_codes(codes, categories=pd.Index(encoder.categories[col]))
    X = pd.DataFrame(cols, index=pd.RangeIndex(Xm.shape[0]))
    if "unit_ids" in doc:
        ids = r.array(doc["unit_ids"])
    else:
        ids = np.asarray(doc["unit_ids_json"], dtype=object)
    srm = None
    if doc.get("srm") is not None:
        s = doc["srm"]
        srm = SampleRatioTest(
            counts={str(k): int(v) for k, v in s["counts"].items()},
            expected={str(k): float(v) for k, v in s["expected"].items()},
            chi2=decode_float(s["chi2"]), p_value=decode_float(s["p_value"]),
            mismatch=bool(s["mismatch"]),
        )
    return LoggedData(
        spec, X, np.asarray(r.array(doc["treatment"]), dtype=np.int64),
        np.asarray(r.array(doc["outcomes"]), dtype=np.float64),
        np.asarray(r.array(doc["propensity"]), dtype=np.float64), ids, encoder, srm,
        None if doc.get("clusters") is None
        else np.asarray(r.array(doc["clusters"]), dtype=np.int64),
    )


# ------------------------------------------------------------------ public
def dump_effect_model(model: EffectModel, data: LoggedData | None = None) -> bytes:
    """Serialize a fitted :class:`~pexkit.effects.EffectModel` to archive bytes (no pickle).

    Parameters
    ----------
    model : EffectModel
        Fitted (LightGBM or XGBoost base learner).
    data : LoggedData, optional
        The training log, stored beside the model when given
        (:func:`load_training_log` reads it back). The model itself keeps only
        a fingerprint per training row (``training_keys_``), so it still
        recognizes its training rows in any later log.

    Returns
    -------
    bytes
        A zip archive; :func:`load_effect_model` reads it back.

    Raises
    ------
    NotFittedError
        The model is not fitted.
    ModelFormatError
        A constructor parameter cannot be written as JSON.
    """
    if not isinstance(model, EffectModel):
        raise ModelFormatError(
            f"dump_effect_model stores an EffectModel; got {type(model).__name__}. Store "
            "distilled policies with pexkit.explain.persist.dump_distilled."
        )
    if not hasattr(model, "effects_"):
        raise NotFittedError(
            "dump_effect_model needs a fitted EffectModel; this one is not fitted. Call "
            ".fit(data) first."
        )
    if data is not None and (
        not isinstance(data, LoggedData) or model.training_keys_ is None
        or not np.array_equal(row_keys(data), model.training_keys_)
    ):
        raise ModelFormatError(
            "dump_effect_model: 'data' must be the LoggedData the model was fitted on (every "
            f"row, in order); got {type(data).__name__} that is not. Pass the training log, "
            "or no data."
        )
    w = ArchiveWriter(FORMAT, VERSION)
    base = model.base
    ext = "txt" if base == "lightgbm" else "json"

    def put(booster: Any) -> str:
        return w.text("boosters", ext, _booster_text(base, booster))

    outcome = [
        [[put(b) for b in per_arm] for per_arm in per_fold] for per_fold in model.outcome_models_
    ]
    learners: dict[str, Any] = {}
    for name, fitted in model.learners_fitted_.items():
        if name == "t":
            learners["t"] = None
        elif name == "dr":
            learners["dr"] = [[[put(b) for b in cell] for cell in per_arm] for per_arm in fitted]
        elif name == "x":
            learners["x"] = [
                [[[put(t0), put(t1)] for t0, t1 in cell] for cell in per_arm] for per_arm in fitted
            ]
        elif name == "s":
            _, models = fitted
            learners["s"] = [[put(b) for b in per_out] for per_out in models]
    arrays = {name: w.array(f"arrays/{name.rstrip('_')}.npy", getattr(model, name)) for name in _ARRAYS}
    params = _jsonable(model.get_params())
    manifest = {
        "pexkit_version": _version("pexkit"),
        "library": {"name": base, "version": _version(base)},
        "spec": model.spec_.to_dict(),
        "params": params,
        "encoder": encoder_to_dict(model.encoder_),
        "n_features": len(model.spec_.features),
        "outcome_models": outcome,
        "learners": learners,
        "chosen": [[None if c is None else str(c) for c in row] for row in model.chosen_.tolist()],
        "selection": _frame_to_dict(model.selection_),
        "arrays": arrays,
        "training_keys": None if model.training_keys_ is None
        else w.array("arrays/training_keys.npy", model.training_keys_),
        "clusters": None if model.clusters_ is None
        else w.array("arrays/clusters.npy", model.clusters_),
        "data": None if data is None else _dump_data(w, data),
        # per estimated outcome (a surrogate index), each arm's mean over its refits: ate()'s
        # standard errors keep the index's own error after a reload
        "refit_spread": {name: w.array(f"arrays/refit_spread_{i}.npy", arr) for i, (name, arr)
                         in enumerate(getattr(model, "arm_refit_spread_", {}).items())},
    }
    return w.finish(manifest)


def _restore_base(model: EffectModel, n_features: int, categorical: list[int]) -> Any:
    base = make_base_learner(model.base, model.base_params, model.n_jobs)
    if model.base == "xgboost":  # predictions need the column types, not the data
        base.bind(np.empty((0, n_features)), categorical)
    return base


def load_effect_model(blob: bytes) -> EffectModel:
    """Read an :class:`~pexkit.effects.EffectModel` written by :func:`dump_effect_model`.

    Parameters
    ----------
    blob : bytes

    Returns
    -------
    EffectModel
        Fitted: ``predict``, ``predict_outcomes``, ``ate``, ``optimize_policies``
        and ``distill`` give what the original gave.

    Raises
    ------
    ModelFormatError
        The bytes are not an effect-model archive, name another format, a
        version this pexkit does not read, or are corrupt.
    """
    r = ArchiveReader(blob, FORMAT, (VERSION,), _WHAT)
    try:
        return _build(r, r.manifest)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFormatError(
            f"{_WHAT}: the manifest of this {FORMAT!r} archive is incomplete or malformed "
            f"({type(exc).__name__}: {exc}). The archive is corrupt: re-train the model."
        ) from None


def load_training_log(blob: bytes) -> LoggedData:
    """The training log stored beside a model by ``dump_effect_model(model, data)``.

    Raises
    ------
    ModelFormatError
        Not an effect-model archive, or one written without its training log.
    """
    r = ArchiveReader(blob, FORMAT, (VERSION,), _WHAT)
    doc = r.manifest
    if doc.get("data") is None:
        raise ModelFormatError(
            f"{_WHAT}: this archive holds the model without its training log; it was written "
            "by dump_effect_model(model) with no data. Store it with "
            "dump_effect_model(model, data) to keep the log beside it."
        )
    try:
        spec = ExperimentSpec.from_dict(doc["spec"])
        return _load_data(r, doc["data"], encoder_from_dict(doc["encoder"], spec))
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFormatError(
            f"{_WHAT}: the training log in this archive is incomplete or malformed "
            f"({type(exc).__name__}: {exc}). The archive is corrupt: re-train the model."
        ) from None


def _build(r: ArchiveReader, doc: dict[str, Any]) -> EffectModel:
    spec = ExperimentSpec.from_dict(doc["spec"])
    params = dict(doc["params"])
    params["candidates"] = tuple(params["candidates"])
    model = EffectModel(**params)
    base = model.base
    if base not in ("lightgbm", "xgboost"):
        raise ModelFormatError(
            f"{_WHAT}: expected base 'lightgbm' or 'xgboost'; found {base!r}. Re-train the model."
        )

    def get(name: str) -> Any:
        return _load_booster(base, r.raw(name))

    encoder = encoder_from_dict(doc["encoder"], spec)
    p = len(spec.features)
    model.spec_ = spec
    model.encoder_ = encoder
    if sorted(doc["arrays"]) != sorted(_ARRAYS):
        raise ModelFormatError(
            f"{_WHAT}: expected the arrays {sorted(_ARRAYS)} in the manifest; found "
            f"{sorted(doc['arrays'])}. The archive is corrupt: re-train the model."
        )
    for name, member in doc["arrays"].items():
        setattr(model, name, r.array(member))
    model.outcome_models_ = [
        [[get(b) for b in per_arm] for per_arm in per_fold] for per_fold in doc["outcome_models"]
    ]
    learners: dict[str, Any] = {}
    for name, stored in doc["learners"].items():
        if name == "t":
            learners["t"] = None
        elif name == "dr":
            learners["dr"] = [[[get(b) for b in cell] for cell in per_arm] for per_arm in stored]
        elif name == "x":
            learners["x"] = [
                [[(get(t0), get(t1)) for t0, t1 in cell] for cell in per_arm] for per_arm in stored
            ]
        elif name == "s":
            s_base = _restore_base(model, p + 1, [*encoder.categorical_indices, p])
            learners["s"] = (s_base, [[get(b) for b in per_out] for per_out in stored])
        else:
            raise ModelFormatError(
                f"{_WHAT}: unknown learner {name!r} in the manifest; this pexkit knows t, s, x "
                "and dr. Upgrade pexkit or re-train the model."
            )
    model.learners_fitted_ = learners
    chosen = np.empty((spec.n_treatments, spec.n_outcomes), dtype=object)
    for k, row in enumerate(doc["chosen"]):
        for m, value in enumerate(row):
            chosen[k, m] = value
    model.chosen_ = chosen
    model.selection_ = _frame_from_dict(doc["selection"])
    if doc.get("clusters") is not None:
        model.clusters_ = np.asarray(r.array(doc["clusters"]), dtype=np.int64)
    if doc.get("training_keys") is not None:
        model.training_keys_ = np.asarray(r.array(doc["training_keys"]), dtype=np.uint64)
    elif doc.get("data") is not None:  # archives written before the fingerprints
        model.training_keys_ = row_keys(_load_data(r, doc["data"], encoder))
    model.arm_refit_spread_ = {str(name): np.asarray(r.array(path), dtype=np.float64)
                               for name, path in (doc.get("refit_spread") or {}).items()}
    model._base = _restore_base(model, p, encoder.categorical_indices)
    return model
