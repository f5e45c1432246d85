"""DR-learner: a second stage regressing doubly robust pseudo-outcomes on the features."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pexkit.effects.boosting import final_stage, fit_many, predict_many
from pexkit.effects.learners.base import FitContext, FloatArray, MetaLearner, Term
from pexkit.effects.nuisance import doubly_robust_scores, fit_pair_models

__all__ = ["DRLearner"]


class DRLearner(MetaLearner):
    """Kennedy (2020). State: ``[arm][outcome] -> [model per fold]``."""

    name: ClassVar[str] = "dr"

    @staticmethod
    def stage_models(n_folds: int, n_treat: int, n_out: int) -> int:
        # the second stages, and (n_folds >= 3) the outcome models that exclude two folds
        pairs = n_folds * (n_folds - 1) // 2 * n_treat * n_out if n_folds >= 3 else 0
        return n_folds * (n_treat - 1) * n_out + pairs

    @classmethod
    def fit(cls, ctx: FitContext, bar: Any) -> tuple[FloatArray, Any]:
        # Honest chain: the second stage held out on fold f regresses DR targets
        # on the other folds that come from outcome models which never saw fold f
        # (nor, with n_folds >= 3, the target's own fold).
        data, folds, n_folds, seed, base, X = (
            ctx.data, ctx.folds, ctx.n_folds, ctx.seed, ctx.base, ctx.X
        )
        T, Y, e = data.treatment, data.outcomes, data.propensity
        n_treat, n_out = data.n_treatments, data.n_outcomes
        pairs = (fit_pair_models(base, T, Y, folds, n_treat, seed, bar, data.binary)
                 if n_folds >= 3 else None)
        trains = [np.flatnonzero(folds != f) for f in range(n_folds)]
        # targets for every chain: predictions of the excluding outcome models
        keys: list[tuple[int, int, int, int]] = []
        for f in range(n_folds):
            for g in range(n_folds):
                if g != f:
                    keys.extend((f, g, k, m) for k in range(n_treat) for m in range(n_out))
        rows_of = {g: np.flatnonzero(folds == g) for g in range(n_folds)}
        X_of = {g: X[rows] for g, rows in rows_of.items()}

        def source(f: int, g: int) -> list[list[Any]]:
            if pairs is not None:
                return pairs[(min(f, g), max(f, g))]
            return ctx.outcome_models[f]

        preds = predict_many(base, [(source(f, g)[k][m], X_of[g]) for f, g, k, m in keys])
        mu_train = [np.zeros((trains[f].shape[0], n_treat, n_out)) for f in range(n_folds)]
        for (f, g, k, m), pred in zip(keys, preds, strict=True):
            pos = np.flatnonzero(folds[trains[f]] == g)
            mu_train[f][pos, k, m] = pred
        tasks = []
        stage_keys = []
        for f in range(n_folds):
            train = trains[f]
            obs = None if data.observation is None else data.observation[train]
            scores = doubly_robust_scores(mu_train[f], T[train], e[train], Y[train], obs)
            pseudo = scores - scores[:, :1, :]
            for k in range(1, n_treat):
                for m in range(n_out):
                    tasks.append((train, pseudo[:, k, m].copy(), seed + 101 * f + 13 * k + m))
                    stage_keys.append((f, k, m))
        del mu_train
        fitted = fit_many(final_stage(base), tasks, bar.advance)
        oof = np.zeros((data.n_units, n_treat, n_out))
        models: list[list[list[Any]]] = [[[] for _ in range(n_out)] for _ in range(n_treat)]
        held_preds = predict_many(
            base, [(model, X_of[f]) for (f, _, _), model in zip(stage_keys, fitted, strict=True)]
        )
        for (f, k, m), model, pred in zip(stage_keys, fitted, held_preds, strict=True):
            oof[rows_of[f], k, m] = pred
            models[k][m].append(model)
        return oof, models

    def terms(self, k: int, m: int) -> list[Term]:
        models = self.state[k][m]
        return [Term(md, 1.0 / len(models), None, self.env.base) for md in models]
