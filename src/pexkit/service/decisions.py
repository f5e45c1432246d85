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
from collections.abc import Sequence
from concurrent.futures import Future
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
from pexkit.store.db import EventStore, StaleStateError, StoreUnavailableError

__all__ = ["Decider", "ExperimentView", "Plan"]

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


@dataclass
class Plan:
    """One request's decisions, to be completed with its policies' choices in the commit thread."""

    view: ExperimentView
    units: list[str]
    feats: list[dict[str, Any]]

    def _hold(self) -> list[bool]:
        exp = self.view.experiment
        return [bucket(exp.salt, "holdout", u) < exp.state.holdout for u in self.units]

    def versions(self) -> list[int]:
        """The policy versions whose choices the rows need."""
        state = self.view.experiment.state
        if state.phase == "tune":
            return [a.version for a in state.arms]
        if state.phase == "launched":
            assert state.launched_version is not None
            return [int(state.launched_version)]
        return []

    def policy_feats(self) -> list[dict[str, Any]]:
        """The feature records the policies are evaluated on (launched: served units only)."""
        if self.view.experiment.state.phase != "launched":
            return self.feats
        cached: list[dict[str, Any]] | None = self.__dict__.get("_served")
        if cached is None:
            cached = [f for f, h in zip(self.feats, self._hold(), strict=True) if not h]
            self.__dict__["_served"] = cached
        return cached

    def rows(self, choices: dict[int, np.ndarray]) -> list[dict[str, Any]]:
        exp, state, view = self.view.experiment, self.view.experiment.state, self.view
        K, salt, epoch = len(view.arms), exp.salt, state.epoch
        base = {"experiment": exp.name, "epoch": epoch, "phase": state.phase}
        rows: list[dict[str, Any]] = []
        if state.phase == "randomize":
            for u, f in zip(self.units, self.feats, strict=True):
                t = uniform_arm(salt, "randomize", u, K)
                rows.append({**base, "unit": u, "treatment": t, "propensity": 1.0 / K,
                             "policy_version": 1, "arm": None, "holdout": False, "features": f})
            return rows
        if state.phase == "tune":
            arms = state.arms
            picks = np.stack([choices[a.version] for a in arms])  # (q, n)
            for i, (u, f) in enumerate(zip(self.units, self.feats, strict=True)):
                a = uniform_arm(salt, f"tune:{epoch}", u, len(arms))
                t = int(picks[a, i])
                prop = float(np.mean(picks[:, i] == t))  # P(T = t | x) over random arms
                rows.append({**base, "unit": u, "treatment": t, "propensity": prop,
                             "policy_version": arms[a].version, "arm": arms[a].arm,
                             "holdout": False, "features": f})
            return rows
        version = int(state.launched_version)  # type: ignore[arg-type]
        served = iter(choices[version].tolist())
        eps = state.explore
        for u, f, hold in zip(self.units, self.feats, self._hold(), strict=True):
            if hold:
                t = uniform_arm(salt, "holdout-arm", u, K)
                rows.append({**base, "unit": u, "treatment": t, "propensity": 1.0 / K,
                             "policy_version": 1, "arm": "holdout", "holdout": True,
                             "features": f})
                continue
            best = int(next(served))
            arm, t = "policy", best
            if eps > 0 and bucket(salt, f"explore:{epoch}", u) < eps:
                t = uniform_arm(salt, f"explore-arm:{epoch}", u, K)
                arm = "explore"
            prop = (1.0 - eps) * (t == best) + eps / K
            rows.append({**base, "unit": u, "treatment": t, "propensity": float(prop),
                         "policy_version": version, "arm": arm, "holdout": False,
                         "features": f})
        return rows


class Decider:
    """Decisions for batches of units, sticky within an epoch, durable before the answer."""

    def __init__(self, load: Any, registry: Registry, store: EventStore) -> None:
        self._load = load  # name -> Experiment (raises NotFoundError)
        self.registry = registry
        self.committer = GroupCommitter(store, prepare=self._prepare)  # type: ignore[arg-type]
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
    def plan(self, view: ExperimentView, units: list[str], feats: list[dict[str, Any]]) -> Plan:
        """What to store for these units under the view's state (first occurrence wins)."""
        exp, state = view.experiment, view.experiment.state
        if state.phase not in ("randomize", "tune", "launched"):
            raise ConflictError(
                f"experiment {exp.name!r} is in phase {state.phase!r}; decide needs randomize, "
                f"tune or launched. Restart it with POST /v1/experiments/{exp.name}/phase."
            )
        first: dict[str, int] = {}
        for i, u in enumerate(units):
            first.setdefault(u, i)
        keep = sorted(first.values())
        return Plan(view, [units[i] for i in keep], [feats[i] for i in keep])

    def _prepare(self, plans: Sequence[Plan]) -> list[list[dict[str, Any]] | BaseException]:
        """Rows of every waiting request: each policy version evaluated once for all of them.

        Runs in the commit thread (the numba kernels release the GIL), so the
        event loop keeps parsing requests meanwhile, and a policy's trees are
        walked for a block of units at a time instead of one unit per call.
        """
        work: dict[tuple[str, int], list[int]] = {}
        for i, p in enumerate(plans):
            for v in p.versions():
                work.setdefault((p.view.name, v), []).append(i)
        choices: list[dict[int, np.ndarray]] = [{} for _ in plans]
        failed: dict[int, BaseException] = {}
        for (name, version), idx in work.items():
            try:
                chooser = self.registry.chooser(name, version)
                records = [r for i in idx for r in plans[i].policy_feats()]
                out = chooser.choose_records(records) if records else np.zeros(0, np.int64)
            except Exception as exc:  # noqa: BLE001 - handed to the requests that need it
                for i in idx:
                    failed[i] = exc
                continue
            start = 0
            for i in idx:
                n = len(plans[i].policy_feats())
                choices[i][version] = out[start:start + n]
                start += n
        return [failed[i] if i in failed else p.rows(choices[i]) for i, p in enumerate(plans)]

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
    def _submit(
        self, name: str, requests: list[dict[str, Any]]
    ) -> tuple[ExperimentView, list[str], Future[dict[str, dict[str, Any]]]]:
        view = self.view(name)
        units, feats = self.parse(view, requests)
        plan = self.plan(view, units, feats)
        return view, units, self.committer.submit(plan, name, view.version, len(plan.units))

    def _changed_too_often(self, name: str) -> ConflictError:
        return ConflictError(f"experiment {name!r} changed {_RETRIES} times during the "
                             "request; retry it.")

    def decide(self, name: str, requests: list[dict[str, Any]]) -> list[Decision]:
        """Blocking form (jobs, tests, the sync client path)."""
        for _ in range(_RETRIES):
            view, units, fut = self._submit(name, requests)
            try:
                return self._answer(view, units, fut.result())
            except StaleStateError:
                self.invalidate(name)
            except StoreUnavailableError as exc:
                raise UnavailableError(str(exc)) from exc
        raise self._changed_too_often(name)

    async def decide_async(self, name: str, requests: list[dict[str, Any]]) -> list[Decision]:
        """The HTTP path: no thread hop; waits for the group commit on the event loop."""
        for _ in range(_RETRIES):
            view, units, fut = self._submit(name, requests)
            try:
                stored = await asyncio.wrap_future(fut)
            except StaleStateError:
                self.invalidate(name)
                continue
            except StoreUnavailableError as exc:
                raise UnavailableError(str(exc)) from exc
            return self._answer(view, units, stored)
        raise self._changed_too_often(name)
