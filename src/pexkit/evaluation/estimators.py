"""Off-policy estimators: per-row influence terms for DR, IPS, SNIPS and DM.

Each estimator turns a policy (action probabilities, shape (n_units,
n_treatments)) into per-row terms whose mean is the policy's value and whose
standard deviation over ``sqrt(n)`` is its standard error (influence-function
CI). Lift vs all-control uses the difference of the policy's and control's terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from pexkit.evaluation.scores import PolicyScores
from pexkit.exceptions import InvalidParameterError

__all__ = [
    "ESTIMATORS", "OffPolicyEstimator", "get_estimator", "snips_terms", "snips_value",
    "snips_weights",
]

FloatArray = NDArray[np.float64]


class OffPolicyEstimator(Protocol):
    """Computes a policy's per-row value terms from scores."""

    @property
    def name(self) -> str:
        """Registry name."""

    @property
    def uses_outcome_model(self) -> bool:
        """Whether the estimator needs outcome-model predictions."""

    @property
    def is_linear(self) -> bool:
        """Whether the value is a mean of ``sum_k p_ik H[i,k,:]`` (batchable)."""

    def terms(self, scores: PolicyScores, probs: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Return ``(value_terms, lift_terms)``, each of shape (n_units, n_outcomes)."""

    def table(self, scores: PolicyScores) -> FloatArray:
        """For linear estimators: H with value terms ``sum_k p_ik H[i,k,:]``."""


def _expect(table: FloatArray, probs: FloatArray) -> FloatArray:
    out: FloatArray = np.einsum("nk,nkm->nm", probs, table)
    return out


@dataclass(frozen=True)
class _LinearEstimator:
    name: str
    uses_outcome_model: bool

    is_linear: bool = field(default=True, init=False)

    def table(self, scores: PolicyScores) -> FloatArray:
        if self.name == "dr":
            return scores.dr
        if self.name == "dm":
            return scores.mu
        return scores.ips()

    def terms(self, scores: PolicyScores, probs: FloatArray) -> tuple[FloatArray, FloatArray]:
        table = self.table(scores)
        value = _expect(table, probs)
        return value, value - table[:, 0, :]


@dataclass(frozen=True)
class _SelfNormalizedIPS:
    name: str = "snips"
    uses_outcome_model: bool = False

    is_linear: bool = field(default=False, init=False)

    def table(self, scores: PolicyScores) -> FloatArray:
        raise InvalidParameterError(
            "SNIPS is a ratio estimator and has no linear table; evaluate it one "
            "policy at a time."
        )

    def terms(self, scores: PolicyScores, probs: FloatArray) -> tuple[FloatArray, FloatArray]:
        n = scores.n_units
        rows = np.arange(n)
        y = scores.outcomes

        def ratio_terms(weights: FloatArray) -> FloatArray:
            mean_w, value = snips_value(n, weights.sum(), (weights[:, None] * y).sum(axis=0))
            return snips_terms(weights, y, value, mean_w)

        w_pi, w_0 = snips_weights(scores.treatment, scores.propensity, probs[rows, scores.treatment])
        value_terms = ratio_terms(w_pi)
        return value_terms, value_terms - ratio_terms(w_0)


def snips_weights(
    treatment: NDArray[np.int64], propensity: FloatArray, chosen_prob: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Importance weights of the policy (probability of the logged arm) and of all-control."""
    return chosen_prob / propensity, (treatment == 0) / propensity


def snips_value(n: int, sum_w: float, sum_wy: FloatArray) -> tuple[float, FloatArray]:
    """SNIPS's mean weight and value from the sums of ``w`` and ``w * y`` over ``n`` rows."""
    mean_w = float(sum_w) / n
    if mean_w <= 0:
        raise InvalidParameterError("SNIPS is undefined: the policy never picks a logged arm.")
    return mean_w, np.asarray(sum_wy, dtype=np.float64) / float(sum_w)


def snips_terms(weights: FloatArray, y: FloatArray, value: FloatArray, mean_w: float) -> FloatArray:
    """Value + influence function per row, so that mean = value and sd/sqrt(n) = se."""
    out: FloatArray = value[None, :] + weights[:, None] * (y - value[None, :]) / mean_w
    return out


ESTIMATORS: dict[str, OffPolicyEstimator] = {
    "dr": _LinearEstimator("dr", True),
    "ips": _LinearEstimator("ips", False),
    "dm": _LinearEstimator("dm", True),
    "snips": _SelfNormalizedIPS(),
}


def get_estimator(name: str) -> OffPolicyEstimator:
    """Return the estimator registered as ``name`` (dr, ips, snips, dm)."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise InvalidParameterError(
            f"'estimator' must be one of {sorted(ESTIMATORS)}; got {name!r}."
        ) from None
