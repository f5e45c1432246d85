"""Sequential decisions: offline reinforcement learning and off-policy evaluation of sequences.

A :class:`SequentialSpec` describes a log with one row per decision (a unit,
a time, the state, the logged action with its propensity, the rewards that
followed); :class:`TransitionLog` validates it and links each decision to the
unit's next one.
"""

from pexkit.sequential.evaluate import (
    ESTIMATORS,
    SequentialValue,
    SequentialValues,
    evaluate_sequential,
)
from pexkit.sequential.log import StateEncoder, TransitionLog
from pexkit.sequential.policy import action_probabilities
from pexkit.sequential.serving import SequentialDecision, ServedAgent
from pexkit.sequential.spec import Reward, SequentialSpec

__all__ = [
    "ESTIMATORS",
    "SequentialValue",
    "SequentialValues",
    "evaluate_sequential",
    "Reward",
    "SequentialDecision",
    "SequentialSpec",
    "ServedAgent",
    "StateEncoder",
    "TransitionLog",
    "action_probabilities",
]
