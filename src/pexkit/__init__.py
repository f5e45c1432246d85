"""pexkit: personalized experimentation, from a randomized log to launched policies.

>>> import pexkit as px
>>> sim = px.simulate("notifications", n_units=2000, seed=0)
>>> sim.data.n_units
2000
"""

from pexkit.client import Client, Decision, ServiceError
from pexkit.data import LoggedData, SampleRatioTest
from pexkit.datasets import hillstrom_spec, load_hillstrom, load_ihdp
from pexkit.effects import EffectModel
from pexkit.evaluation import (
    PolicyScores,
    PolicyValue,
    PolicyValues,
    ab_readout,
    build_scores,
    evaluate_policies,
    evaluate_policy,
)
from pexkit.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    ModelFormatError,
    NotFittedError,
    PexkitError,
    PexkitWarning,
    SampleRatioMismatchWarning,
    SpecError,
)
from pexkit.explain import (
    DistilledPolicy,
    EffectTree,
    PolicyTree,
    Segments,
    distill,
    distill_effects,
    feature_importance,
    fit_policy_tree,
    segments,
)
from pexkit.longterm import SurrogateIndex, proxy_weights
from pexkit.optimize import (
    Guardrail,
    ParetoFront,
    hypervolume,
    is_non_dominated,
    load_policies,
    optimize_policies,
)
from pexkit.policy import LinearPolicy, choose_batch
from pexkit.sequential import (
    OfflineAgent,
    SequentialSpec,
    SequentialValue,
    SequentialValues,
    TransitionLog,
    evaluate_sequential,
)
from pexkit.simulate import SequentialSimulation, Simulation, simulate
from pexkit.spec import ExperimentSpec, Outcome

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Decision",
    "DistilledPolicy",
    "EffectModel",
    "EffectTree",
    "ExperimentSpec",
    "Guardrail",
    "InvalidDataError",
    "InvalidParameterError",
    "LinearPolicy",
    "LoggedData",
    "ModelFormatError",
    "NotFittedError",
    "OfflineAgent",
    "Outcome",
    "ParetoFront",
    "PexkitError",
    "PexkitWarning",
    "PolicyScores",
    "PolicyTree",
    "PolicyValue",
    "PolicyValues",
    "SampleRatioMismatchWarning",
    "SampleRatioTest",
    "Segments",
    "SequentialSimulation",
    "SequentialSpec",
    "SequentialValue",
    "SequentialValues",
    "ServiceError",
    "Simulation",
    "SpecError",
    "SurrogateIndex",
    "TransitionLog",
    "ab_readout",
    "build_scores",
    "choose_batch",
    "distill",
    "distill_effects",
    "evaluate_policies",
    "evaluate_policy",
    "evaluate_sequential",
    "feature_importance",
    "fit_policy_tree",
    "hillstrom_spec",
    "hypervolume",
    "is_non_dominated",
    "load_hillstrom",
    "load_ihdp",
    "load_policies",
    "optimize_policies",
    "proxy_weights",
    "segments",
    "simulate",
]
