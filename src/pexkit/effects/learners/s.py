"""S-learner: one outcome model with the arm as a feature, ``f(x, k) - f(x, 0)``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pexkit.effects.boosting import fit_many, predict_many
from pexkit.effects.learners.base import FitContext, FloatArray, MetaLearner, Term, with_arm

__all__ = ["SLearner"]


class SLearner(MetaLearner):
    """State: ``(s_base, [outcome] -> [model per fold])``; ``s_base`` bins x and the arm."""

    name: ClassVar[str] = "s"

    @staticmethod
    def stage_models(n_folds: int, n_treat: int, n_out: int) -> int:
        return n_folds * n_out

    @classmethod
    def fit(cls, ctx: FitContext, bar: Any) -> tuple[FloatArray, Any]:
        data, folds, n_folds, seed, X = ctx.data, ctx.folds, ctx.n_folds, ctx.seed, ctx.X
        n_treat, n_out = data.n_treatments, data.n_outcomes
        s_base = ctx.make_base()
        X_aug = np.column_stack([X, data.treatment.astype(np.float64)])
        s_base.bind(X_aug, [*data.encoder.categorical_indices, X.shape[1]])
        keys = [(f, m) for f in range(n_folds) for m in range(n_out)]
        tasks = []
        for f, m in keys:
            train = np.flatnonzero(folds != f)
            # squared loss also for binary outcomes: leaf means of 0/1 are probabilities
            # already, and on click logs of 20k units a logistic S-learner's effects were
            # 8% worse (PEHE) than these (tests/effects/test_binary.py)
            tasks.append((train, data.outcomes[train, m], seed + 307 * f + m))
        fitted = fit_many(s_base, tasks, bar.advance)
        held = {f: np.flatnonzero(folds == f) for f in range(n_folds)}
        X_arm = {(f, k): with_arm(X[held[f]], k) for f in range(n_folds) for k in range(n_treat)}
        pred_keys = [(i, k) for i in range(len(keys)) for k in range(n_treat)]
        preds = predict_many(s_base, [(fitted[i], X_arm[(keys[i][0], k)]) for i, k in pred_keys])
        by_key = dict(zip(pred_keys, preds, strict=True))
        oof = np.zeros((data.n_units, n_treat, n_out))
        models: list[list[Any]] = [[] for _ in range(n_out)]
        for i, (f, m) in enumerate(keys):
            for k in range(1, n_treat):
                oof[held[f], k, m] = by_key[(i, k)] - by_key[(i, 0)]
            models[m].append(fitted[i])
        return oof, (s_base, models)

    def terms(self, k: int, m: int) -> list[Term]:
        s_base, models = self.state
        c = 1.0 / len(models[m])
        out = [Term(md, c, k, s_base) for md in models[m]]
        return out + [Term(md, -c, 0, s_base) for md in models[m]]
