"""Meta-learners behind one protocol (:mod:`pexkit.effects.learners.base`)."""

from pexkit.effects.learners.base import FitContext, Fitted, MetaLearner, Term, predict_terms
from pexkit.effects.learners.dr import DRLearner
from pexkit.effects.learners.s import SLearner
from pexkit.effects.learners.t import TLearner
from pexkit.effects.learners.x import XLearner

#: the learners by name, in the order ``learner="auto"`` reports them
LEARNER_CLASSES: dict[str, type[MetaLearner]] = {
    cls.name: cls for cls in (TLearner, SLearner, XLearner, DRLearner)
}

__all__ = [
    "LEARNER_CLASSES",
    "DRLearner",
    "FitContext",
    "Fitted",
    "MetaLearner",
    "SLearner",
    "TLearner",
    "Term",
    "XLearner",
    "predict_terms",
]
