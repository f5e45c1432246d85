"""T-learner: the difference of the fold-averaged outcome models, ``mu_k - mu_0``."""

from __future__ import annotations

from typing import Any, ClassVar

from pexkit.effects.learners.base import FitContext, FloatArray, MetaLearner, Term

__all__ = ["TLearner"]


class TLearner(MetaLearner):
    """No second stage: the shared cross-fitted outcome models are the whole learner."""

    name: ClassVar[str] = "t"

    @staticmethod
    def stage_models(n_folds: int, n_treat: int, n_out: int) -> int:
        return 0

    @classmethod
    def fit(cls, ctx: FitContext, bar: Any) -> tuple[FloatArray, Any]:
        mu = ctx.mu
        return mu - mu[:, :1, :], None

    def terms(self, k: int, m: int) -> list[Term]:
        models = self.env.outcome_models
        c = 1.0 / len(models)
        base = self.env.base
        out = [Term(fold[k][m], c, None, base) for fold in models]
        return out + [Term(fold[0][m], -c, None, base) for fold in models]
