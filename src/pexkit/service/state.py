"""The typed state of one experiment, stored as JSON under a compare-and-swap version.

Every change to an experiment (a phase change, a trained model, a new front, a
tuning round, a launch) is a pure function ``ExperimentState -> ExperimentState``
applied by :meth:`pexkit.service.core.DecisionService.mutate` to the latest
stored state and written only if nobody wrote in between (otherwise it is
re-applied to the newer state). Two jobs or two server processes therefore never
overwrite each other's changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pexkit.exceptions import PexkitError

__all__ = ["STATE_FORMAT", "Experiment", "ExperimentState", "Phase", "TuneArm"]

Phase = Literal["randomize", "tune", "launched", "stopped"]
PHASES: tuple[Phase, ...] = ("randomize", "tune", "launched", "stopped")
STATE_FORMAT = 1


@dataclass(frozen=True)
class TuneArm:
    """One arm of the current tuning round: a policy version and its Ax trial."""

    arm: str
    version: int
    trial: int | None = None


@dataclass(frozen=True)
class ExperimentState:
    """Everything about an experiment that changes after it is created.

    Examples
    --------
    >>> s = ExperimentState(holdout=0.03)
    >>> s.phase, s.epoch
    ('randomize', 1)
    >>> ExperimentState.from_dict(s.to_dict()) == s
    True
    """

    phase: Phase = "randomize"
    epoch: int = 1
    holdout: float = 0.03
    epochs: tuple[tuple[int, Phase], ...] = ((1, "randomize"),)
    launched_version: int | None = None
    launch_epoch: int | None = None
    explore: float = 0.0  # epsilon floor after launch (0: pure policy)
    arms: tuple[TuneArm, ...] = ()
    model_id: int | None = None
    ate: tuple[dict[str, Any], ...] = ()
    front_id: int | None = None
    candidates: tuple[int, ...] = ()
    tuning_space: dict[str, Any] | None = None
    tuner_id: int | None = None
    objectives: tuple[str, ...] = ()
    tune_round: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def advance(self, phase: Phase, **changes: Any) -> ExperimentState:
        """A new epoch in ``phase`` (assignments are sticky within an epoch)."""
        epoch = self.epoch + 1
        return replace(self, phase=phase, epoch=epoch,
                       epochs=(*self.epochs, (epoch, phase)), **changes)

    def phase_of(self, epoch: int) -> Phase | None:
        return dict(self.epochs).get(epoch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT, "phase": self.phase, "epoch": self.epoch,
            "holdout": self.holdout, "epochs": [[e, p] for e, p in self.epochs],
            "launched_version": self.launched_version, "launch_epoch": self.launch_epoch,
            "explore": self.explore,
            "arms": [{"arm": a.arm, "version": a.version, "trial": a.trial} for a in self.arms],
            "model_id": self.model_id, "ate": list(self.ate), "front_id": self.front_id,
            "candidates": list(self.candidates), "tuning_space": self.tuning_space,
            "tuner_id": self.tuner_id, "objectives": list(self.objectives),
            "tune_round": self.tune_round, "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentState:
        fmt = d.get("format")
        if fmt != STATE_FORMAT:
            raise PexkitError(
                f"experiment state: expected format {STATE_FORMAT}; found {fmt!r}. This store "
                "was written by another pexkit version; upgrade pexkit or recreate the experiment."
            )
        return cls(
            phase=d["phase"], epoch=int(d["epoch"]), holdout=float(d["holdout"]),
            epochs=tuple((int(e), p) for e, p in d["epochs"]),
            launched_version=d.get("launched_version"), launch_epoch=d.get("launch_epoch"),
            explore=float(d.get("explore", 0.0)),
            arms=tuple(TuneArm(a["arm"], int(a["version"]), a.get("trial")) for a in d["arms"]),
            model_id=d.get("model_id"), ate=tuple(d.get("ate") or ()),
            front_id=d.get("front_id"), candidates=tuple(int(v) for v in d["candidates"]),
            tuning_space=d.get("tuning_space"), tuner_id=d.get("tuner_id"),
            objectives=tuple(d.get("objectives") or ()), tune_round=int(d.get("tune_round", 0)),
            extra=dict(d.get("extra") or {}),
        )


@dataclass(frozen=True)
class Experiment:
    """An experiment's row: immutable parts, its state and the state's version."""

    name: str
    spec: dict[str, Any]
    tracking: tuple[dict[str, str], ...]
    salt: str
    version: int
    state: ExperimentState
    duplicates: int
    created_at: Any
