"""Off-policy evaluation with influence-function confidence intervals."""

from pexkit.evaluation.abtest import ab_readout
from pexkit.evaluation.estimators import ESTIMATORS, OffPolicyEstimator, SwitchDR, get_estimator
from pexkit.evaluation.evaluate import (
    PolicyValue,
    PolicyValues,
    evaluate_policies,
    evaluate_policy,
)
from pexkit.evaluation.scores import PolicyScores, build_scores

__all__ = [
    "ESTIMATORS",
    "SwitchDR",
    "OffPolicyEstimator",
    "PolicyScores",
    "PolicyValue",
    "PolicyValues",
    "ab_readout",
    "build_scores",
    "evaluate_policies",
    "evaluate_policy",
    "get_estimator",
]
