"""Export a policy as a portable JSON artifact that numpy alone can evaluate.

:func:`export_policy` compiles a linear policy over its LightGBM effect models
(:func:`~pexkit.serving.compiled.compile_policy`: every tree of every effect
model the policy uses, with the policy's weights and signs folded into per-tree
scales) and writes the flat tree arrays, the per-arm base utilities, the
feature encoding (column order, categories in code order) and the arm names.
:func:`export_distilled` does the same for a distilled policy tree.
:class:`~pexkit.serving.evaluator.PolicyEvaluator` (``evaluator.py``: standard
library and numpy only, the file to copy next to an application) reads either
and decides exactly as pexkit's compiled policies do.

The header ``{"format": "pexkit.policy-artifact", "version": 1}`` names the
layout; non-finite numbers are written as the strings "nan", "inf" and "-inf"
so the file is standard JSON.

Examples
--------
>>> import pexkit as px
>>> from pexkit.serving.artifact import export_policy
>>> from pexkit.serving.evaluator import PolicyEvaluator
>>> sim = px.simulate("notifications", n_units=1000, seed=0)
>>> model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 5}).fit(sim.data)
>>> policy = px.LinearPolicy(model.spec_)
>>> evaluator = PolicyEvaluator.load(export_policy(policy, model))
>>> records = sim.frame.head(50).to_dict("records")
>>> bool((evaluator.choose(records) == policy.choose(model.predict(sim.frame.head(50)))).all())
True
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pexkit._archive import encode_float
from pexkit.effects.model import EffectModel
from pexkit.exceptions import InvalidParameterError
from pexkit.policy.linear import LinearPolicy
from pexkit.serving.compiled import compile_policy
from pexkit.serving.evaluator import FORMAT
from pexkit.spec import ExperimentSpec

if TYPE_CHECKING:
    from pexkit.explain.distill import DistilledPolicy

__all__ = ["FORMAT", "VERSION", "export_distilled", "export_policy", "write_artifact"]

VERSION = 1
_FLOAT_ARRAYS = ("threshold", "leaf_value", "tree_scale", "tree_arm")


def _pexkit_version() -> str:
    try:
        return metadata.version("pexkit")
    except metadata.PackageNotFoundError:  # pragma: no cover - depends on the install
        return "unknown"


def _floats(values: Any) -> list[float | str]:
    return [encode_float(v) for v in np.asarray(values, dtype=np.float64).tolist()]


def _header(kind: str, spec: ExperimentSpec, categories: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "experiment": spec.name,
        "pexkit_version": _pexkit_version(),
        "arms": list(spec.arms),
        "features": {"numeric": list(spec.numeric), "categorical": list(spec.categorical)},
        "categories": {col: [str(c) for c in categories[col]] for col in spec.categorical},
    }


def export_policy(policy: LinearPolicy, model: EffectModel) -> dict[str, Any]:
    """A linear policy over its effect models as a JSON-serializable artifact.

    Parameters
    ----------
    policy : LinearPolicy
    model : EffectModel
        Fitted with ``base="lightgbm"`` (the trees are LightGBM's).

    Returns
    -------
    dict
        ``kind: "linear"``; the arrays of :func:`~pexkit.serving.compiled.compile_policy`
        under ``linear.arrays``, the per-arm base utility (the policy's biases)
        under ``linear.base``, and the policy's weights and biases.

    Raises
    ------
    InvalidParameterError
        The model's base learner is not LightGBM, or the policy was built on
        another spec.
    NotFittedError
        The model is not fitted.
    """
    if not isinstance(policy, LinearPolicy):
        raise InvalidParameterError(
            f"export_policy expects a LinearPolicy; got {type(policy).__name__}. Export a "
            "distilled tree with export_distilled."
        )
    compiled = compile_policy(policy, model)
    arrays: dict[str, Any] = {}
    for name, values in compiled._arrays.items():
        if name in _FLOAT_ARRAYS:
            arrays[name] = _floats(values)
        elif name == "default_left":
            arrays[name] = [bool(v) for v in np.asarray(values).tolist()]
        else:
            arrays[name] = [int(v) for v in np.asarray(values).tolist()]
    spec = model.spec_
    chosen = model.chosen_
    return {
        **_header("linear", spec, model.encoder_.categories),
        "policy": policy.to_dict(),
        "learners": {
            f"{spec.arms[k]}/{o}": str(chosen[k, m])
            for k in range(1, spec.n_treatments)
            for m, o in enumerate(spec.outcome_names)
        },
        "linear": {
            "n_trees": compiled.n_trees,
            "shifted": compiled.shifted,
            "base": _floats(compiled._base),
            "arrays": arrays,
            # binary outcomes' models: arm k gains coef[l][k] * sigmoid(scale[l] * column K + l)
            "links": None if compiled.links is None else {
                "coef": [_floats(row) for row in compiled.links],
                "scale": _floats(compiled.link_scale),
            },
        },
    }


def export_distilled(tree: DistilledPolicy) -> dict[str, Any]:
    """A distilled policy tree as a JSON-serializable artifact (``kind: "tree"``).

    Parameters
    ----------
    tree : DistilledPolicy
        From :func:`pexkit.distill` or :func:`pexkit.explain.persist.load_distilled`.

    Returns
    -------
    dict
        The tree's flat arrays (:meth:`~pexkit.explain.PolicyTree.compile`) over
        the full encoded matrix (every feature of the spec), and its rules as text.
    """
    inner: Any = getattr(tree, "tree", None)
    model: Any = getattr(tree, "model", None)
    if inner is None or not hasattr(inner, "compile") or not hasattr(model, "encoder_"):
        raise InvalidParameterError(
            f"export_distilled expects a DistilledPolicy (from pexkit.distill); got "
            f"{type(tree).__name__}."
        )
    spec = model.spec_
    flat = inner.compile()
    if flat.n_features != len(spec.features):
        raise InvalidParameterError(
            f"export_distilled: the tree splits on {flat.n_features} features, the spec has "
            f"{len(spec.features)}; distill the policy on this model's spec."
        )
    return {
        **_header("tree", spec, model.encoder_.categories),
        "policy": tree.policy.to_dict() if tree.policy is not None else None,
        "rules": str(inner),
        "fidelity": encode_float(tree.fidelity),
        "value_kept": encode_float(tree.value_kept),
        "tree": {
            "feature": [int(v) for v in flat.feature.tolist()],
            "threshold": _floats(flat.threshold),
            "left": [int(v) for v in flat.left.tolist()],
            "right": [int(v) for v in flat.right.tolist()],
            "action": [int(v) for v in flat.action.tolist()],
        },
    }


def write_artifact(artifact: dict[str, Any], path: str | Path) -> Path:
    """Write an artifact as JSON (standard: no NaN or infinity tokens); return the path."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(artifact, allow_nan=False, separators=(",", ":")))
    return path
