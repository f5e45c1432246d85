"""The decision hot path: validate, assign, commit, answer.

Per request the service does no SQL read: an experiment's metadata (spec,
salt, state, compiled policies) is cached per process together with the state
version it came from. The group commit writes the assignments and, in the same
transaction, checks that the version is unchanged; if another worker or job
changed the state, the request is recomputed from the new state (so a phase
change takes effect at once on every worker, and no decision is stored under
a state that was already replaced).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from pexkit.service.errors import ConflictError, InvalidRequestError, UnavailableError
from pexkit.service.registry import Registry
from pexkit.service.state import Experiment
from pexkit.service.validation import check_batch, check_id, check_number, check_text
from pexkit.serving.assign import bucket, uniform_arm
from pexkit.serving.decision import Decision
from pexkit.spec.spec import ExperimentSpec
from pexkit.store.commit import GroupCommitter
from pexkit.store.db import StaleStateError, StoreUnavailableError

__all__ = ["Decider", "ExperimentView"]

_RETRIES = 5


@dataclass
class ExperimentView:
    """What deciding needs of one experiment, parsed once per state version."""

    experiment: Experiment
    spec: ExperimentSpec
    arms: list[str]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def version(self) -> int:
        return self.experiment.version


class Decider:
    """Decisions for batches of units, sticky within an epoch, durable before the answer."""

    def __init__(self, load: Any, registry: Registry, committer: GroupCommitter) -> None:
        self._load = load  # name -> Experiment (raises NotFoundError)
        self.registry = registry
        self.committer = committer
        self._views: dict[str, ExperimentView] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ metadata cache
    def view(self, name: str) -> ExperimentView:
        with self._lock:
            hit = self._views.get(name)
        if hit is not None:
            return hit
        exp = self._load(name)
        spec = ExperimentSpec.from_dict(exp.spec)
        view = ExperimentView(exp, spec, list(spec.arms), tuple(spec.numeric),
                              tuple(spec.categorical), tuple(spec.features))
        with self._lock:
            cur = self._views.get(name)
            if cur is None or cur.version <= view.version:
                self._views[name] = view
        return view

    def invalidate(self, name: str) -> None:
        with self._lock:
            self._views.pop(name, None)

    # ------------------------------------------------------------ validation
    def _features(self, view: ExperimentView, features: Any, where: str) -> dict[str, Any]:
        if not isinstance(features, dict):
            raise InvalidRequestError(
                f"{where}.features: expected an object of feature values; got "
                f"{type(features).__name__}."
            )
        missing = [f for f in view.features if f not in features]
        if missing:
            raise InvalidRequestError(
                f"{where}.features: missing {missing}; the spec's features are "
                f"{list(view.features)}. Send every feature (null when unknown)."
            )
        clean: dict[str, Any] = {}
        for f in view.numeric:
            v = features[f]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise InvalidRequestError(
                    f"{where}.features.{f}: expected a number; got {v!r:.80} "
                    f"({type(v).__name__}). Send numbers for numeric features."
                )
            clean[f] = None if v is None else check_number(v, f"{where}.features.{f}")
        for f in view.categorical:
            v = features[f]
            if v is None:
                clean[f] = None
            elif isinstance(v, str):
                clean[f] = check_text(v, f"{where}.features.{f}")
            elif isinstance(v, int) and not isinstance(v, bool):
                clean[f] = check_id(v, f"{where}.features.{f}")
            else:
                raise InvalidRequestError(
                    f"{where}.features.{f}: expected a string category; got {v!r:.80} "
                    f"({type(v).__name__})."
                )
        return clean

    def parse(
        self, view: ExperimentView, requests: list[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        check_batch(len(requests), "requests")
        units, feats = [], []
        for i, req in enumerate(requests):
            units.append(check_id(req.get("unit"), f"requests[{i}].unit"))
            feats.append(self._features(view, req.get("features"), f"requests[{i}]"))
        return units, feats

    # ------------------------------------------------------------ assignment
    def assign(
        self, view: ExperimentView, units: list[str], feats: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Assignment rows for the units under the view's state (first occurrence wins)."""
        exp, state = view.experiment, view.experiment.state
        phase = state.phase
        if phase not in ("randomize", "tune", "launched"):
            raise ConflictError(
                f"experiment {exp.name!r} is in phase {phase!r}; decide needs randomize, tune "
                f"or launched. Restart it with POST /v1/experiments/{exp.name}/phase."
            )
        K, salt, epoch = len(view.arms), exp.salt, state.epoch
        base = {"experiment": exp.name, "epoch": epoch, "phase": phase}
        rows: list[dict[str, Any]] = []
        if phase == "randomize":
            for u, f in zip(units, feats, strict=True):
                t = uniform_arm(salt, "randomize", u, K)
                rows.append({**base, "unit": u, "treatment": t, "propensity": 1.0 / K,
                             "policy_version": 1, "arm": None, "holdout": False, "features": f})
        elif phase == "tune":
            arms = state.arms
            choices = np.stack(
                [self.registry.chooser(exp.name, a.version).choose_records(feats) for a in arms]
            )  # (q, n)
            for i, (u, f) in enumerate(zip(units, feats, strict=True)):
                a = uniform_arm(salt, f"tune:{epoch}", u, len(arms))
                t = int(choices[a, i])
                prop = float(np.mean(choices[:, i] == t))  # P(T = t | x) over random arms
                rows.append({**base, "unit": u, "treatment": t, "propensity": prop,
                             "policy_version": arms[a].version, "arm": arms[a].arm,
                             "holdout": False, "features": f})
        else:
            rows = self._launched(view, units, feats, base)
        unique: dict[str, dict[str, Any]] = {}
        for r in rows:
            unique.setdefault(r["unit"], r)
        return list(unique.values())

    def _launched(
        self, view: ExperimentView, units: list[str], feats: list[dict[str, Any]],
        base: dict[str, Any],
    ) -> list[dict[str, Any]]:
        exp, state = view.experiment, view.experiment.state
        K, salt, eps = len(view.arms), exp.salt, state.explore
        assert state.launched_version is not None
        version = int(state.launched_version)
        hold = [bucket(salt, "holdout", u) < state.holdout for u in units]
        served = [i for i, h in enumerate(hold) if not h]
        chosen = (
            self.registry.chooser(exp.name, version).choose_records([feats[i] for i in served])
            if served else np.zeros(0, dtype=np.int64)
        )
        pick = dict(zip(served, chosen.tolist(), strict=True))
        rows = []
        for i, (u, f) in enumerate(zip(units, feats, strict=True)):
            if hold[i]:
                t = uniform_arm(salt, "holdout-arm", u, K)
                rows.append({**base, "unit": u, "treatment": t, "propensity": 1.0 / K,
                             "policy_version": 1, "arm": "holdout", "holdout": True,
                             "features": f})
                continue
            best = int(pick[i])
            arm = "policy"
            t = best
            if eps > 0 and bucket(salt, f"explore:{base['epoch']}", u) < eps:
                t = uniform_arm(salt, f"explore-arm:{base['epoch']}", u, K)
                arm = "explore"
            prop = (1.0 - eps) * (t == best) + eps / K
            rows.append({**base, "unit": u, "treatment": t, "propensity": float(prop),
                         "policy_version": version, "arm": arm, "holdout": False,
                         "features": f})
        return rows

    def _answer(
        self, view: ExperimentView, units: list[str], stored: dict[str, dict[str, Any]]
    ) -> list[Decision]:
        out = []
        for u in units:
            s = stored[u]
            t = int(s["treatment"])
            out.append(Decision(
                treatment=view.arms[t], policy_version=int(s["policy_version"]),
                propensity=float(s["propensity"]), holdout=bool(s["holdout"]), unit=u,
                treatment_index=t, arm=s["arm"], phase=str(s["phase"]),
            ))
        return out

    # ------------------------------------------------------------ entry points
    def decide(self, name: str, requests: list[dict[str, Any]]) -> list[Decision]:
        """Blocking form (jobs, tests, the sync client path)."""
        for _ in range(_RETRIES):
            view = self.view(name)
            units, feats = self.parse(view, requests)
            rows = self.assign(view, units, feats)
            fut = self.committer.submit(rows, name, view.version)
            try:
                return self._answer(view, units, fut.result())
            except StaleStateError:
                self.invalidate(name)
            except StoreUnavailableError as exc:
                raise UnavailableError(str(exc)) from exc
        raise ConflictError(f"experiment {name!r} changed {_RETRIES} times during the request; "
                            "retry it.")

    async def decide_async(self, name: str, requests: list[dict[str, Any]]) -> list[Decision]:
        """The HTTP path: no thread hop; waits for the group commit on the event loop."""
        for _ in range(_RETRIES):
            view = self.view(name)
            units, feats = self.parse(view, requests)
            rows = self.assign(view, units, feats)
            fut = self.committer.submit(rows, name, view.version)
            try:
                stored = await asyncio.wrap_future(fut)
            except StaleStateError:
                self.invalidate(name)
                continue
            except StoreUnavailableError as exc:
                raise UnavailableError(str(exc)) from exc
            return self._answer(view, units, stored)
        raise ConflictError(f"experiment {name!r} changed {_RETRIES} times during the request; "
                            "retry it.")
