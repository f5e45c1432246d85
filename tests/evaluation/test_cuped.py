"""CUPED against theory: variance reduction 1 - rho^2, no bias, honest coverage."""

from __future__ import annotations

import numpy as np
import pytest

import pexkit as px
from pexkit.evaluation.cuped import adjusted_difference
from pexkit.exceptions import SpecError


def draw(rng: np.random.Generator, n: int, rho: float, lift: float):
    """y and a pre-period x with corr(x, y) = rho; half the units treated (+lift)."""
    x = rng.normal(size=n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=n)
    t = rng.random(n) < 0.5
    y = y + lift * t
    return y[t], x[t], y[~t], x[~t]


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_variance_reduction_is_one_minus_rho_squared(rho: float) -> None:
    # 40,000 units: the ratio of two sample variances is known to about +-1 point here
    out = adjusted_difference(*draw(np.random.default_rng(int(rho * 10)), 40_000, rho, 0.1))
    assert out["variance_reduction"] == pytest.approx(rho**2, abs=0.03)
    assert out["theta"][0] == pytest.approx(rho, abs=0.03)


def test_adjusted_lift_is_unbiased_and_covers() -> None:
    rng = np.random.default_rng(7)
    lifts, hits = [], 0
    for _ in range(600):
        out = adjusted_difference(*draw(rng, 400, 0.7, 0.2))
        lifts.append(out["lift"])
        hits += out["ci_low"] <= 0.2 <= out["ci_high"]
    # mean of 600 estimates, each with sd ~0.07: 3 standard errors of the mean ~ 0.009
    assert np.mean(lifts) == pytest.approx(0.2, abs=0.01)
    # 600 intervals: a 95% coverage is measured to +-0.9 points
    assert 0.925 <= hits / 600 <= 0.975, hits / 600


def test_spec_takes_a_pre_column_per_outcome() -> None:
    raw = {"treatment": {"column": "arm", "arms": ["c", "t"]},
           "outcomes": [{"name": "visits", "goal": "maximize", "pre": "visits_last_month"}],
           "features": {"numeric": ["visits_last_month"]}}
    spec = px.ExperimentSpec.from_dict(raw)
    assert spec.outcomes[0].pre == "visits_last_month"
    assert px.ExperimentSpec.from_yaml(spec.to_yaml()) == spec
    with pytest.raises(SpecError, match="'pre' must name the column"):
        px.ExperimentSpec.from_dict({**raw, "outcomes": [{"name": "visits", "pre": 3}]})
