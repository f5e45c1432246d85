"""Always-valid intervals: confidence sequences that may be read after every new unit.

A 95% confidence interval read again and again (a launch dashboard refreshed
every morning) is wrong more than 5% of the time: every look is a new chance of
a false "significant". A confidence sequence holds at every sample size at once:
``P(the true mean is outside C_t for some t) <= alpha``. This module uses the
asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
(2023, "Time-uniform central limit theory and asymptotic confidence
sequences"), a normal-mixture boundary around the running mean:

.. math:: \\bar x_t \\pm \\hat\\sigma_t \\sqrt{\\frac{2 (t \\rho^2 + 1)}{t^2 \\rho^2}
          \\log\\frac{\\sqrt{t \\rho^2 + 1}}{\\alpha}}

``rho`` is fixed in advance from the sample size ``t_star`` the sequence should be
tightest at (it must not depend on the data). A difference of two independent
means (policy vs holdout) combines one sequence per side at ``alpha / 2`` each.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(0.3, 1.0, 2000)
>>> lo, hi = confidence_sequence(x.mean(), x.std(ddof=1), 2000, alpha=0.05, t_star=1000)
>>> bool(lo < 0.3 < hi), bool(hi - lo > 2 * 1.96 / np.sqrt(2000))  # wider than the fixed-n CI
(True, True)
"""

from __future__ import annotations

import math

__all__ = ["T_STAR", "confidence_sequence", "difference_sequence"]

#: sample size (per side) the sequences are tightest at, unless told otherwise
T_STAR = 1000


def _radius(sd: float, t: int, alpha: float, t_star: int) -> float:
    log_a = math.log(alpha)
    rho2 = (-2 * log_a + math.log(-2 * log_a + 1)) / t_star
    return sd * math.sqrt(
        2 * (t * rho2 + 1) / (t * t * rho2) * math.log(math.sqrt(t * rho2 + 1) / alpha)
    )


def confidence_sequence(
    mean: float, sd: float, t: int, alpha: float = 0.05, t_star: int = T_STAR
) -> tuple[float, float]:
    """The always-valid interval for a mean after ``t`` observations (running mean and sd)."""
    if t < 2 or not 0 < alpha < 1 or t_star < 1:
        return (-math.inf, math.inf)
    r = _radius(sd, t, alpha, t_star)
    return (mean - r, mean + r)


def difference_sequence(
    a_mean: float, a_sd: float, a_n: int, b_mean: float, b_sd: float, b_n: int,
    alpha: float = 0.05, t_star: int = T_STAR,
) -> tuple[float, float]:
    """The always-valid interval for ``mean(a) - mean(b)`` (independent sides, alpha/2 each)."""
    a_lo, a_hi = confidence_sequence(a_mean, a_sd, a_n, alpha / 2, t_star)
    b_lo, b_hi = confidence_sequence(b_mean, b_sd, b_n, alpha / 2, t_star)
    return (a_lo - b_hi, a_hi - b_lo)
