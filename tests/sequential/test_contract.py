"""The external contract of DESIGN.md, section "Sequential decisions (offline RL)", verbatim."""

from __future__ import annotations

import numpy as np
import pandas as pd

import pexkit as px


def _log_frame(n_users: int = 300, days: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        hours, opens = 24.0, float(rng.poisson(2))
        country = rng.choice(["us", "br", "in"])
        for t in range(days):
            p_send = 0.3 if hours < 12 else 0.7
            send = rng.random() < p_send
            visits = float(rng.random() < 0.2 + 0.2 * send - 0.01 * opens)
            churned = int(send and rng.random() < 0.02)
            rows.append({"user": u, "t": t, "action": "send" if send else "none",
                         "p_logged": p_send if send else 1 - p_send, "visits": visits,
                         "pushes": float(send), "hours_since_push": hours, "opens_7d": opens,
                         "country": country, "churned": churned})
            hours = 0.0 if send else hours + 24
            opens = 0.8 * opens + visits
            if churned:
                break
    return pd.DataFrame(rows)


def test_design_contract() -> None:
    spec = px.SequentialSpec.from_dict({
        "name": "notif", "unit": "user", "time": "t",
        "action": {"column": "action", "actions": ["none", "send"]},
        "rewards": [{"name": "visits", "goal": "maximize", "weight": 1.0},
                    {"name": "pushes", "goal": "minimize", "weight": 0.1}],
        "state": {"numeric": ["hours_since_push", "opens_7d"], "categorical": ["country"]},
        "propensity": "p_logged",
        "done": "churned",
        "gamma": 0.9,
    })
    assert px.SequentialSpec.from_yaml(spec.to_yaml()) == spec
    df = _log_frame()
    df = df[(df.groupby("user")["t"].transform("size") > 1) | (df["churned"] == 1)]
    log = px.TransitionLog.from_frame(df, spec)
    for algorithm in ("cql", "ddqn", "fqi"):
        kwargs = {"steps": 300} if algorithm != "fqi" else {"iterations": 10}
        agent = px.OfflineAgent(algorithm=algorithm, random_state=0, **kwargs).fit(log)
        states_frame = df[["hours_since_push", "opens_7d", "country"]].head(50)
        actions = agent.choose(states_frame)
        assert isinstance(actions, np.ndarray) and actions.shape == (50,)
        assert set(np.unique(actions)) <= {0, 1}
        assert agent.q_values(states_frame).shape == (50, 2)
    for estimator in ("smis", "pdis", "wpdis", "dr", "fqe"):
        val = px.evaluate_sequential(agent, log, estimator=estimator, n_bootstrap=30)
        frame = val.to_frame()
        assert list(frame.index) == ["visits", "pushes", "utility"]
        assert {"value", "se", "ci_low", "ci_high"} <= set(frame.columns)
        assert np.all(frame["ci_low"] <= frame["ci_high"])
    # a callable states -> actions is a policy too
    val = px.evaluate_sequential(lambda s: (s["hours_since_push"] > 24).astype(int).to_numpy(),
                                 log, estimator="smis", n_bootstrap=30)
    # utility = visits - 0.1 pushes, in the estimate as in the spec
    assert abs(val.utility - (val["visits"] - 0.1 * val["pushes"])) < 1e-12
