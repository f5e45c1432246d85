"""Online multi-objective tuning of policy parameters with Ax (``ax.Client``).

Each arm of the tune phase is one Ax trial. Ax searches the same bounded
space as the offline optimizer (:class:`~pexkit.optimize.space.PolicySpace`,
``parameterization="weights"``): a point of ``[0, 1]^d`` holds the M-1 angles
of the weight direction and one coordinate per (non-control arm, outcome) bias,
mapped to ``[-bias_bound, bias_bound]``. Every point of that box is a policy
whose numbers mean something on the fitted model's scale, so Ax cannot propose
the "send everyone to one arm" biases of ``1e8`` that a box fitted around raw
parameter vectors (single-treatment baselines included) allowed.

The offline front's candidates are attached as the first trials (mapped back
into the box by :meth:`TuningSpace.to_unit`); each round completes the running
trials with the arms' online means and standard errors (long-term outcomes
included) and asks Ax for the next arms. The tuner's state, Ax's included, is
plain JSON (:meth:`OnlineTuner.dump`), kept in the event store, so tuning
survives restarts and any worker can run the next round.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError
from pexkit.optimize.space import PolicySpace
from pexkit.policy.linear import LinearPolicy
from pexkit.spec.spec import ExperimentSpec

__all__ = ["OnlineTuner", "TuningSpace"]

FloatArray = NDArray[np.float64]
_FORMAT = "pexkit.tuning/2"


def _floats(values: Any, shape: tuple[int, ...], what: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            f"tuning space: {what!r} must be finite numbers of shape {shape}; got shape "
            f"{arr.shape}."
        )
    return arr


@dataclass(frozen=True)
class TuningSpace:
    r"""The box Ax searches: the offline search's policy space, as JSON.

    Parameters
    ----------
    spec : ExperimentSpec
        Gives the arms (control first) and the outcomes with their goals.
    effect_scale : ndarray of shape (n_outcomes,)
        Root mean square of the estimated effects per outcome (> 0); the
        weights act on effects divided by it.
    bias_bound : ndarray of shape (n_treatments - 1, n_outcomes)
        Half-width of each bias's range, in the outcome's units (> 0).

    Notes
    -----
    A point ``u`` of ``[0, 1]^d``, ``d = (M-1) + (K-1) M``, is the policy

    - weights: the unit vector of the positive orthant with spherical angles
      ``theta_j = u_j pi / 2`` (``j < M-1``), divided by ``effect_scale``:
      ``w_m >= 0``, any of them may be 0 (the first outcome is not forced to
      1 as in ``LinearPolicy.to_vector``);
    - biases: ``b_{k,m} = (2 u - 1) bias_bound_{k,m}``, so each bias lies in
      ``[-bias_bound_{k,m}, +bias_bound_{k,m}]``.

    The bounds come from the fitted model's out-of-fold effects
    ``tau_{k,m}(x_i)`` exactly as in the offline search
    (:meth:`PolicySpace.from_effects`): ``bias_bound_{k,m} = |ATE_{k,m}| +
    2 sd_i(tau_{k,m})``, enough to turn a treatment on or off for almost every
    unit, and no more. So the front's policies lie inside the box, and Ax's
    proposals are policies of the kind the offline search compared.

    Ax sees the coordinates as parameters ``p0 .. p{d-1}``, each with bounds
    ``[0, 1]``.
    """

    spec: ExperimentSpec
    effect_scale: FloatArray
    bias_bound: FloatArray

    def __post_init__(self) -> None:
        K, M = self.spec.n_treatments, self.spec.n_outcomes
        scale = _floats(self.effect_scale, (M,), "effect_scale")
        bound = _floats(self.bias_bound, (K - 1, M), "bias_bound")
        if np.any(scale <= 0) or np.any(bound <= 0):
            raise InvalidParameterError(
                "tuning space: 'effect_scale' and 'bias_bound' must be > 0."
            )
        object.__setattr__(self, "effect_scale", scale)
        object.__setattr__(self, "bias_bound", bound)

    # ---------------------------------------------------------- builders
    @classmethod
    def from_effects(cls, spec: ExperimentSpec, tau: Any) -> TuningSpace:
        """The offline search's space for estimated effects ``tau`` (n, K, M)."""
        ps = PolicySpace.from_effects(spec, np.asarray(tau, dtype=np.float64))
        return cls(spec, ps.effect_scale, ps.bias_bound)

    @classmethod
    def from_model(cls, model: Any) -> TuningSpace:
        """The space ``optimize_policies(model)`` searched (the model's out-of-fold effects).

        Parameters
        ----------
        model : EffectModel
            Fitted.
        """
        model._check_fitted()
        return cls.from_effects(model.spec_, np.asarray(model.effects_))

    @property
    def policy_space(self) -> PolicySpace:
        """The equivalent offline :class:`PolicySpace` (weights, with biases)."""
        K, M = self.spec.n_treatments, self.spec.n_outcomes
        return PolicySpace(self.spec, self.effect_scale, self.bias_bound, np.zeros((K, M)))

    # ----------------------------------------------------------- geometry
    @property
    def dim(self) -> int:
        """Number of coordinates, ``(M-1) + (K-1) M``."""
        return self.policy_space.dim

    @property
    def parameter_names(self) -> list[str]:
        """Ax's parameter names: ``p0 .. p{d-1}`` (never derived from user names)."""
        return [f"p{i}" for i in range(self.dim)]

    def describe(self) -> list[dict[str, Any]]:
        """What each coordinate means: ``{parameter, kind, arm, outcome, low, high}``.

        ``low``/``high`` are the bias range in the outcome's units (``None``
        for weight angles, whose range is 0 to 90 degrees).
        """
        M = self.spec.n_outcomes
        rows: list[dict[str, Any]] = []
        names = self.parameter_names
        for j in range(M - 1):
            rows.append({"parameter": names[j], "kind": "weight angle", "arm": None,
                         "outcome": self.spec.outcome_names[j + 1], "low": None, "high": None})
        i = M - 1
        for k, arm in enumerate(self.spec.arms[1:]):
            for m, out in enumerate(self.spec.outcome_names):
                b = float(self.bias_bound[k, m])
                rows.append({"parameter": names[i], "kind": "bias", "arm": arm,
                             "outcome": out, "low": -b, "high": b})
                i += 1
        return rows

    def policies(self, points: Any) -> list[LinearPolicy]:
        """Policies for points of shape (P, dim) in ``[0, 1]`` (clipped to it)."""
        return self.policy_space.policies(np.atleast_2d(np.asarray(points, dtype=np.float64)))

    def policy(self, point: Any) -> LinearPolicy:
        """The policy of one point of shape (dim,)."""
        return self.policies(np.asarray(point, dtype=np.float64)[None, :])[0]

    def to_unit(self, policy: LinearPolicy, clip: bool = True) -> FloatArray:
        """The point of the box whose policy is ``policy`` (the inverse of :meth:`policy`).

        Parameters
        ----------
        policy : LinearPolicy
            Over this space's spec; its weights must not all be 0.
        clip : bool
            Clip to ``[0, 1]`` (default). A policy of the offline front maps
            exactly inside; one whose bias exceeds ``bias_bound`` (such as the
            single-treatment baselines, whose bias is ``1e9``) is clipped to
            the bound, which keeps the sign of the bias but turns the treatment
            on (or off) for most rather than all units: the attached trial is
            the nearest policy of the box, not the policy itself. With
            ``clip=False`` the unclipped coordinates come back (to check
            whether a policy lies inside: ``0 <= u <= 1``).

        Returns
        -------
        ndarray of shape (dim,)
        """
        return self.policy_space.to_unit(policy, clip)

    def contains(self, policy: LinearPolicy, tol: float = 1e-9) -> bool:
        """Whether ``policy`` lies in the box (so :meth:`to_unit` does not clip it)."""
        u = self.to_unit(policy, clip=False)
        return bool(np.all(u >= -tol) and np.all(u <= 1 + tol))

    # -------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"spec", "effect_scale", "bias_bound"}``."""
        return {
            "spec": self.spec.to_dict(),
            "effect_scale": [float(v) for v in self.effect_scale],
            "bias_bound": [[float(v) for v in row] for row in self.bias_bound],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TuningSpace:
        """Rebuild from :meth:`to_dict`."""
        missing = [k for k in ("spec", "effect_scale", "bias_bound") if k not in raw]
        if missing:
            raise InvalidParameterError(
                f"tuning space: missing {missing}; expected TuningSpace.to_dict() output."
            )
        return cls(
            ExperimentSpec.from_dict(raw["spec"]),
            np.asarray(raw["effect_scale"], dtype=np.float64),
            np.asarray(raw["bias_bound"], dtype=np.float64),
        )


@contextmanager
def _quiet_ax() -> Iterator[None]:
    """Silence Ax's notices about its own internals and defaults (not ours to act on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # the online reference point is unknown before the first round; Ax then
        # winsorizes each objective on its own, which is what we want
        warnings.filterwarnings("ignore", message=".*without objective thresholds")
        yield


def _ax_client_class() -> Any:
    """``ax.Client``."""
    with _quiet_ax():
        from ax import Client
    return Client


def _objective_string(goals: Sequence[str]) -> str:
    return ", ".join(("-" if g == "minimize" else "") + f"m{i}" for i, g in enumerate(goals))


class OnlineTuner:
    """An ``ax.Client`` over a :class:`TuningSpace`.

    Build it with :meth:`create` (or :meth:`load`). Ax's parameters are
    ``p0 .. p{d-1}`` (the space's coordinates, in ``[0, 1]``) and its metrics
    ``m0, m1, ...`` (the objectives, in order), so outcome names with quotes,
    semicolons, brackets, backslashes, spaces or dashes never reach Ax's
    objective parser.

    Attributes
    ----------
    client : ax.Client
    spec : ExperimentSpec
    space : TuningSpace
    objectives : list of (str, str)
        ``(name, goal)`` pairs in Ax metric order (``m0, m1, ...``).
    """

    def __init__(
        self, client: Any, spec: ExperimentSpec, space: TuningSpace,
        objectives: Sequence[tuple[str, str]],
    ) -> None:
        self.client = client
        self.spec = spec
        self.space = space
        self.objectives = [(str(n), str(g)) for n, g in objectives]

    @property
    def metric_names(self) -> dict[str, str]:
        """``{objective name: Ax metric name}``."""
        return {n: f"m{i}" for i, (n, _) in enumerate(self.objectives)}

    @classmethod
    def create(
        cls, spec: ExperimentSpec, space: TuningSpace | Mapping[str, Any],
        objectives: Mapping[str, str], seed: int = 0,
    ) -> OnlineTuner:
        """A fresh tuner.

        Parameters
        ----------
        spec : ExperimentSpec
            The experiment's spec; its arms and outcomes must match the space's.
        space : TuningSpace or mapping
            The space, or its :meth:`TuningSpace.to_dict` (as stored).
        objectives : mapping
            ``{metric name: "maximize" | "minimize"}``: outcomes of the spec
            or tracking metrics; any string is a valid name.
        seed : int
            Ax's random seed.
        """
        Client = _ax_client_class()
        from ax.api.configs import RangeParameterConfig

        if isinstance(space, Mapping):
            space = TuningSpace.from_dict(space)
        if not isinstance(space, TuningSpace):
            raise InvalidParameterError(
                "OnlineTuner.create needs a TuningSpace (or its to_dict()); flat-vector "
                f"bounds are no longer supported; got {type(space).__name__}. Build it at "
                "optimize time with TuningSpace.from_model(model)."
            )
        if tuple(spec.arms) != tuple(space.spec.arms) or tuple(spec.outcome_names) != tuple(
            space.spec.outcome_names
        ):
            raise InvalidParameterError(
                "the spec's arms/outcomes differ from the tuning space's: "
                f"{spec.arms}/{spec.outcome_names} vs {space.spec.arms}/"
                f"{space.spec.outcome_names}. Re-run the optimize job."
            )
        pairs = [(str(n), str(g)) for n, g in objectives.items()]
        if not pairs:
            raise InvalidParameterError("'objectives' must name at least one metric.")
        bad = [n for n, g in pairs if g not in ("maximize", "minimize")]
        if bad:
            raise InvalidParameterError(
                f"objectives {bad}: each goal must be 'maximize' or 'minimize'."
            )
        with _quiet_ax():
            client = Client(random_seed=seed)
            client.configure_experiment(
                name="pexkit_online_tuning",
                parameters=[
                    RangeParameterConfig(name=n, bounds=(0.0, 1.0), parameter_type="float")
                    for n in space.parameter_names
                ],
            )
            client.configure_optimization(objective=_objective_string([g for _, g in pairs]))
            # qLogNParEGO: the same acquisition as the offline search; Ax's default for
            # <= 4 objectives (qLogNEHVI) took ~50 s per round here with 4 objectives.
            from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
            from ax.api.utils.structs import GenerationStrategyDispatchStruct
            from botorch.acquisition.multi_objective.parego import qLogNParEGO

            client.set_generation_strategy(
                choose_generation_strategy(
                    GenerationStrategyDispatchStruct(
                        method="fast", initialization_budget=0,
                        use_existing_trials_for_initialization=True,
                        min_observed_initialization_trials=1,
                        allow_exceeding_initialization_budget=True,
                    ),
                    botorch_acqf_class=qLogNParEGO if len(pairs) > 1 else None,
                )
            )
        return cls(client, spec, space, pairs)

    def attach(self, policy: LinearPolicy) -> int:
        """Attach a running arm (an offline candidate) as a trial; return its index.

        A policy outside the box is clipped into it (see :meth:`TuningSpace.to_unit`).
        """
        u = self.space.to_unit(policy)
        params = {n: float(v) for n, v in zip(self.space.parameter_names, u, strict=True)}
        with _quiet_ax():
            return int(self.client.attach_trial(parameters=params))

    def complete(
        self, trial: int, metrics: Mapping[str, Any], objectives: Sequence[str] | None = None,
    ) -> None:
        """Complete a trial with the arm's online metrics.

        Parameters
        ----------
        trial : int
        metrics : mapping
            ``{name: {"mean": float, "sem": float or None}}`` (other keys and
            metrics are ignored); every objective must be there.
        objectives : sequence of str, optional
            The objectives' names; when given, they must be the tuner's.
        """
        names = self.metric_names
        if objectives is not None and set(objectives) != set(names):
            raise InvalidParameterError(
                f"objectives {list(objectives)} differ from the tuner's {list(names)}."
            )
        raw: dict[str, Any] = {}
        for name, safe in names.items():
            if name not in metrics:
                raise InvalidParameterError(
                    f"trial {trial}: no online value of objective {name!r}."
                )
            m = metrics[name]
            mean = float(m["mean"])
            sem = m.get("sem")
            if not math.isfinite(mean):
                raise InvalidParameterError(
                    f"trial {trial}: objective {name!r} has no finite mean ({mean})."
                )
            if sem is None or not math.isfinite(float(sem)):
                raw[safe] = mean  # noise unknown: Ax infers it
            else:
                raw[safe] = (mean, float(sem))
        with _quiet_ax():
            self.client.complete_trial(trial_index=int(trial), raw_data=raw)

    def abandon(self, trial: int) -> None:
        """Drop a proposed trial that will not run (say, one that is not personalized).

        Ax keeps it out of the model and will not propose it again as pending.
        """
        with _quiet_ax():
            self.client.mark_trial_abandoned(trial_index=int(trial))

    def next(self, q: int) -> list[tuple[int, LinearPolicy]]:
        """Ask Ax for ``q`` new arms: ``[(trial index, policy), ...]``."""
        names = self.space.parameter_names
        with _quiet_ax():
            trials = self.client.get_next_trials(max_trials=int(q))
        return [
            (int(idx), self.space.policy([float(p[n]) for n in names]))
            for idx, p in trials.items()
        ]

    def recommendation(self) -> list[dict[str, Any]]:
        """Ax's recommended arms among the completed trials, with its model's predictions.

        One objective: Ax's best parameterization; several: its in-sample Pareto
        frontier. Each entry: ``{"trial", "predicted": {objective: {"mean", "sem"}}}``
        (``sem`` None when Ax gives none). Empty until a trial is completed.
        """
        names = {safe: n for n, safe in self.metric_names.items()}
        try:
            with _quiet_ax():
                if len(self.objectives) == 1:
                    found = [self.client.get_best_parameterization(use_model_predictions=True)]
                else:
                    found = self.client.get_pareto_frontier(use_model_predictions=True)
        except Exception:  # noqa: BLE001 - Ax raises several types while it lacks data
            return []
        out = []
        for _params, prediction, trial, _arm in found:
            predicted: dict[str, dict[str, float | None]] = {}
            for safe, value in (prediction or {}).items():
                if safe not in names:
                    continue
                mean, sem = value if isinstance(value, tuple) else (value, None)
                predicted[names[safe]] = {
                    "mean": float(mean),
                    "sem": None if sem is None or not math.isfinite(float(sem)) else float(sem),
                }
            out.append({"trial": int(trial), "predicted": predicted})
        return out

    def dump(self) -> dict[str, Any]:
        """The tuner as plain JSON (to store; :meth:`load` reads it back)."""
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            with _quiet_ax():
                self.client.save_to_json_file(path)
            with open(path, encoding="utf-8") as fh:
                blob = fh.read()
        finally:
            os.unlink(path)
        return {
            "format": _FORMAT,
            "client": blob,
            "spec": self.spec.to_dict(),
            "space": self.space.to_dict(),
            "objectives": [[n, g] for n, g in self.objectives],  # a list: order is meaning
        }

    @classmethod
    def load(cls, dumped: Mapping[str, Any]) -> OnlineTuner:
        """Rebuild a tuner from :meth:`dump`."""
        Client = _ax_client_class()
        if dumped.get("format") != _FORMAT or "space" not in dumped:
            raise InvalidParameterError(
                "this tuning state predates the bounded tuning space (or is not a "
                "pexkit tuner); start the tune phase again."
            )
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumped["client"])
        try:
            with _quiet_ax():
                client = Client.load_from_json_file(path)
        finally:
            os.unlink(path)
        return cls(
            client, ExperimentSpec.from_dict(dumped["spec"]),
            TuningSpace.from_dict(dumped["space"]),
            [(str(n), str(g)) for n, g in dumped["objectives"]],
        )
