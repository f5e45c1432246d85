"""The contract of ../shared/DESIGN.md, section "Long-term outcomes", as written there."""

from __future__ import annotations

import numpy as np

import pexkit as px


def test_design_long_term_snippet() -> None:
    earlier = px.simulate("notifications", n_units=3000, seed=5)
    history = px.LoggedData.from_frame(earlier.frame, earlier.analysis_spec())  # target observed
    data = px.simulate("notifications", n_units=3000, seed=6).data  # short-term outcomes only

    sur = px.SurrogateIndex(target="retention_90d", surrogates=["engagement", "unsubscribe", "revenue"])
    sur.fit(history)
    data2 = sur.transform(data)
    assert data2.spec.outcome_names == (*data.spec.outcome_names, "retention_90d~")
    assert data2.spec.outcomes[-1].goal == "maximize" and data2.n_units == data.n_units
    np.testing.assert_array_equal(data2.outcomes[:, :3], data.outcomes)

    model = px.EffectModel(n_folds=2, base_params={"n_estimators": 50}, progress=False).fit(history)
    w = px.proxy_weights(model, target="retention_90d")
    assert set(w.weights) == {"engagement", "unsubscribe", "revenue"}
    assert all(v >= 0 for v in w.weights.values())
    # an unsubscribe costs retention in this scenario: its weight is the largest
    assert max(w.weights, key=w.weights.__getitem__) == "unsubscribe"
