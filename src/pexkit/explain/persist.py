"""Store a distilled policy (policy tree plus its fidelity and value) as portable bytes.

The same container as stored effect models (:mod:`pexkit._archive`): a zip with
``manifest.json`` (``{"format": "pexkit.distilled-policy", "version": 1}``,
the spec, the feature encoder, the tree's names and categories, fidelity,
value kept and the other measures, the black-box policy's weights) and the
tree's nodes as ``.npy`` arrays (pre-order: feature, threshold, children,
action, training rows). No pickle.

The tree needs only the encoder to decide, so it loads without its effect
model: :func:`load_distilled` then attaches a model shell holding the spec and
encoder (enough for ``choose``, ``compile`` and ``str``; it has no effect
estimates). Pass the fitted model to attach it instead.

Examples
--------
>>> import pexkit as px
>>> from pexkit.explain.persist import dump_distilled, load_distilled
>>> sim = px.simulate("notifications", n_units=1000, seed=0)
>>> model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 5}).fit(sim.data)
>>> tree = px.distill(px.LinearPolicy(model.spec_), model, max_depth=2)
>>> loaded = load_distilled(dump_distilled(tree))
>>> bool((loaded.compile().choose(sim.frame) == tree.choose(sim.frame)).all())
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pexkit._archive import ArchiveReader, ArchiveWriter, decode_float, encode_float
from pexkit.effects.model import EffectModel
from pexkit.effects.persist import encoder_from_dict, encoder_to_dict
from pexkit.exceptions import InvalidParameterError, ModelFormatError
from pexkit.explain.distill import DistilledPolicy
from pexkit.explain.policytree import PolicyTree, _Node
from pexkit.policy import LinearPolicy
from pexkit.spec import ExperimentSpec

__all__ = ["FORMAT", "VERSION", "dump_distilled", "load_distilled"]

FORMAT = "pexkit.distilled-policy"
VERSION = 1
_WHAT = "distilled policy"
_NODE_ARRAYS = ("feature", "threshold", "left", "right", "action", "n")


def _flatten(root: _Node) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {name: [] for name in _NODE_ARRAYS}

    def add(node: _Node) -> int:
        i = len(out["feature"])
        out["feature"].append(-1 if node.is_leaf else int(node.feature))
        out["threshold"].append(float(node.threshold))
        out["left"].append(-1)
        out["right"].append(-1)
        out["action"].append(int(node.action))
        out["n"].append(int(node.n))
        if not node.is_leaf:
            assert node.left is not None and node.right is not None
            out["left"][i] = add(node.left)
            out["right"][i] = add(node.right)
        return i

    add(root)
    return out


def _unflatten(arrays: dict[str, Any]) -> _Node:
    feature, threshold = arrays["feature"], arrays["threshold"]
    left, right, action, n = arrays["left"], arrays["right"], arrays["action"], arrays["n"]
    size = feature.shape[0]
    if size == 0 or any(a.shape != (size,) for a in arrays.values()):
        raise ModelFormatError(
            f"{_WHAT}: the tree's node arrays are empty or of different lengths. The archive "
            "is corrupt: distill the policy again."
        )

    def build(i: int, depth: int) -> _Node:
        if not 0 <= i < size or depth > 64:
            raise ModelFormatError(
                f"{_WHAT}: the tree's node arrays do not form a tree (node {i}). The archive "
                "is corrupt: distill the policy again."
            )
        node = _Node(action=int(action[i]), feature=int(feature[i]),
                     threshold=float(threshold[i]), n=int(n[i]))
        if feature[i] >= 0:
            node.left = build(int(left[i]), depth + 1)
            node.right = build(int(right[i]), depth + 1)
        return node

    return build(0, 0)


def _ci(pair: tuple[float, float]) -> list[float | str]:
    return [encode_float(pair[0]), encode_float(pair[1])]


def _pair(values: list[Any]) -> tuple[float, float]:
    return (decode_float(values[0]), decode_float(values[1]))


def dump_distilled(tree: DistilledPolicy) -> bytes:
    """Serialize a :class:`~pexkit.explain.DistilledPolicy` to archive bytes (no pickle).

    Parameters
    ----------
    tree : DistilledPolicy
        From :func:`pexkit.distill` (or :func:`load_distilled`).

    Returns
    -------
    bytes
        A zip archive; :func:`load_distilled` reads it back.
    """
    if not isinstance(tree, DistilledPolicy):
        raise InvalidParameterError(
            f"dump_distilled expects a DistilledPolicy (from pexkit.distill); got "
            f"{type(tree).__name__}."
        )
    model = tree.model
    w = ArchiveWriter(FORMAT, VERSION)
    pt = tree.tree
    nodes = _flatten(pt.root)
    dtypes = {"threshold": np.float64}
    arrays = {
        name: w.array(f"tree/{name}.npy", np.asarray(values, dtype=dtypes.get(name, np.int64)))
        for name, values in nodes.items()
    }
    manifest = {
        "spec": model.spec_.to_dict(),
        "encoder": encoder_to_dict(model.encoder_),
        "model_params": {"learner": model.learner, "base": model.base,
                         "n_folds": model.n_folds, "random_state": model.random_state},
        "tree": {
            "nodes": arrays,
            "feature_names": list(pt.feature_names),
            "action_names": list(pt.action_names),
            "reward": encode_float(pt.reward),
            "categories": {str(k): [str(c) for c in v] for k, v in pt.categories.items()},
            "missing": list(pt.missing),
        },
        "fidelity": encode_float(tree.fidelity),
        "fidelity_ci": _ci(tree.fidelity_ci),
        "value_kept": encode_float(tree.value_kept),
        "value_kept_ci": _ci(tree.value_kept_ci),
        "gain_kept": encode_float(tree.gain_kept),
        "gain_kept_ci": _ci(tree.gain_kept_ci),
        "baseline": tree.baseline,
        "lifts": {
            name: {key: encode_float(v) for key, v in row.items()} for name, row in tree.lifts.items()
        },
        "shares": {arm: encode_float(v) for arm, v in tree.shares.items()},
        "policy": tree.policy.to_dict() if tree.policy is not None else None,
        "evaluation": tree.evaluation,
        "n_units": int(tree.n_units),
    }
    return w.finish(manifest)


def load_distilled(blob: bytes, model: EffectModel | None = None) -> DistilledPolicy:
    """Read a distilled policy written by :func:`dump_distilled`.

    Parameters
    ----------
    blob : bytes
    model : EffectModel, optional
        The fitted model the tree was distilled from, to attach. Default: a
        model shell with the stored spec and encoder (``choose``, ``compile``
        and ``str`` work; effect estimates do not).

    Returns
    -------
    DistilledPolicy

    Raises
    ------
    ModelFormatError
        The bytes are not a distilled-policy archive, name another format, a
        version this pexkit does not read, or are corrupt.
    InvalidParameterError
        ``model`` was fitted on another spec or with other categories.
    """
    r = ArchiveReader(blob, FORMAT, (VERSION,), _WHAT)
    doc = r.manifest
    try:
        spec = ExperimentSpec.from_dict(doc["spec"])
        encoder = encoder_from_dict(doc["encoder"], spec)
        t = doc["tree"]
        root = _unflatten({name: r.array(t["nodes"][name]) for name in _NODE_ARRAYS})
        pt = PolicyTree(
            root, list(t["feature_names"]), list(t["action_names"]), decode_float(t["reward"]),
            {str(k): list(v) for k, v in t["categories"].items()}, list(t["missing"]),
        )
        if model is None:
            model = EffectModel(**doc["model_params"])
            model.spec_ = spec
            model.encoder_ = encoder
        elif model.spec_ != spec or model.encoder_.categories != encoder.categories:
            raise InvalidParameterError(
                "load_distilled: the model passed was fitted on another spec or with other "
                f"categories than the stored tree (model arms {list(model.spec_.arms)}, "
                f"features {list(model.spec_.features)}; tree arms {list(spec.arms)}, "
                f"features {list(spec.features)}). Pass the model the tree was distilled "
                "from, or none."
            )
        policy = doc["policy"]
        return DistilledPolicy(
            tree=pt,
            model=model,
            fidelity=decode_float(doc["fidelity"]),
            fidelity_ci=_pair(doc["fidelity_ci"]),
            value_kept=decode_float(doc["value_kept"]),
            value_kept_ci=_pair(doc["value_kept_ci"]),
            gain_kept=decode_float(doc["gain_kept"]),
            gain_kept_ci=_pair(doc["gain_kept_ci"]),
            baseline=str(doc["baseline"]),
            lifts={
                str(name): {str(k): decode_float(v) for k, v in row.items()}
                for name, row in doc["lifts"].items()
            },
            shares={str(arm): decode_float(v) for arm, v in doc["shares"].items()},
            policy=(
                None if policy is None
                else LinearPolicy(spec, policy["weights"], policy.get("biases") or {})
            ),
            evaluation=str(doc["evaluation"]),
            n_units=int(doc["n_units"]),
        )
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFormatError(
            f"{_WHAT}: the manifest of this {FORMAT!r} archive is incomplete or malformed "
            f"({type(exc).__name__}: {exc}). The archive is corrupt: distill the policy again."
        ) from None
