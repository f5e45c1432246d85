"""A small tabular MDP with exact values: ground truth for the estimators' tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import pexkit as px

SPEC = {
    "name": "mdp",
    "unit": "user",
    "time": "t",
    "action": {"column": "action", "actions": ["none", "send"]},
    "rewards": [
        {"name": "visits", "goal": "maximize", "weight": 1.0},
        {"name": "pushes", "goal": "minimize", "weight": 0.3},
    ],
    "state": {"numeric": ["tired"], "categorical": ["kind"]},
    "propensity": "p",
    "done": "quit",
    "gamma": 0.9,
}


class TinyMDP:
    """S = 3 fatigue levels x 2 user kinds; send: +visits now, more fatigue, some quit."""

    S, A = 6, 2

    def __init__(self, horizon: int = 8) -> None:
        self.H = horizon
        # reward means r[s, a] for (visits, pushes)
        tired = np.array([0, 1, 2, 0, 1, 2])
        active = np.array([0, 0, 0, 1, 1, 1])
        self.tired, self.active = tired, active
        base = 0.2 + 0.4 * active - 0.07 * tired
        self.r = np.zeros((self.S, self.A, 2))
        self.r[:, 0, 0] = base
        self.r[:, 1, 0] = base + 0.5 - 0.2 * tired
        self.r[:, 1, 1] = 1.0
        self.quit = np.zeros((self.S, self.A))
        self.quit[:, 1] = 0.02 + 0.08 * tired
        # transitions between fatigue levels (same kind)
        self.P = np.zeros((self.S, self.A, self.S))
        for s in range(self.S):
            k, f = active[s], tired[s]
            up, down = min(f + 1, 2), max(f - 1, 0)
            self.P[s, 1, 3 * k + up] += 0.8
            self.P[s, 1, 3 * k + f] += 0.2
            self.P[s, 0, 3 * k + down] += 0.7
            self.P[s, 0, 3 * k + f] += 0.3
        self.d0 = np.array([0.3, 0.15, 0.05, 0.3, 0.15, 0.05])

    def states(self, s: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "tired": self.tired[s].astype(float),
                "kind": np.where(self.active[s] == 1, "active", "casual"),
            }
        )

    def table(self, policy: Any) -> np.ndarray:
        """(S, A) probabilities of a policy at every state."""
        from pexkit.sequential.policy import action_probabilities

        return action_probabilities(policy, self.states(np.arange(self.S)), self.A)

    def true_value(self, policy: Any, gamma: float = 0.9) -> np.ndarray:
        """Exact (visits, pushes) value over the horizon."""
        pi = self.table(policy)
        V = np.zeros((self.S, 2))
        for _ in range(self.H):
            cont = (1 - self.quit)[:, :, None] * np.einsum("sat,tr->sar", self.P, V)
            Q = self.r + gamma * cont
            V = np.einsum("sa,sar->sr", pi, Q)
        return np.asarray(self.d0 @ V)

    def log(self, n: int, seed: int, logging: Any) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        mu = self.table(logging)
        s = rng.choice(self.S, size=n, p=self.d0)
        alive = np.ones(n, dtype=bool)
        rows = []
        for t in range(self.H):
            idx = np.flatnonzero(alive)
            if idx.size == 0:
                break
            st = s[idx]
            a = (rng.random(idx.size) < mu[st, 1]).astype(int)
            visits = self.r[st, a, 0] + rng.normal(0, 0.3, idx.size)
            pushes = self.r[st, a, 1]
            quit_ = rng.random(idx.size) < self.quit[st, a]
            rows.append(
                pd.DataFrame(
                    {
                        "user": idx,
                        "t": t,
                        "action": np.where(a == 1, "send", "none"),
                        "p": mu[st, a],
                        "visits": visits,
                        "pushes": pushes,
                        "quit": quit_.astype(int),
                        "tired": self.tired[st].astype(float),
                        "kind": np.where(self.active[st] == 1, "active", "casual"),
                    }
                )
            )
            nxt = np.array(
                [rng.choice(self.S, p=self.P[x, aa]) for x, aa in zip(st, a, strict=True)]
            )
            s[idx] = nxt
            alive[idx[quit_]] = False
        return pd.concat(rows, ignore_index=True).sort_values(["user", "t"]).reset_index(drop=True)

    def transition_log(self, n: int, seed: int, logging: Any) -> px.TransitionLog:
        df = self.log(n, seed, logging)
        keep = df.groupby("user")["t"].transform("size") > 1
        keep |= df["quit"] == 1
        return px.TransitionLog.from_frame(df[keep], px.SequentialSpec.from_dict(SPEC))


def logging_policy(states: pd.DataFrame) -> np.ndarray:
    p_send = np.where(states["kind"] == "active", 0.3, 0.6) - 0.1 * states["tired"].to_numpy()
    return np.column_stack([1 - p_send, p_send])


def rest_when_tired(states: pd.DataFrame) -> np.ndarray:
    return (states["tired"].to_numpy() < 1).astype(int)
