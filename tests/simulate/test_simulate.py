import numpy as np
import pandas as pd
import pytest

import pexkit as px


def test_seeded_and_vectorized():
    a = px.simulate("notifications", n_units=500, seed=4)
    b = px.simulate("notifications", n_units=500, seed=4)
    c = px.simulate("notifications", n_units=500, seed=5)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not a.frame.equals(c.frame)
    assert a.true_means.shape == (500, 3, 4)


def test_notifications_has_what_later_work_needs():
    sim = px.simulate("notifications", n_units=20000, seed=0)
    spec = sim.spec
    assert spec.arms == ("control", "light", "heavy")
    assert spec.outcome_names == ("engagement", "unsubscribe", "revenue")
    assert spec.categorical == ("platform", "region")
    assert set(np.unique(sim.frame["unsubscribe"])) == {0.0, 1.0}
    tau = sim.true_cate()
    assert tau.shape == (20000, 3, 3) and np.all(tau[:, 0] == 0)
    # engagement up, unsubscribes up for heavy on average; revenue mixed in sign
    assert tau[:, 2, 0].mean() > 0 and tau[:, 2, 1].mean() > 0
    assert (tau[:, 2, 2] > 0.05).mean() > 0.1 and (tau[:, 2, 2] < -0.05).mean() > 0.1
    # heterogeneous: effects vary across units
    assert tau[:, 2, 0].std() > 0.2
    # the long-term effect is only partly explained by the short-term effects
    long = sim.true_cate(["retention_90d"])[:, 1:, 0].ravel()
    short = tau[:, 1:, :].reshape(-1, 3)
    design = np.column_stack([np.ones(len(short)), short])
    coef, *_ = np.linalg.lstsq(design, long, rcond=None)
    r2 = 1 - np.var(long - design @ coef) / np.var(long)
    assert 0.2 < r2 < 0.95, r2


def test_oracle_value():
    sim = px.simulate("notifications", n_units=1000, seed=1)
    n = 1000
    control = sim.oracle_value(np.zeros(n, dtype=int))
    assert (control["lift"] == 0).all()
    heavy = sim.oracle_value(np.full(n, 2))
    np.testing.assert_allclose(heavy["lift"].to_numpy()[:3], sim.true_cate()[:, 2].mean(axis=0))
    mixed = sim.oracle_value(np.full((n, 3), 1 / 3))
    expected = sim.true_means.mean(axis=(0, 1))
    np.testing.assert_allclose(mixed["value"].to_numpy(), expected)


def test_synthetic_scenario_and_bad_input():
    sim = px.simulate("synthetic", n_units=300, seed=0, n_features=20)
    assert len(sim.spec.numeric) == 20 and sim.spec.n_outcomes == 3
    with pytest.raises(px.InvalidParameterError, match="'scenario' must be"):
        px.simulate("weather")
    with pytest.raises(px.InvalidParameterError, match="n_units"):
        px.simulate(n_units=0)
    with pytest.raises(px.InvalidParameterError, match="unknown outcomes"):
        sim.true_cate(["nope"])
