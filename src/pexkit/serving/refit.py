"""A serving model: each chosen learner's models refit once on every unit.

A cross-fitted :class:`~pexkit.effects.EffectModel` keeps one model per fold
for every term of every effect (honest out-of-fold effects need them), so a
launched policy walks ``n_folds`` times more trees per decision than one model
per term would. :func:`refit_for_serving` fits that one model per term on all
units, with the learner chosen per (treatment, outcome) and the same
out-of-fold nuisances the cross-fitted second stages used (T: outcome models
per arm; S: one model per outcome with the arm as a feature; X: the imputed
effects from out-of-fold outcome models; DR: the DR pseudo-outcomes). The
result is an ``EffectModel`` with ``n_folds = 1`` that
:func:`~pexkit.serving.compile_policy` compiles into ``1 / n_folds`` of the
trees. It is not the cross-fitted model: its decisions agree with the
cross-fitted policy's on most units, not all (measure it with
:func:`agreement`), and its in-sample effects are not honest, so evaluate
policies with the cross-fitted model and serve them with this one.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from pexkit.data.logged import LoggedData
from pexkit.effects.boosting import fit_many, make_base_learner
from pexkit.effects.insample import row_keys
from pexkit.effects.model import EffectModel
from pexkit.exceptions import InvalidDataError, NotFittedError
from pexkit.policy.linear import LinearPolicy

__all__ = ["agreement", "refit_for_serving"]


def refit_for_serving(model: EffectModel, data: LoggedData | None = None) -> EffectModel:
    """One model per term, fit on every unit of ``model``'s training data.

    Parameters
    ----------
    model : EffectModel
        Fitted (cross-fitted, any ``n_folds``).
    data : LoggedData, optional
        The log ``model`` was fitted on, every row in its order (the refit
        reuses the out-of-fold nuisances row by row). Default: the log the
        model still references (``model.data_``).

    Returns
    -------
    EffectModel
        A copy with ``n_folds = 1`` whose ``predict`` and compiled policies use
        the refit models; ``effects_``, ``scores_`` and the selection are the
        cross-fitted model's.
    """
    if not hasattr(model, "chosen_"):
        raise NotFittedError("refit_for_serving needs a fitted EffectModel; call .fit first.")
    data = model.data_ if data is None else data
    keys = model.training_keys_
    if not model.holds(data) and (keys is None or not np.array_equal(row_keys(data), keys)):
        raise InvalidDataError(
            f"'data' ({getattr(data, 'n_units', '?')} rows) is not the log this model was "
            f"fitted on ({len(model.mu_oof_)} rows, in order): the refit reuses each training "
            "row's out-of-fold predictions. Pass the training log itself."
        )
    X = data.encoder.matrix(data.X)
    T, Y = data.treatment, data.outcomes
    n_treat, n_out = data.n_treatments, data.n_outcomes
    seed = int(model.random_state) + 7_777
    base = make_base_learner(model.base, model.base_params, model.n_jobs)
    base.bind(X, data.encoder.categorical_indices)
    cells = [(k, m) for k in range(1, n_treat) for m in range(n_out)]
    chosen = {c: str(model.chosen_[c]) for c in cells}
    mu = model.mu_oof_
    arm_rows = [np.flatnonzero(k == T) for k in range(n_treat)]

    out = copy.copy(model)
    out.n_folds = 1
    fitted: dict[str, Any] = {}
    # T: one outcome model per (arm, outcome) on that arm's units
    t_outs = sorted({m for (k, m), name in chosen.items() if name == "t"})
    t_keys = [(k, m) for m in t_outs for k in range(n_treat)]
    binary = data.binary
    t_models = fit_many(base, [(arm_rows[k], Y[arm_rows[k], m], seed + 31 * k + m, binary[m])
                               for k, m in t_keys])
    full: list[list[Any]] = [[None] * n_out for _ in range(n_treat)]
    for (k, m), booster in zip(t_keys, t_models, strict=True):
        full[k][m] = booster
    out.outcome_models_ = [full]
    fitted["t"] = None
    # DR: the pseudo-outcomes of every unit
    dr_cells = [c for c in cells if chosen[c] == "dr"]
    pseudo = model.scores_ - model.scores_[:, :1, :]
    every = np.arange(data.n_units)
    dr_models = fit_many(base, [(every, pseudo[:, k, m].copy(), seed + 101 + 13 * k + m)
                                for k, m in dr_cells])
    dr: list[list[list[Any]]] = [[[] for _ in range(n_out)] for _ in range(n_treat)]
    for (k, m), booster in zip(dr_cells, dr_models, strict=True):
        dr[k][m] = [booster]
    fitted["dr"] = dr
    # X: imputed effects from the out-of-fold outcome models
    x_cells = [c for c in cells if chosen[c] == "x"]
    x_tasks = []
    for k, m in x_cells:
        r1, r0 = arm_rows[k], arm_rows[0]
        x_tasks.append((r1, Y[r1, m] - mu[r1, 0, m], seed + 211 + 17 * k + m))
        x_tasks.append((r0, mu[r0, k, m] - Y[r0, m], seed + 212 + 17 * k + m))
    x_models = fit_many(base, x_tasks)
    xs: list[list[list[tuple[Any, Any]]]] = [[[] for _ in range(n_out)] for _ in range(n_treat)]
    for i, (k, m) in enumerate(x_cells):
        xs[k][m] = [(x_models[2 * i + 1], x_models[2 * i])]  # (tau0, tau1)
    fitted["x"] = xs
    # S: one model per outcome with the arm as a feature
    s_outs = sorted({m for (k, m), name in chosen.items() if name == "s"})
    if s_outs:
        s_base = make_base_learner(model.base, model.base_params, model.n_jobs)
        X_aug = np.column_stack([X, T.astype(np.float64)])
        s_base.bind(X_aug, [*data.encoder.categorical_indices, X.shape[1]])
        s_fit = fit_many(s_base, [(every, Y[:, m], seed + 307 + m) for m in s_outs])
        s_models: list[list[Any]] = [[] for _ in range(n_out)]
        for m, booster in zip(s_outs, s_fit, strict=True):
            s_models[m] = [booster]
        fitted["s"] = (s_base, s_models)
    out.learners_fitted_ = fitted
    out._base = base
    return out


def agreement(policy: LinearPolicy, model: EffectModel, serving: EffectModel, X: Any) -> float:
    """Share of rows of ``X`` where ``policy`` chooses the same arm on both models."""
    a = policy.choose(model.predict(X))
    b = policy.choose(serving.predict(X))
    return float(np.mean(a == b))
