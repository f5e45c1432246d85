"""Off-policy estimators: per-row influence terms for DR, IPS, SNIPS, SNDR, Switch-DR and DM.

Each estimator turns a policy (action probabilities, shape (n_units,
n_treatments)) into per-row terms whose mean is the policy's value and whose
standard deviation over ``sqrt(n)`` is its standard error (influence-function
CI). Lift vs all-control uses the difference of the policy's and control's terms.

The self-normalized DR (``"sndr"``) and Switch-DR (``"switch-dr"``, or
:class:`SwitchDR` with a threshold) follow Open Bandit Pipeline's
``SelfNormalizedDoublyRobust`` and ``SwitchDoublyRobust`` (Saito et al. 2021;
Wang, Agarwal and Dudik 2017) term for term; ``tests/evaluation`` checks them
against OBP's formulas to 1e-9. DM has no standard error: its spread over
units ignores the outcome model's own estimation error (50-90x narrower than
DR's on real logs, and wrong), so its intervals are NaN with the reason in
``PolicyValue.extra``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from pexkit.evaluation.scores import PolicyScores
from pexkit.exceptions import InvalidParameterError

__all__ = [
    "DM_NO_CI", "ESTIMATORS", "OffPolicyEstimator", "SwitchDR", "get_estimator", "snips_terms",
    "snips_value", "snips_weights",
]

DM_NO_CI = (
    "the direct method has no interval here: the spread of model predictions over units "
    "ignores the outcome model's own estimation error, so sd/sqrt(n) is far too narrow; use "
    "estimator='dr' for a confidence interval"
)

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

    def terms(
        self, scores: PolicyScores, probs: FloatArray, baseline: int = 0
    ) -> tuple[FloatArray, FloatArray]:
        """Return ``(value_terms, lift_terms)``, each of shape (n_units, n_outcomes).

        Lift terms are against sending everyone arm ``baseline`` (0: the control).
        """

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

    def terms(
        self, scores: PolicyScores, probs: FloatArray, baseline: int = 0
    ) -> tuple[FloatArray, FloatArray]:
        table = self.table(scores)
        value = _expect(table, probs)
        return value, value - table[:, baseline, :]


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

    def terms(
        self, scores: PolicyScores, probs: FloatArray, baseline: int = 0
    ) -> tuple[FloatArray, FloatArray]:
        n = scores.n_units
        rows = np.arange(n)
        if scores.has_missing:
            raise InvalidParameterError(
                "SNIPS normalizes one set of weights over every outcome, so it cannot leave "
                "out the rows where an outcome is missing ('missing: drop'); use "
                "estimator='dr' (or 'ips'), which weight each outcome's observed rows."
            )
        y = scores.outcomes

        def ratio_terms(weights: FloatArray) -> FloatArray:
            mean_w, value = snips_value(n, weights.sum(), (weights[:, None] * y).sum(axis=0))
            return snips_terms(weights, y, value, mean_w)

        w_pi, w_0 = snips_weights(scores.treatment, scores.propensity,
                                  probs[rows, scores.treatment], baseline)
        value_terms = ratio_terms(w_pi)
        return value_terms, value_terms - ratio_terms(w_0)


def _dr_parts(scores: PolicyScores, probs: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """DM terms ``sum_k p_ik mu_ik``, importance weights ``p_i,a_i / e_i`` and residuals."""
    n = scores.n_units
    rows = np.arange(n)
    dm = _expect(scores.mu, probs)
    weights = probs[rows, scores.treatment] / scores.propensity
    return dm, weights, scores.residuals()


def _control(scores: PolicyScores, baseline: int = 0) -> FloatArray:
    probs = np.zeros((scores.n_units, scores.spec.n_treatments))
    probs[:, baseline] = 1.0
    return probs


class _PerPolicyDR(ABC):
    """DR variants whose terms depend on the policy beyond a linear table (SNDR, Switch-DR)."""

    name: str
    is_linear: bool = False

    def table(self, scores: PolicyScores) -> FloatArray:
        raise InvalidParameterError(
            f"{self.name} depends on the policy's own weights and has no linear table; "
            "evaluate it one policy at a time."
        )

    @abstractmethod
    def _terms(self, scores: PolicyScores, probs: FloatArray) -> FloatArray:
        """Per-row value terms of the policy given by ``probs`` (n, K)."""

    def terms(
        self, scores: PolicyScores, probs: FloatArray, baseline: int = 0
    ) -> tuple[FloatArray, FloatArray]:
        value = self._terms(scores, probs)
        return value, value - self._terms(scores, _control(scores, baseline))


@dataclass(frozen=True)
class _SelfNormalizedDR(_PerPolicyDR):
    """``mean_i [sum_k p_ik mu_ik + w_i r_i / mean(w)]`` (OBP's SelfNormalizedDoublyRobust).

    Terms are value + influence function of the ratio:
    ``dm_i + c + w_i (r_i - c) / mean(w)`` with ``c = mean(w r) / mean(w)``.
    """

    name: str = "sndr"
    uses_outcome_model: bool = True

    def _terms(self, scores: PolicyScores, probs: FloatArray) -> FloatArray:
        dm, w, r = _dr_parts(scores, probs)
        mean_w = float(w.mean())
        if mean_w <= 0:
            raise InvalidParameterError("SNDR is undefined: the policy never picks a logged arm.")
        c = (w[:, None] * r).mean(axis=0) / mean_w
        out: FloatArray = dm + c[None, :] + w[:, None] * (r - c[None, :]) / mean_w
        return out


@dataclass(frozen=True)
class SwitchDR(_PerPolicyDR):
    """Switch-DR: DR where the importance weight is at most ``lambda_``, else the DM term.

    ``sum_k p_ik mu_ik + 1{w_i <= lambda_} w_i r_i`` (OBP's SwitchDoublyRobust;
    ``lambda_ = inf`` is DR, 0 is DM). Rows with weights above the threshold
    trade DR's unbiasedness for DM's lower variance.
    """

    lambda_: float = float("inf")
    name: str = "switch-dr"
    uses_outcome_model: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.lambda_, int | float) and self.lambda_ >= 0):
            raise InvalidParameterError(
                f"SwitchDR 'lambda_' must be a number >= 0 (the largest importance weight "
                f"kept); got {self.lambda_!r}."
            )

    def _terms(self, scores: PolicyScores, probs: FloatArray) -> FloatArray:
        dm, w, r = _dr_parts(scores, probs)
        keep = (w <= self.lambda_).astype(np.float64)
        out: FloatArray = dm + (keep * w)[:, None] * r
        return out


def snips_weights(
    treatment: NDArray[np.int64], propensity: FloatArray, chosen_prob: FloatArray,
    baseline: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """Importance weights of the policy (probability of the logged arm) and of all-``baseline``."""
    return chosen_prob / propensity, (treatment == baseline) / propensity


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
    "sndr": _SelfNormalizedDR(),
    "switch-dr": SwitchDR(),
}


def get_estimator(name: str | OffPolicyEstimator) -> OffPolicyEstimator:
    """Return the estimator registered as ``name`` (or ``name`` itself, e.g. ``SwitchDR(5.0)``)."""
    if isinstance(name, SwitchDR):
        return name
    try:
        return ESTIMATORS[str(name)]
    except KeyError:
        raise InvalidParameterError(
            f"'estimator' must be one of {sorted(ESTIMATORS)} or a SwitchDR(lambda_); got "
            f"{name!r}."
        ) from None
