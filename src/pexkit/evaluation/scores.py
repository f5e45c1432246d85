"""Per-arm score tensors that every off-policy estimator reduces over."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from pexkit.data import LoggedData
from pexkit.effects import EffectModel, doubly_robust_scores
from pexkit.effects.nuisance import observed_weights
from pexkit.exceptions import InvalidDataError
from pexkit.execution import refuse_distributed
from pexkit.spec import ExperimentSpec

__all__ = ["PolicyScores", "build_scores"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class PolicyScores:
    """Everything an estimator needs, built once per (data, model).

    Attributes
    ----------
    dr : ndarray of shape (n_units, n_treatments, n_outcomes)
        Doubly robust scores G.
    mu : ndarray of shape (n_units, n_treatments, n_outcomes)
        Outcome-model predictions (out-of-fold on the fitting data).
    treatment : ndarray of shape (n_units,)
    propensity : ndarray of shape (n_units,)
    outcomes : ndarray of shape (n_units, n_outcomes)
    spec : ExperimentSpec
    """

    dr: FloatArray
    mu: FloatArray
    treatment: IntArray
    propensity: FloatArray
    outcomes: FloatArray
    spec: ExperimentSpec
    #: (n, M) probability of each outcome being observed (``missing: drop``), or None
    observation: FloatArray | None = None

    @property
    def n_units(self) -> int:
        """Number of rows."""
        return int(self.treatment.shape[0])

    @cached_property
    def _observed(self) -> tuple[FloatArray, FloatArray | None]:
        """:func:`~pexkit.effects.nuisance.observed_weights`, computed once per scores."""
        return observed_weights(self.treatment, self.outcomes, self.spec.n_treatments,
                                self.observation)

    @property
    def has_missing(self) -> bool:
        """Whether some outcome is missing on some rows (``missing: drop``)."""
        return self._observed[1] is not None

    def weighted_outcomes(self) -> FloatArray:
        """``R_im Y_im / r_{T_i m}``: the outcomes with attrition weights (missing rows 0).

        Equal to the outcomes when nothing is missing
        (:func:`pexkit.effects.nuisance.observed_weights`).
        """
        filled, weight = self._observed
        return filled if weight is None else filled * weight

    def residuals(self) -> FloatArray:
        """``R_im (Y_im - mu_{T_i m}(x_i)) / r_{T_i m}``, shape (n_units, n_outcomes)."""
        logged = self.mu[np.arange(self.n_units), self.treatment, :]
        filled, weight = self._observed
        if weight is None:
            return filled - logged
        return np.where(weight > 0, filled - logged, 0.0) * weight

    def logged_values(self) -> FloatArray:
        """Per row, an unbiased term for what the logging policy got: the observed outcome,
        or with missing values the outcome model plus the weighted residual."""
        if self._observed[1] is None:
            return self.outcomes
        logged: FloatArray = self.mu[np.arange(self.n_units), self.treatment, :]
        return logged + self.residuals()

    def ips(self) -> FloatArray:
        """``1{T_i = k} Y_i / e_i``, shape (n_units, n_treatments, n_outcomes)."""
        n = self.n_units
        out = np.zeros_like(self.mu)
        out[np.arange(n), self.treatment, :] = (
            self.weighted_outcomes() / self.propensity[:, None])
        return out

    @classmethod
    def from_arrays(
        cls,
        spec: ExperimentSpec,
        mu: FloatArray,
        treatment: IntArray,
        propensity: FloatArray,
        outcomes: FloatArray,
        observation: FloatArray | None = None,
    ) -> PolicyScores:
        """Build scores from outcome predictions and the log's arrays."""
        mu = np.asarray(mu, dtype=np.float64)
        want = (treatment.shape[0], spec.n_treatments, spec.n_outcomes)
        if mu.shape != want:
            raise InvalidDataError(
                f"'mu' must have shape {want} = (units, treatments, outcomes); got "
                f"{mu.shape}."
            )
        dr = doubly_robust_scores(mu, treatment, propensity, outcomes, observation)
        return cls(dr, mu, treatment, propensity, outcomes, spec, observation)


def build_scores(data: LoggedData, model: EffectModel) -> PolicyScores:
    """Scores for ``data`` from ``model``'s outcome models.

    On rows the model was fitted on (recognized by content, so a reloaded copy,
    a subset or an overlapping log counts), the cross-fitted (out-of-fold)
    predictions are used, so no row is scored by a model that saw it; on new
    rows the fold-averaged outcome models predict.
    """
    refuse_distributed(data, "build_scores")
    if not isinstance(data, LoggedData):
        raise InvalidDataError(
            f"'data' must be a LoggedData; got {type(data).__name__}."
        )
    model._check_fitted()
    if data.spec != model.spec_:
        mine, theirs = model.spec_.to_dict(), data.spec.to_dict()
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise InvalidDataError(
            "'data' was logged under a different spec than the model was fitted on; "
            f"they differ in {differ}: model {({k: mine.get(k) for k in differ})}, data "
            f"{({k: theirs.get(k) for k in differ})}. Fit the model on this spec."
        )
    if model.holds(data):
        return PolicyScores(
            model.scores_, model.mu_oof_, data.treatment, data.propensity,
            data.outcomes, data.spec, data.observation,
        )
    # training rows (matched by content: a reloaded log, a subset, an overlap) keep
    # their out-of-fold predictions; only new rows are predicted
    mu = model.outcomes_for(data)
    return PolicyScores.from_arrays(
        data.spec, mu, data.treatment, data.propensity, data.outcomes, data.observation
    )
