"""AUUC (area between the uplift curve and random) with CIs, and covariate balance."""

from __future__ import annotations

import numpy as np
import pandas as pd

import pexkit as px
from pexkit.data import balance
from pexkit.effects.diagnostics import auuc, auuc_table, uplift_curve

FAST = {"n_estimators": 30, "num_leaves": 15}


def _log(n: int, seed: int, hetero: float) -> tuple[px.LoggedData, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    t = rng.integers(0, 2, n)
    tau = 0.3 + hetero * x[:, 0]
    y = x[:, 1] + t * tau + rng.normal(size=n)
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(t=t, y=y)
    spec = px.ExperimentSpec(treatment="t", arms=[0, 1], outcomes=["y"], numeric=["a", "b", "c"])
    return px.LoggedData.from_frame(df, spec), tau


def test_auuc_is_the_area_between_the_uplift_curve_and_random() -> None:
    data, _ = _log(3000, 0, 1.0)
    model = px.EffectModel(learner="t", n_folds=2, base_params=FAST).fit(data)
    n = data.n_units
    curve = uplift_curve(model, 1, 0, n_points=n)  # the curve at every unit
    area = float((curve["gain"] - curve["random"]).to_numpy()[1:].sum() / n)
    assert abs(auuc(model, 1, 0)["auuc"] - area) < 1e-12
    table = auuc_table(model)
    assert list(table.columns[:3]) == ["treatment", "outcome", "auuc"] and len(table) == 1


def test_auuc_ci_covers_the_truth_of_its_ranking() -> None:
    # given the model's (cross-fitted) ranking, the true area uses the true effects in
    # that order; 40 seeded logs, half with heterogeneity and half without (truth 0)
    hits, signif = 0, []
    for seed in range(40):
        hetero = 1.0 if seed % 2 else 0.0
        data, tau = _log(1500, 100 + seed, hetero)
        model = px.EffectModel(learner="t", n_folds=2, base_params=FAST,
                               random_state=seed).fit(data)
        res = auuc(model, 1, 0)
        n = data.n_units
        order = np.argsort(-model.effects_[:, 1, 0], kind="stable")
        rank = np.empty(n)
        rank[order] = np.arange(1, n + 1)
        truth = float(np.mean(tau * ((n + 1) / 2 - rank) / n))
        hits += res["ci_low"] <= truth <= res["ci_high"]
        if hetero:
            signif.append(res["ci_low"] > 0)
    # 40 draws at 95%: at least 35 (the 1st percentile of Binomial(40, 0.95) is 35)
    assert hits >= 35
    assert np.mean(signif) >= 0.9  # strong heterogeneity is detected


def test_balance_flags_a_feature_that_drove_assignment() -> None:
    rng = np.random.default_rng(5)
    n = 6000
    age = rng.normal(40, 10, n)
    plan = rng.choice(["free", "pro"], n, p=[0.7, 0.3])
    # assignment depends on age: older units were treated more often
    t = (rng.random(n) < 1 / (1 + np.exp(-(age - 40) / 10))).astype(int)
    df = pd.DataFrame({"t": t, "age": age, "noise": rng.normal(size=n), "plan": plan,
                       "y": rng.normal(size=n)})
    spec = px.ExperimentSpec(treatment="t", arms=[0, 1], outcomes=["y"],
                             numeric=["age", "noise"], categorical=["plan"])
    table = balance(px.LoggedData.from_frame(df, spec, warn_srm=False))
    row = table[table.feature == "age"].iloc[0]
    a1, a0 = age[t == 1], age[t == 0]
    expected = (a1.mean() - a0.mean()) / np.sqrt((a1.var() + a0.var()) / 2)
    assert abs(row["smd"] - expected) < 1e-9 and row["imbalanced"]
    assert not table[table.feature == "noise"].iloc[0]["imbalanced"]
    assert set(table[table.feature == "plan"]["level"]) == {"free", "pro"}
    assert table["smd"].abs().is_monotonic_decreasing
