"""Sequential decisions: offline reinforcement learning and off-policy evaluation of sequences.

A :class:`SequentialSpec` describes a log with one row per decision (a unit,
a time, the state, the logged action with its propensity, the rewards that
followed); :class:`TransitionLog` validates it and links each decision to the
unit's next one. :class:`OfflineAgent` learns a policy from it (CQL, Double
DQN, fitted Q iteration), :func:`evaluate_sequential` estimates any policy's
value off-policy with CIs, :func:`sequential_front` traces the trade-off
between rewards, :func:`tune_agent` chooses hyperparameters by held-out
estimates, :func:`analyze_sequential` runs the whole job and
:class:`ServedAgent` decides in a service.
"""

from pexkit.sequential.agents import OfflineAgent
from pexkit.sequential.analysis import SequentialAnalysis, analyze_sequential
from pexkit.sequential.evaluate import (
    ESTIMATORS,
    SequentialValue,
    SequentialValues,
    evaluate_sequential,
)
from pexkit.sequential.front import SequentialFront, sequential_front
from pexkit.sequential.log import StateEncoder, TransitionLog
from pexkit.sequential.policy import action_probabilities
from pexkit.sequential.selection import AgentSelection, split_units, tune_agent
from pexkit.sequential.serving import SequentialDecision, ServedAgent
from pexkit.sequential.spec import Reward, SequentialSpec

__all__ = [
    "ESTIMATORS",
    "AgentSelection",
    "OfflineAgent",
    "Reward",
    "SequentialAnalysis",
    "SequentialDecision",
    "SequentialFront",
    "SequentialSpec",
    "SequentialValue",
    "SequentialValues",
    "ServedAgent",
    "StateEncoder",
    "TransitionLog",
    "action_probabilities",
    "analyze_sequential",
    "evaluate_sequential",
    "sequential_front",
    "split_units",
    "tune_agent",
]
