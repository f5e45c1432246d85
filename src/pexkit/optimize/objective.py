"""The objective the optimizers see: DR lifts of many policies at once, with guardrails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit._stats import Z95
from pexkit.data import LoggedData
from pexkit.evaluation import PolicyScores, evaluate_policies
from pexkit.exceptions import InvalidParameterError
from pexkit.optimize.space import PolicySpace
from pexkit.spec import ExperimentSpec

__all__ = ["Evaluations", "Guardrail", "PolicyObjective"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Guardrail:
    """An outcome must not move the wrong way by more than a share of its control value.

    Parameters
    ----------
    outcome : str
    max_change : float
        E.g. 0.02: a minimized outcome (unsubscribes) may rise by at most 2% of
        its all-control value; a maximized one may fall by at most 2%.
    bound : {"estimate", "ci"}
        Enforce on the DR estimate, or on the pessimistic end of its 95% CI.

    Examples
    --------
    >>> Guardrail("unsubscribe", max_change=0.02)
    Guardrail(outcome='unsubscribe', max_change=0.02, bound='estimate')
    """

    outcome: str
    max_change: float = 0.0
    bound: str = "estimate"

    def __post_init__(self) -> None:
        if self.bound not in ("estimate", "ci"):
            raise InvalidParameterError(
                f"guardrail bound must be 'estimate' or 'ci'; got {self.bound!r}."
            )
        if not self.max_change >= 0:
            raise InvalidParameterError(
                f"guardrail max_change must be >= 0 (a share of the control value); got "
                f"{self.max_change!r}."
            )

    def slack(
        self, spec: ExperimentSpec, lifts: FloatArray, se: FloatArray, control: FloatArray
    ) -> FloatArray:
        """<= 0 where the guardrail holds; shape (P,)."""
        m = spec.outcome_index(self.outcome)
        sign = spec.signs[m]
        harm = -sign * lifts[:, m]
        if self.bound == "ci":
            harm = harm + Z95 * se[:, m]
        out: FloatArray = harm - self.max_change * abs(control[m])
        return out


@dataclass
class Evaluations:
    """Everything evaluated during a search, in order."""

    points: FloatArray  # (P, dim) in [0, 1]
    lifts: FloatArray  # (P, M)
    lift_se: FloatArray  # (P, M)
    shares: FloatArray  # (P, K)
    slack: FloatArray  # (P, C)

    @property
    def feasible(self) -> NDArray[np.bool_]:
        """Guardrails hold."""
        if self.slack.shape[1] == 0:
            return np.ones(self.points.shape[0], dtype=bool)
        return np.asarray((self.slack <= 0).all(axis=1))

    def extend(self, other: Evaluations) -> Evaluations:
        """Concatenate two evaluation logs."""
        return Evaluations.concat([self, other])

    @staticmethod
    def concat(logs: list[Evaluations]) -> Evaluations:
        """Concatenate evaluation logs in order (one copy, however many logs)."""
        return Evaluations(
            np.vstack([ev.points for ev in logs]),
            np.vstack([ev.lifts for ev in logs]),
            np.vstack([ev.lift_se for ev in logs]),
            np.vstack([ev.shares for ev in logs]),
            np.vstack([ev.slack for ev in logs]),
        )


class PolicyObjective:
    """Maps points of a :class:`PolicySpace` to DR lifts (batched evaluation)."""

    def __init__(
        self,
        space: PolicySpace,
        data: LoggedData,
        scores: PolicyScores | None,
        tau: FloatArray | None,
        guardrails: tuple[Guardrail, ...] = (),
        *,
        evaluator: Any = None,
    ) -> None:
        """``evaluator``: evaluates policies where the log lives instead (its
        ``evaluate(policies)`` and ``control_value``; a cluster's)."""
        self.space = space
        self.data = data
        self.scores = scores
        self.tau = tau
        self.guardrails = guardrails
        self.evaluator = evaluator
        for g in guardrails:
            space.spec.outcome_index(g.outcome)
        if evaluator is not None:
            self.control_value = np.asarray(evaluator.control_value)
        else:
            assert scores is not None
            self.control_value = scores.dr[:, 0, :].mean(axis=0)
        self.n_evaluations = 0

    def __call__(self, U: FloatArray) -> Evaluations:
        """Evaluate points ``U`` of shape (P, dim)."""
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        policies = self.space.policies(U)
        if self.evaluator is not None:
            values = self.evaluator.evaluate(policies)
        else:
            values = evaluate_policies(policies, self.data, scores=self.scores, tau=self.tau)
        self.n_evaluations += U.shape[0]
        return self._wrap(U, values.lift, values.lift_se, values.shares)

    def _wrap(
        self, U: FloatArray, lifts: FloatArray, se: FloatArray, shares: FloatArray
    ) -> Evaluations:
        slack = np.column_stack(
            [g.slack(self.space.spec, lifts, se, self.control_value) for g in self.guardrails]
        ) if self.guardrails else np.zeros((U.shape[0], 0))
        return Evaluations(U, lifts, se, shares, slack)
