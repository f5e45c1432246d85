"""Policies for a long-term outcome, learned offline, against the truth.

A process where the surrogates carry the long-term effect (retention = 0.3
clicks - 1.0 unsubscribe + noise) and the effects differ strongly across units:
heavy mail gains clicks with x2 but makes segment "b" unsubscribe. The hand-set
weights (clicks 1, unsubscribe 1) overvalue clicks, so they send heavy to
segment "b"; the oracle is the argmax of the true long-term effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pexkit as px
from pexkit.longterm import SurrogateIndex

from .test_surrogate import ARMS, SHORT, SPEC  # the same arms, outcomes and features


def _means(x: pd.DataFrame, arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x2, seg = x["x2"].to_numpy(), (x["seg"] == "b").to_numpy()
    light, heavy = arm == 1, arm == 2
    clicks = x["x1"].to_numpy() + light * (0.5 + 0.5 * x2) + heavy * (1.0 + 1.0 * x2)
    p_unsub = 1 / (1 + np.exp(2.0 - 0.3 * light - (0.5 + 2.0 * seg) * heavy))
    return clicks, p_unsub


def _draw(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "x3": rng.normal(size=n), "seg": rng.choice(["a", "b"], n)})
    arm = rng.permutation(np.arange(n) % 3)
    c, p = _means(x, arm)
    clicks = c + rng.normal(0, 0.5, n)
    unsub = (rng.random(n) < p).astype(float)
    retention = (0.5 + 0.3 * clicks - 1.0 * unsub + 0.2 * x["x2"].to_numpy()
                 + rng.normal(0, 0.3, n))
    return x.assign(arm=np.array(ARMS)[arm], clicks=clicks, unsub=unsub, retention=retention)


def _true_long(x: pd.DataFrame) -> np.ndarray:
    """True long-term effect of each arm vs control, (n, 3)."""
    c0, u0 = _means(x, np.zeros(len(x), dtype=int))
    out = [np.zeros(len(x))]
    for k in (1, 2):
        ck, uk = _means(x, np.full(len(x), k))
        out.append(0.3 * (ck - c0) - 1.0 * (uk - u0))
    return np.column_stack(out)


def test_policies_for_the_long_term_reach_the_oracle() -> None:
    """Seeds 0-2 (history 100+s, experiment 200+s, 12,000 units each): the policy on the
    index got 96%, 96%, 97% of the oracle's true long-term gain, the learned-proxy one 96%,
    95%, 96%, the hand-set weights 74%, 71%, 73%, and the best single arm 56%. At 6,000
    units the index's policy got 90-93%: the 90% bar needs the larger sample here."""
    hist_frame, frame = _draw(12_000, 100), _draw(12_000, 200)
    history = px.LoggedData.from_frame(hist_frame, SPEC)
    experiment = px.LoggedData.from_frame(frame, SHORT)
    truth = _true_long(frame)
    rows = np.arange(len(frame))
    oracle = truth.max(axis=1).mean()

    def gain(actions: np.ndarray) -> float:
        return float(truth[rows, actions].mean() / oracle)

    index = SurrogateIndex("retention", surrogates=["clicks", "unsub"], rounds=100).fit(history)
    data = index.transform(experiment, n_bootstrap=0)
    model = px.EffectModel(n_folds=2, base_params={"n_estimators": 100}, progress=False).fit(data)
    on_index = px.LinearPolicy(data.spec, weights={"retention~": 1.0}).choose(model.effects_)
    hand = px.LinearPolicy(data.spec, weights={"clicks": 1.0, "unsub": 1.0}).choose(model.effects_)
    hmodel = px.EffectModel(n_folds=2, base_params={"n_estimators": 100},
                            progress=False).fit(history)
    proxy = px.proxy_weights(hmodel, target="retention", n_bootstrap=10)
    learned = px.LinearPolicy(data.spec, weights=proxy.weights).choose(model.effects_)
    assert gain(on_index) >= 0.9 and gain(learned) >= 0.9, (gain(on_index), gain(learned))
    assert gain(hand) < 0.85  # the hand-set weights lose a sizable share in truth
    assert truth[rows, on_index].mean() > truth[rows, hand].mean() + 0.03

    # the optimizer starts from the learned weights: evaluated first, pooled with the search
    front = px.optimize_policies(model, data, budget=64, start=[proxy])
    assert front.meta["n_evaluations"] == 65
    first = front.meta.get("start_lifts")
    assert first is not None and len(first) == 1
    start_lift = px.evaluate_policy(px.LinearPolicy(data.spec, weights=proxy.weights), data,
                                    model)["retention~"]["lift"]
    assert first[0]["retention~"] == pytest.approx(start_lift, rel=1e-6, abs=1e-9)
    with pytest.raises(px.InvalidParameterError, match="the log does not have"):
        px.optimize_policies(model, data, budget=8, start=[{"ltv": 1.0}])
