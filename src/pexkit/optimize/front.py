"""ParetoFront: the non-dominated policies found by an optimizer, and policies.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit._stats import Z95
from pexkit.exceptions import InvalidDataError, InvalidParameterError
from pexkit.optimize.pareto import hypervolume, is_non_dominated
from pexkit.optimize.selection import select_subset
from pexkit.policy import LinearPolicy
from pexkit.spec import ExperimentSpec, Outcome

__all__ = ["ParetoFront", "load_policies", "single_treatment_policy"]

FloatArray = NDArray[np.float64]
FORCE = 1e9


def single_treatment_policy(spec: ExperimentSpec, k: int) -> LinearPolicy:
    """The policy that sends every unit to arm ``k`` (as a LinearPolicy)."""
    first = spec.outcomes[0]
    biases = {}
    if k > 0:
        biases = {spec.arms[k]: {first.name: FORCE * first.sign}}
    return LinearPolicy(spec, {first.name: 1.0}, biases)


@dataclass
class ParetoFront:
    """Policies on (or compared with) the Pareto front, with DR lifts vs all-control.

    Attributes
    ----------
    spec : ExperimentSpec
    policies : list of LinearPolicy
        Front order: sorted by the first outcome's objective.
    lifts, lift_se : ndarray of shape (P, n_outcomes)
        DR lift vs all-control and its standard error, in each outcome's units.
    shares : ndarray of shape (P, n_treatments)
        Share of units each policy sends to each treatment.
    reference_point : ndarray of shape (n_outcomes,)
        Lifts of the hypervolume's reference (``optimize_policies`` default: per
        outcome, the worst single-treatment policy, all-control included).
    candidate : ndarray of bool, shape (P,)
        Chosen for the online test.
    on_front : ndarray of bool, shape (P,)
        False for baselines shown for comparison (single-treatment policies).
    labels : list of str
    meta : dict
        Method, evaluations, history (hypervolume vs evaluations).
    """

    spec: ExperimentSpec
    policies: list[LinearPolicy]
    lifts: FloatArray
    lift_se: FloatArray
    shares: FloatArray
    reference_point: FloatArray
    candidate: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    on_front: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    labels: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        P = len(self.policies)
        if len(self.candidate) != P:
            self.candidate = np.zeros(P, dtype=bool)
        if len(self.on_front) != P:
            self.on_front = np.ones(P, dtype=bool)
        if len(self.labels) != P:
            self.labels = [f"policy {i + 1}" for i in range(P)]

    def __len__(self) -> int:
        return len(self.policies)

    @property
    def signs(self) -> FloatArray:
        """Goal sign per outcome."""
        return np.asarray(self.spec.signs)

    @property
    def objectives(self) -> FloatArray:
        """``s_m * lift_m``: every column to be maximized."""
        return self.lifts * self.signs[None, :]

    @property
    def lift_ci(self) -> FloatArray:
        """95% CIs of the lifts, shape (P, n_outcomes, 2)."""
        return np.stack([self.lifts - Z95 * self.lift_se, self.lifts + Z95 * self.lift_se], axis=-1)

    def hypervolume(self, reference_point: FloatArray | None = None) -> float:
        """Hypervolume of the front's policies (objectives ``s_m lift_m``).

        Parameters
        ----------
        reference_point : ndarray of shape (n_outcomes,), optional
            In lift units; default the front's reference.
        """
        ref = self.reference_point if reference_point is None else np.asarray(reference_point)
        mask = np.asarray(self.on_front, dtype=bool)
        if not mask.any():
            return 0.0
        return hypervolume(self.objectives[mask], ref * self.signs)

    def near_copies(self, i: int, j: int, distinct: float = 1.0) -> bool:
        """Whether policies ``i`` and ``j`` differ by less than ``distinct`` standard errors
        (``sqrt(se_i^2 + se_j^2)``) in every outcome's lift: an online test could not
        tell them apart, so they are near-copies."""
        gap = np.abs(self.lifts[i] - self.lifts[j])
        noise = np.sqrt(self.lift_se[i] ** 2 + self.lift_se[j] ** 2)
        return bool(np.all(gap < distinct * noise))

    def select(
        self, q: int = 4, include_single: bool = False, distinct: float = 1.0
    ) -> ParetoFront:
        """A smaller front: the q policies whose subset has the largest hypervolume.

        Parameters
        ----------
        q : int
            Number of candidates.
        include_single : bool
            Force in the single-treatment baselines that are not dominated by
            another single treatment (so an online test can compare with them).
        distinct : float
            No two picks are near-copies (:meth:`near_copies`: within this many
            standard errors in every outcome); when the front holds fewer than
            ``q`` distinct policies, fewer are returned and ``meta["distinct"]``
            says so. 0 turns the check off.
        """
        pool = [int(i) for i in np.flatnonzero(self.on_front)]
        include: list[int] = []
        if include_single:
            singles = [i for i, lab in enumerate(self.labels) if lab.startswith("all ")]
            singles = [i for i in singles if not np.all(self.shares[i, 0] == 1.0)]
            if singles:
                obj = self.objectives[singles]
                best = [int(singles[j]) for j in np.flatnonzero(is_non_dominated(obj))]
                include = best[:q]
                pool = list(dict.fromkeys(pool + include))
        if not pool:
            raise InvalidParameterError("the front is empty; nothing to select from.")
        ref = self.reference_point * self.signs
        kept = list(include)
        while True:  # the best subset; drop a pick that copies an earlier one, and again
            k = min(q, len(pool))
            picked = select_subset(self.objectives[pool], ref, k,
                                   include=[pool.index(i) for i in kept])
            idx: list[int] = []
            copy = None
            for i in (pool[j] for j in picked):
                if distinct > 0 and any(self.near_copies(i, j, distinct) for j in idx):
                    copy = i
                    break
                idx.append(i)
            if copy is None:
                break
            kept = idx
            pool = [i for i in pool if i in kept
                    or not any(self.near_copies(i, j, distinct) for j in kept)]
            if len(pool) <= len(kept):
                break
        sub = self.subset(idx)
        sub.candidate = np.ones(len(idx), dtype=bool)
        if len(idx) < q and distinct > 0:
            sub.meta["distinct"] = (
                f"{len(idx)} distinct policies on the front (asked for {q}): every other "
                f"front policy is within {distinct:g} standard error(s) of one of them in "
                "every outcome, so an online test could not tell them apart"
            )
        return sub

    def subset(self, idx: list[int]) -> ParetoFront:
        """The policies at positions ``idx``."""
        meta = dict(self.meta)
        vs = meta.get("vs_best_single")
        if vs:  # per-policy arrays follow the policies
            meta["vs_best_single"] = {**vs, "lift": np.asarray(vs["lift"])[idx],
                                      "lift_se": np.asarray(vs["lift_se"])[idx]}
        return replace(
            self,
            policies=[self.policies[i] for i in idx],
            lifts=self.lifts[idx],
            lift_se=self.lift_se[idx],
            shares=self.shares[idx],
            candidate=self.candidate[idx],
            on_front=self.on_front[idx],
            labels=[self.labels[i] for i in idx],
            meta=meta,
        )

    def mark_candidates(self, chosen: ParetoFront) -> None:
        """Flag the policies of ``chosen`` (a :meth:`select` result) as candidates."""
        names = set(chosen.labels)
        self.candidate = np.array([lab in names for lab in self.labels])

    def to_frame(self) -> pd.DataFrame:
        """One row per policy: label, lifts, CIs, shares, flags."""
        ci = self.lift_ci
        rows = []
        for p, _policy in enumerate(self.policies):
            row: dict[str, Any] = {"policy": self.labels[p]}
            for m, o in enumerate(self.spec.outcome_names):
                row[f"lift[{o}]"] = self.lifts[p, m]
                row[f"ci_low[{o}]"] = ci[p, m, 0]
                row[f"ci_high[{o}]"] = ci[p, m, 1]
            for k, a in enumerate(self.spec.arms):
                row[f"share[{a}]"] = self.shares[p, k]
            row["on_front"] = bool(self.on_front[p])
            row["candidate"] = bool(self.candidate[p])
            rows.append(row)
        return pd.DataFrame(rows)

    # -------------------------------------------------------------- persist
    def to_dict(self) -> dict[str, Any]:
        """The policies.json document."""
        spec = self.spec
        ci = self.lift_ci
        return {
            "experiment": spec.name,
            "treatments": list(spec.arms),
            "outcomes": [{"name": o.name, "goal": o.goal} for o in spec.outcomes],
            "spec": spec.to_dict(),
            "reference_point": {o: float(v) for o, v in zip(spec.outcome_names, self.reference_point, strict=True)},
            "hypervolume": self.hypervolume(),
            "meta": _jsonable(self.meta),
            "policies": [
                {
                    "id": self.labels[p],
                    "weights": policy.weights,
                    "biases": policy.biases,
                    "lift": {o: float(self.lifts[p, m]) for m, o in enumerate(spec.outcome_names)},
                    "lift_se": {o: float(self.lift_se[p, m]) for m, o in enumerate(spec.outcome_names)},
                    "lift_ci": {
                        o: [float(ci[p, m, 0]), float(ci[p, m, 1])]
                        for m, o in enumerate(spec.outcome_names)
                    },
                    "share": {a: float(self.shares[p, k]) for k, a in enumerate(spec.arms)},
                    "on_front": bool(self.on_front[p]),
                    "candidate": bool(self.candidate[p]),
                    **self._vs_best(p),
                }
                for p, policy in enumerate(self.policies)
            ],
        }

    def _vs_best(self, p: int) -> dict[str, Any]:
        """Policy ``p``'s lift over the best single treatment, when ``analyze`` measured it."""
        vs = self.meta.get("vs_best_single")
        if not vs:
            return {}
        lift, se = np.asarray(vs["lift"])[p], np.asarray(vs["lift_se"])[p]
        names = self.spec.outcome_names
        return {"vs_best_single": {
            "arm": vs["arm"],
            "lift": {o: float(lift[m]) for m, o in enumerate(names)},
            "lift_ci": {o: [float(lift[m] - Z95 * se[m]), float(lift[m] + Z95 * se[m])]
                        for m, o in enumerate(names)},
        }}

    def save(self, path: str | Path) -> Path:
        """Write policies.json."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def policy(self, policy_id: str) -> LinearPolicy:
        """The policy with label ``policy_id``."""
        if policy_id not in self.labels:
            raise InvalidParameterError(
                f"no policy {policy_id!r}; the front has {self.labels}."
            )
        return self.policies[self.labels.index(policy_id)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_policies(path: str | Path, spec: ExperimentSpec | None = None) -> ParetoFront:
    """Read a policies.json written by :meth:`ParetoFront.save` (or ``pexkit analyze``).

    Parameters
    ----------
    path : str or Path
    spec : ExperimentSpec, optional
        Default: the spec stored in the file (or rebuilt from its treatments
        and outcomes).
    """
    path = Path(path)
    if not path.exists():
        raise InvalidDataError(f"policies file {str(path)!r} does not exist.")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidDataError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    return front_from_dict(doc, spec, source=repr(str(path)))


def front_from_dict(
    doc: dict[str, Any], spec: ExperimentSpec | None = None, *, source: str = "the document"
) -> ParetoFront:
    """Rebuild a front from :meth:`ParetoFront.to_dict` (the policies.json document).

    Parameters
    ----------
    doc : dict
    spec : ExperimentSpec, optional
        Default: the spec stored in ``doc`` (or rebuilt from its treatments and
        outcomes).
    source : str
        What ``doc`` came from, for error messages.

    Examples
    --------
    >>> import json
    >>> import pexkit as px
    >>> from pexkit.optimize import front_from_dict, optimize_policies
    >>> sim = px.simulate("notifications", n_units=1000, seed=0)
    >>> model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 5}).fit(sim.data)
    >>> front = optimize_policies(model, method="sobol", budget=20)
    >>> again = front_from_dict(json.loads(json.dumps(front.to_dict())))
    >>> again.labels == front.labels and bool((again.lifts == front.lifts).all())
    True
    """
    if not isinstance(doc, dict):
        raise InvalidDataError(
            f"{source}: expected a policies document (a JSON object); got {type(doc).__name__}."
        )
    for key in ("treatments", "outcomes", "policies"):
        if key not in doc:
            raise InvalidDataError(
                f"{source} lacks {key!r}; expected a policies.json written by pexkit."
            )
    if spec is None:
        if "spec" in doc:
            spec = ExperimentSpec.from_dict(doc["spec"])
        else:
            spec = ExperimentSpec(
                treatment="treatment", arms=doc["treatments"],
                outcomes=[Outcome(o["name"], o["goal"]) for o in doc["outcomes"]],
                numeric=["_unknown"],
            )
    names = spec.outcome_names
    items = doc["policies"]
    policies = [LinearPolicy(spec, it["weights"], it.get("biases", {})) for it in items]
    lifts = np.array([[it["lift"][o] for o in names] for it in items], dtype=np.float64).reshape(-1, len(names))
    if all("lift_se" in it for it in items):
        se = np.array([[it["lift_se"][o] for o in names] for it in items], dtype=np.float64)
    else:
        se = np.array(
            [[(it["lift_ci"][o][1] - it["lift_ci"][o][0]) / (2 * Z95) for o in names] for it in items],
            dtype=np.float64,
        )
    se = se.reshape(-1, len(names))
    shares = np.array([[it["share"][a] for a in spec.arms] for it in items], dtype=np.float64).reshape(-1, len(spec.arms))
    ref = np.array([doc.get("reference_point", {}).get(o, 0.0) for o in names], dtype=np.float64)
    return ParetoFront(
        spec, policies, lifts, se, shares, ref,
        candidate=np.array([bool(it.get("candidate", False)) for it in items], dtype=bool),
        on_front=np.array([bool(it.get("on_front", True)) for it in items], dtype=bool),
        labels=[str(it["id"]) for it in items],
        meta=doc.get("meta", {}),
    )
