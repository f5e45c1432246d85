"""`propensity: estimate`: cross-fitted propensities for a log that was not uniformly randomized."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.exceptions import OverlapWarning

SPEC = {
    "treatment": {"column": "arm", "arms": ["control", "treat"]},
    "outcomes": [{"name": "y", "goal": "maximize"}],
    "features": {"numeric": ["x1", "x2"]},
    "propensity": "estimate",
}


def confounded(seed: int, strength: float = 1.5, n: int = 6000) -> tuple[pd.DataFrame, np.ndarray]:
    """Units with large x1 are treated more often, and x1 raises y: the true ATE is 1."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    p = 1 / (1 + np.exp(-strength * x1))
    t = rng.random(n) < p
    y = 2 * x1 + 1.0 * t + rng.normal(size=n)
    frame = pd.DataFrame({"arm": np.where(t, "treat", "control"), "x1": x1, "x2": x2, "y": y})
    return frame, np.where(t, p, 1 - p)


def test_estimated_propensities_remove_the_confounding() -> None:
    frame, true_p = confounded(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverlapWarning)  # overlap is fine at this strength
        data = px.LoggedData.from_frame(frame, px.ExperimentSpec.from_dict(SPEC))
    # close to the true assignment probabilities (cross-fitted, so not the logged arm itself)
    assert np.corrcoef(data.propensity, true_p)[0, 1] > 0.9
    assert np.abs(data.propensity - true_p).mean() < 0.05
    diag = data.propensity_diagnostics
    assert diag is not None and 0 < diag["min"] < 0.2
    assert 0 < diag["effective_sample_size"]["treat"] < (frame.arm == "treat").sum()
    assert data.srm is None  # no design shares to test against
    treat_all = np.ones(data.n_units, dtype=int)
    # IPS with the estimated propensities finds the true ATE of 1 ...
    model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 50},
                           progress=False).fit(data)
    ips = px.evaluate_policy(treat_all, data, model, estimator="ips")
    assert ips.lift_ci[0, 0] <= 1.0 <= ips.lift_ci[0, 1], ips.lift_ci
    dr = px.evaluate_policy(treat_all, data, model)
    assert dr.lift_ci[0, 0] <= 1.0 <= dr.lift_ci[0, 1], dr.lift_ci
    # ... where the uniform 1/2 the spec would otherwise assume is far off
    t, y = (frame.arm == "treat").to_numpy(), frame.y.to_numpy()
    uniform_ips = (t * y / 0.5).mean() - (~t * y / 0.5).mean()
    assert uniform_ips > 2.0  # confounding: ~3x the effect
    assert ips.lift_ci[0, 1] < uniform_ips


def test_poor_overlap_warns_with_the_fix() -> None:
    frame, _ = confounded(1, strength=6.0)
    with pytest.warns(OverlapWarning, match="under 5% estimated probability of some arm"):
        data = px.LoggedData.from_frame(frame, px.ExperimentSpec.from_dict(SPEC))
    assert data.propensity_diagnostics["share_below_0.05"] > 0.10
    assert data.propensity.min() >= 0.01  # clipped
