"""Per-outcome missingness: error (with advice), zero, and drop (own rows, unbiased)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pexkit as px


def _log(n: int, seed: int) -> tuple[pd.DataFrame, float]:
    """y fully observed; ``score`` missing at random given x2 (more often when x2 is high)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    t = rng.integers(0, 2, n)
    y = x1 + x2 + t * (0.5 + 0.5 * x1) + rng.normal(size=n)
    score = 2 + x2 + 0.3 * t + rng.normal(size=n)
    p_miss = 1 / (1 + np.exp(-(-0.5 + 1.5 * x2)))
    score[rng.random(n) < p_miss] = np.nan
    df = pd.DataFrame({"arm": t, "x1": x1, "x2": x2, "y": y, "score": score})
    return df, 0.3


def _spec(missing: str) -> px.ExperimentSpec:
    return px.ExperimentSpec(
        treatment="arm", arms=[0, 1], numeric=["x1", "x2"],
        outcomes=[{"name": "y"}, {"name": "score", "missing": missing}],
    )


def test_missing_error_gives_advice_by_what_the_outcome_looks_like() -> None:
    df, _ = _log(400, 0)
    with pytest.raises(px.InvalidDataError, match=r"measurement.*'missing: drop'"):
        px.LoggedData.from_frame(df, _spec("error"))
    clicks = df.assign(score=np.where(df.score.isna(), np.nan, (df.score > 2).astype(float)))
    with pytest.raises(px.InvalidDataError, match=r"look like events.*'missing: zero'"):
        px.LoggedData.from_frame(clicks, _spec("error"))


def test_missing_zero_counts_a_missing_value_as_no_event() -> None:
    df, _ = _log(400, 0)
    data = px.LoggedData.from_frame(df, _spec("zero"))
    m = data.spec.outcome_index("score")
    assert data.outcome_rows == {"y": 400, "score": 400}
    assert np.array_equal(data.outcomes[:, m], df.score.fillna(0.0).to_numpy())


def test_missing_drop_fits_each_outcome_on_its_own_rows_and_stays_unbiased() -> None:
    # 20 seeded logs of 3,000 units where score is missing for ~40% of units, more
    # often where x2 (which drives score) is high. The complete-case mean of score under
    # treatment is biased down by ~0.42. The DR value (outcome model fitted on the
    # observed rows, residuals weighted by the cross-fitted probability of being observed
    # given x and the arm) is not; weighting by the arm's observed share alone (no
    # attrition model) leaves ~-0.044 of it (measured over 40 other seeds: -0.013 vs
    # -0.044, SEs 0.007)
    values, effects, share_only, complete_case = [], [], [], []
    for seed in range(20):
        df, truth = _log(3000, 10 + seed)
        data = px.LoggedData.from_frame(df, _spec("drop"))
        assert data.outcome_rows == {"y": 3000, "score": int(df.score.notna().sum())}
        assert data.observation is not None and np.all(data.observation[:, 0] == 1.0)
        model = px.EffectModel(learner="t", n_folds=2, random_state=seed).fit(data)
        ate = model.ate().set_index("outcome")
        assert np.isfinite(model.scores_).all()
        effects.append(ate.loc["score", "estimate"] - truth)
        treat_all = np.ones(3000, dtype=int)
        value = px.evaluate_policy(treat_all, data, model).to_frame()
        values.append(value.loc["score", "value"] - 2.3)  # E[score | treated] = 2 + 0.3
        data.observation = None  # the arm's observed share instead of the attrition model
        plain = px.EffectModel(learner="t", n_folds=2, random_state=seed).fit(data)
        share_only.append(px.evaluate_policy(treat_all, data, plain).to_frame().loc[
            "score", "value"] - 2.3)
        complete_case.append(df.score[df.arm == 1].mean() - 2.3)
    # means over 20 seeds have SEs of about 0.01
    assert abs(np.mean(effects)) < 0.035
    assert abs(np.mean(values)) < 0.04
    # what the attrition model removes (measured here: -0.028 without it, -0.003 with it)
    assert np.mean(share_only) < np.mean(values) - 0.015
    assert np.mean(complete_case) < -0.25  # the naive answer


def test_a_fully_observed_outcome_is_untouched_by_another_outcomes_missingness() -> None:
    df, _ = _log(2000, 5)
    dropped = px.EffectModel(learner="t", n_folds=2, random_state=0).fit(
        px.LoggedData.from_frame(df, _spec("drop")))
    zeroed = px.EffectModel(learner="t", n_folds=2, random_state=0).fit(
        px.LoggedData.from_frame(df, _spec("zero")))
    # outcome y (index 0) is fitted on every row either way: identical effects
    assert np.array_equal(dropped.effects_[:, 1, 0], zeroed.effects_[:, 1, 0])
    assert not np.allclose(dropped.effects_[:, 1, 1], zeroed.effects_[:, 1, 1])


def test_snips_refuses_missing_outcomes_with_the_fix() -> None:
    df, _ = _log(1000, 6)
    data = px.LoggedData.from_frame(df, _spec("drop"))
    model = px.EffectModel(learner="t", n_folds=2).fit(data)
    with pytest.raises(px.InvalidParameterError, match="estimator='dr'"):
        px.evaluate_policy(np.ones(1000, dtype=int), data, model, estimator="snips")
