"""X-learner: imputed effects per arm, regressed and blended by the arm shares."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pexkit.effects.boosting import final_stage, fit_many, predict_many
from pexkit.effects.learners.base import FitContext, FloatArray, MetaLearner, Term

__all__ = ["XLearner", "x_weight"]


def x_weight(shares: FloatArray, k: int) -> float:
    """Kunzel et al.: ``tau = g tau_0 + (1 - g) tau_1`` with ``g = P(T = k | T in {0, k})``."""
    return float(shares[k] / (shares[k] + shares[0]))


class XLearner(MetaLearner):
    """Kunzel et al. (2019). State: ``[arm][outcome] -> [(tau_0, tau_1) per fold]``."""

    name: ClassVar[str] = "x"

    @staticmethod
    def stage_models(n_folds: int, n_treat: int, n_out: int) -> int:
        return 2 * n_folds * (n_treat - 1) * n_out

    @classmethod
    def fit(cls, ctx: FitContext, bar: Any) -> tuple[FloatArray, Any]:
        mu, folds, n_folds, seed, base, X = (
            ctx.mu, ctx.folds, ctx.n_folds, ctx.seed, ctx.base, ctx.X
        )
        n, n_treat, n_out = mu.shape
        T, Y = ctx.data.treatment, ctx.data.outcomes
        shares = np.bincount(T, minlength=n_treat) / n
        # Imputed effects use fold f's own outcome models (trained without fold f,
        # each on the other arm's rows only), so nothing in this chain has seen
        # fold f: its out-of-fold effects are honest for policy evaluation.
        arm_rows = {
            (f, k): np.flatnonzero((folds != f) & (k == T))
            for f in range(n_folds)
            for k in range(n_treat)
        }
        keys = [(f, k, m) for f in range(n_folds) for k in range(1, n_treat) for m in range(n_out)]
        chain = ctx.outcome_models
        # fold by fold, one copy of each row set's features shared by its tasks: every
        # fold's copies at once held (n_folds - 1) copies of X (one per task held 1.9 GB
        # at 1M rows)
        mu0_at_k: dict[tuple[int, int, int], FloatArray] = {}
        muk_at_0: dict[tuple[int, int, int], FloatArray] = {}
        for f in range(n_folds):
            X_arm = {k: X[arm_rows[(f, k)]] for k in range(n_treat)}
            fkeys = [key for key in keys if key[0] == f]
            at_k = predict_many(base, [(chain[f][0][m], X_arm[k]) for _, k, m in fkeys])
            at_0 = predict_many(base, [(chain[f][k][m], X_arm[0]) for _, k, m in fkeys])
            mu0_at_k.update(zip(fkeys, at_k, strict=True))
            muk_at_0.update(zip(fkeys, at_0, strict=True))
            del X_arm
        tasks = []
        for f, k, m in keys:
            s = seed + 211 * f + 17 * k + m
            rows1, rows0 = arm_rows[(f, k)], arm_rows[(f, 0)]
            tasks.append((rows1, Y[rows1, m] - mu0_at_k.pop((f, k, m)), s))
            tasks.append((rows0, muk_at_0.pop((f, k, m)) - Y[rows0, m], s + 1))
        fitted = fit_many(final_stage(base), tasks, bar.advance)
        del tasks
        held = {f: np.flatnonzero(folds == f) for f in range(n_folds)}
        preds: list[FloatArray] = [np.empty(0)] * len(fitted)
        for f in range(n_folds):
            X_held = X[held[f]]
            idx = [i for i in range(len(fitted)) if keys[i // 2][0] == f]
            for i, pred in zip(idx, predict_many(base, [(fitted[i], X_held) for i in idx]),
                               strict=True):
                preds[i] = pred
            del X_held
        oof = np.zeros_like(mu)
        models: list[list[list[tuple[Any, Any]]]] = [
            [[] for _ in range(n_out)] for _ in range(n_treat)
        ]
        for i, (f, k, m) in enumerate(keys):
            tau1, tau0 = fitted[2 * i], fitted[2 * i + 1]
            pred1, pred0 = preds[2 * i], preds[2 * i + 1]
            g = x_weight(shares, k)
            oof[held[f], k, m] = g * pred0 + (1 - g) * pred1
            models[k][m].append((tau0, tau1))
        return oof, models

    def terms(self, k: int, m: int) -> list[Term]:
        pairs = self.state[k][m]
        g = x_weight(self.env.shares, k)
        c = 1.0 / len(pairs)
        base = self.env.base
        out: list[Term] = []
        for tau0, tau1 in pairs:
            out += [Term(tau0, g * c, None, base), Term(tau1, (1 - g) * c, None, base)]
        return out
