"""Heterogeneous treatment effect models (T, S, X, DR meta-learners)."""

from pexkit.effects.boosting import BASE_LEARNERS, make_base_learner
from pexkit.effects.model import LEARNERS, EffectModel
from pexkit.effects.nuisance import doubly_robust_scores, make_folds

__all__ = [
    "BASE_LEARNERS",
    "LEARNERS",
    "EffectModel",
    "doubly_robust_scores",
    "make_base_learner",
    "make_folds",
]
