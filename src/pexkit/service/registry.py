"""Loaded models and compiled policy versions, bounded per server process.

Models are stored as model text plus a versioned JSON manifest (never pickles):
:func:`pexkit.effects.persist.load_effect_model`, the distilled-tree loader, and
plain JSON for fronts and tuner states. Loaded models and compiled policies are
kept in an LRU cache of ``PEXKIT_MAX_CACHED_MODELS`` entries.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from pexkit.data.logged import LoggedData
from pexkit.effects.model import EffectModel
from pexkit.policy.linear import LinearPolicy
from pexkit.service.errors import ConflictError, NotFoundError
from pexkit.service.validation import LIMITS
from pexkit.store.db import EventStore

__all__ = ["Chooser", "Registry"]


class Chooser:
    """A compiled policy version: feature records -> treatment indices."""

    def __init__(self, kind: str, impl: Any) -> None:
        self.kind = kind
        self.impl = impl
        if kind == "tree":  # lookups for the features the tree uses, in matrix order
            spec = impl.model.spec_
            cats = impl.model.encoder_.categories
            self._cols = [
                (f, {str(c): float(i) for i, c in enumerate(cats[f])} if f in spec.categorical
                 else None)
                for f in impl.features
            ]

    def choose_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        if self.kind == "linear":
            return np.asarray(self.impl.choose_matrix(self.impl.encode_records(records)))
        if not self._cols:  # a one-leaf tree
            return np.full(len(records), int(self.impl.tree.action[0]), dtype=np.int64)
        X = np.empty((len(records), len(self._cols)))
        for i, rec in enumerate(records):
            for j, (f, lookup) in enumerate(self._cols):
                v = rec.get(f)
                if v is None:
                    X[i, j] = np.nan
                elif lookup is None:
                    X[i, j] = float(v)
                else:
                    X[i, j] = lookup.get(str(v), np.nan)
        return np.asarray(self.impl.choose_matrix(X))


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


class Registry:
    """Loads blobs from the store and compiles policy versions, with bounded caches."""

    def __init__(self, store: EventStore, size: int | None = None) -> None:
        self.store = store
        self.models = _LRU(size or LIMITS.max_cached_models)
        self.choosers = _LRU(4 * (size or LIMITS.max_cached_models))

    # ------------------------------------------------------------ blobs
    def _blob(self, blob_id: int, kind: str) -> bytes:
        found, blob = self.store.blob(blob_id)
        if found != kind:
            raise ConflictError(f"blob {blob_id} holds a {found!r}, not a {kind!r}.")
        return blob

    def effect_model(self, model_id: int) -> EffectModel:
        from pexkit.effects.persist import load_effect_model

        def make() -> EffectModel:
            return load_effect_model(self._blob(model_id, "effect-model"))

        return self.models.get(("effect-model", model_id), make)  # type: ignore[no-any-return]

    def training_log(self, model_id: int) -> LoggedData:
        """The log effect model ``model_id`` was trained on (stored beside it)."""
        from pexkit.effects.persist import load_training_log

        def make() -> LoggedData:
            return load_training_log(self._blob(model_id, "effect-model"))

        return self.models.get(("training-log", model_id), make)  # type: ignore[no-any-return]

    def distilled(self, blob_id: int) -> Any:
        from pexkit.explain.persist import load_distilled

        return self.models.get(
            ("distilled", blob_id), lambda: load_distilled(self._blob(blob_id, "distilled"))
        )

    def json_blob(self, blob_id: int, kind: str) -> dict[str, Any]:
        return dict(json.loads(self._blob(blob_id, kind).decode("utf-8")))

    def put_effect_model(
        self, experiment: str, model: EffectModel, summary: dict[str, Any], data: LoggedData
    ) -> int:
        """Store ``model`` with its training log ``data`` beside it; the new blob id."""
        from pexkit.effects.persist import dump_effect_model

        blob = dump_effect_model(model, data)
        blob_id = self.store.add_blob(experiment, "effect-model", blob, summary)
        self.models.get(("effect-model", blob_id), lambda: model)
        self.models.get(("training-log", blob_id), lambda: data)
        return blob_id

    def put_distilled(self, experiment: str, tree: Any, summary: dict[str, Any]) -> int:
        from pexkit.explain.persist import dump_distilled

        blob_id = self.store.add_blob(experiment, "distilled", dump_distilled(tree), summary)
        self.models.get(("distilled", blob_id), lambda: tree)
        return blob_id

    def put_json(self, experiment: str, kind: str, value: dict[str, Any]) -> int:
        blob = json.dumps(value, allow_nan=False, default=float).encode("utf-8")
        return self.store.add_blob(experiment, kind, blob, {"kind": kind})

    # ------------------------------------------------------------ policies
    def policy_row(self, name: str, version: int) -> dict[str, Any]:
        prow = self.store.policy(name, version)
        if prow is None:
            raise NotFoundError(
                f"policy version {version} of {name!r} not found; list versions with "
                f"GET /v1/experiments/{name}/policies."
            )
        return prow

    def linear_policy(self, name: str, version: int) -> tuple[LinearPolicy, EffectModel]:
        prow = self.policy_row(name, version)
        if prow["kind"] != "linear":
            raise ConflictError(f"policy version {version} of {name!r} is {prow['kind']!r}, "
                                "not linear.")
        model = self.effect_model(int(prow["model_id"]))
        policy = LinearPolicy(model.spec_, weights=prow["params"]["weights"],
                              biases=prow["params"]["biases"])
        return policy, model

    def chooser(self, name: str, version: int) -> Chooser:
        """The compiled policy of a version (built once per process, then cached)."""
        from pexkit.serving.compiled import compile_policy

        def make() -> Chooser:
            prow = self.policy_row(name, version)
            if prow["kind"] == "linear":
                policy, model = self.linear_policy(name, version)
                return Chooser("linear", compile_policy(policy, model))
            if prow["kind"] == "tree":
                return Chooser("tree", self.distilled(int(prow["model_id"])).compile())
            raise ConflictError(
                f"policy version {version} of {name!r} is {prow['kind']!r}; only linear and "
                "tree versions can be served."
            )

        return self.choosers.get((name, version), make)  # type: ignore[no-any-return]
