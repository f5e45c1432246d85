"""The meta-learner protocol: fit out of fold, and each effect as a list of tree terms.

Every meta-learner's effect ``tau_{k,m}(x)`` is a weighted sum of base-learner
models: the T-learner's fold-averaged outcome models ``mu_k - mu_0``, the
DR-learner's pseudo-outcome models, the X-learner's two imputed-effect models
per fold, the S-learner's one model evaluated at arm k and at arm 0. A
:class:`MetaLearner` says so once, in :meth:`MetaLearner.terms`, and everything
downstream reads the terms: :meth:`~pexkit.effects.EffectModel.predict`
(:func:`predict_terms`), the compiled serving path
(:func:`~pexkit.serving.compile_policy`) and the refit for serving. A learner's
fitted ``state`` keeps the layout the model archive stores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from pexkit.data import LoggedData
from pexkit.effects.boosting import BaseLearner, predict_many

__all__ = ["FitContext", "Fitted", "MetaLearner", "Term", "predict_terms", "with_arm"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Cell = tuple[int, int]


@dataclass(frozen=True)
class Term:
    """``coef * model(x)``, with the arm value appended as the last feature when ``arm`` is set."""

    model: Any
    coef: float
    arm: int | None
    base: BaseLearner


@dataclass(frozen=True)
class FitContext:
    """What every learner's fit reads: the log, the folds and the shared outcome models."""

    base: BaseLearner  # bound to X
    X: FloatArray
    data: LoggedData
    folds: IntArray
    n_folds: int
    seed: int
    mu: FloatArray  # out-of-fold outcome predictions (n, K, M)
    outcome_models: list[list[list[Any]]]  # [fold][arm][outcome]
    make_base: Callable[[], BaseLearner]  # a fresh, unbound base learner (the S-learner's own)


@dataclass(frozen=True)
class Fitted:
    """What a fitted learner's terms read besides its own state."""

    base: BaseLearner
    outcome_models: list[list[list[Any]]]
    shares: FloatArray  # arm shares of the training log


class MetaLearner(ABC):
    """One meta-learner: its fit, its fitted state and its terms."""

    name: ClassVar[str]

    def __init__(self, state: Any, env: Fitted) -> None:
        self.state = state
        self.env = env

    @staticmethod
    @abstractmethod
    def stage_models(n_folds: int, n_treat: int, n_out: int) -> int:
        """Second-stage models its fit trains (for the progress bar)."""

    @classmethod
    @abstractmethod
    def fit(cls, ctx: FitContext, bar: Any) -> tuple[FloatArray, Any]:
        """Out-of-fold effects (n, K, M; control slice 0) and the fitted state.

        ``bar`` is a progress bar: ``bar.advance(n)`` after n of :meth:`stage_models`.
        """

    @abstractmethod
    def terms(self, k: int, m: int) -> list[Term]:
        """``tau_{k,m}(x)`` as a sum of terms."""


def with_arm(X: FloatArray, arm: int) -> FloatArray:
    """``X`` with a constant last column: the arm an S-learner model is evaluated at."""
    return np.column_stack([X, np.full(X.shape[0], float(arm))])


def predict_terms(terms: dict[Cell, list[Term]], X: FloatArray) -> dict[Cell, FloatArray]:
    """Each cell's sum of terms on encoded rows; a (model, arm) shared by cells is predicted once."""
    unique: dict[tuple[int, int | None], Term] = {}
    for cell_terms in terms.values():
        for term in cell_terms:
            unique.setdefault((id(term.model), term.arm), term)
    by_base: dict[int, list[tuple[int, int | None]]] = {}
    for key, term in unique.items():
        by_base.setdefault(id(term.base), []).append(key)
    arm_X: dict[int, FloatArray] = {}
    preds: dict[tuple[int, int | None], FloatArray] = {}
    for keys in by_base.values():
        tasks = []
        for key in keys:
            term = unique[key]
            if term.arm is None:
                tasks.append((term.model, X))
            else:
                if term.arm not in arm_X:
                    arm_X[term.arm] = with_arm(X, term.arm)
                tasks.append((term.model, arm_X[term.arm]))
        base = unique[keys[0]].base
        for key, pred in zip(keys, predict_many(base, tasks), strict=True):
            preds[key] = pred
    out: dict[Cell, FloatArray] = {}
    for cell, cell_terms in terms.items():
        total = np.zeros(X.shape[0])
        for term in cell_terms:
            total += term.coef * preds[(id(term.model), term.arm)]
        out[cell] = total
    return out
