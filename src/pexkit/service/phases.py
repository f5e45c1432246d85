"""The phase machine: randomize -> tune -> launched, stopped, and back to randomize.

Each transition is a pure function of the current :class:`ExperimentState`
that returns the next one or raises a domain error; the service applies it
atomically with compare-and-swap (:meth:`DecisionService.mutate`), so
concurrent transitions are serialized and none is lost.
"""

from __future__ import annotations

from dataclasses import replace

from pexkit.service.errors import ConflictError, InvalidRequestError
from pexkit.service.state import ExperimentState, TuneArm

__all__ = ["HOLDOUT_RANGE", "check_explore", "check_holdout", "launch", "next_round",
           "set_phase", "start_tune"]

HOLDOUT_RANGE = (0.02, 0.05)
EXPLORE_MAX = 0.5


def check_holdout(holdout: object) -> float:
    lo, hi = HOLDOUT_RANGE
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not (
        lo <= float(holdout) <= hi
    ):
        raise InvalidRequestError(
            f"holdout: expected a fraction between {lo} and {hi} (2-5% of units keep random "
            f"treatments to backtest the policy); got {holdout!r}."
        )
    return float(holdout)


def check_explore(explore: object) -> float:
    if isinstance(explore, bool) or not isinstance(explore, int | float) or not (
        0.0 <= float(explore) <= EXPLORE_MAX
    ):
        raise InvalidRequestError(
            f"explore: expected an epsilon between 0 and {EXPLORE_MAX} (the share of launched "
            f"units that get a uniformly random treatment, logged with its propensity); got "
            f"{explore!r}."
        )
    return float(explore)


def set_phase(state: ExperimentState, phase: str) -> ExperimentState:
    """Stop, or go back to randomizing (a new epoch: assignments start afresh)."""
    if phase not in ("randomize", "stopped"):
        raise InvalidRequestError(
            f"phase {phase!r}: this endpoint moves to 'randomize' or 'stopped'; use "
            "POST .../tune to tune and POST .../launch to launch."
        )
    return state.advance(phase, arms=())  # type: ignore[arg-type]


def start_tune(
    state: ExperimentState, arms: list[TuneArm], objectives: list[str], tuner_id: int,
    space: dict[str, object],
) -> ExperimentState:
    if not state.candidates:
        raise ConflictError(
            "tune needs candidate policies; run the 'train' and 'optimize' jobs first."
        )
    return state.advance(
        "tune", arms=tuple(arms), objectives=tuple(objectives), tuner_id=tuner_id,
        tune_round=1, tuning_space=dict(space),
    )


def next_round(
    state: ExperimentState, epoch: int, arms: list[TuneArm], tuner_id: int
) -> ExperimentState:
    """The next tuning round; refused if the round it completed is no longer current."""
    if state.phase != "tune" or state.epoch != epoch:
        raise ConflictError(
            f"the tuning round of epoch {epoch} is no longer current (phase {state.phase!r}, "
            f"epoch {state.epoch}); its results were not applied."
        )
    return state.advance("tune", arms=tuple(arms), tuner_id=tuner_id,
                         tune_round=state.tune_round + 1)


def launch(
    state: ExperimentState, version: int, holdout: float, explore: float
) -> ExperimentState:
    new = state.advance("launched", launched_version=version, holdout=holdout,
                        explore=explore, arms=())
    return replace(new, launch_epoch=new.epoch)
