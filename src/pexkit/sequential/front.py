"""A Pareto front of sequential policies over the rewards' weights.

Each point is an agent trained with one set of reward weights (e.g. sessions
vs notifications sent), its value per reward estimated off-policy with CIs.
The front, its hypervolume and the choice of a few candidates reuse
:mod:`pexkit.optimize` (``is_non_dominated``, ``hypervolume``,
``select_subset``); the baselines (the logging policy, and each action taken
always) are evaluated on the same bootstrap resamples for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit._progress import progress_bar
from pexkit.exceptions import InvalidParameterError
from pexkit.optimize.pareto import hypervolume, is_non_dominated
from pexkit.optimize.selection import select_subset
from pexkit.sequential.evaluate import SequentialValues, evaluate_sequential
from pexkit.sequential.log import TransitionLog
from pexkit.sequential.policy import one_hot

__all__ = ["SequentialFront", "default_weight_grid", "logging_probabilities", "sequential_front"]

FloatArray = NDArray[np.float64]


def logging_probabilities(log: TransitionLog) -> FloatArray:
    """(n, A) the logging policy at the logged states, as far as the log shows it.

    The logged action gets its propensity and the other actions share the rest
    evenly (exact with two actions). Importance weights are then 1: the
    estimators give the on-policy value of the logging policy.
    """
    n, A = log.n_decisions, log.n_actions
    p = log.propensity
    probs = np.repeat(((1.0 - p) / (A - 1))[:, None], A, axis=1)
    probs[np.arange(n), log.actions] = p
    return probs


def default_weight_grid(log: TransitionLog, n_points: int = 7) -> list[dict[str, float]]:
    """Weights that trace the trade-off: the first reward at its weight, the others scaled.

    Every reward after the first takes its spec weight times a factor from 0 to
    8 (geometric); a zero spec weight scales 0.01..1 of the first reward's weight.
    """
    spec = log.spec
    first = spec.rewards[0]
    factors = np.r_[0.0, np.geomspace(0.125, 8.0, max(n_points - 1, 1))]
    grid: list[dict[str, float]] = []
    for f in factors:
        w = {first.name: float(first.weight) or 1.0}
        for r in spec.rewards[1:]:
            base = float(r.weight) if r.weight > 0 else 0.1 * w[first.name]
            w[r.name] = float(f * base)
        grid.append(w)
    return grid


@dataclass
class SequentialFront:
    """Agents over reward weights with their off-policy values.

    Attributes
    ----------
    labels : list of str
        ``"policy i"`` for agents, then the baselines (``"logging"``, ``"always <action>"``).
    weights : list of dict
        Reward weights of each agent (empty for baselines).
    agents : list
        The trained agents (None for baselines).
    values : SequentialValues
        Off-policy estimates of every point (shared bootstrap resamples).
    on_front : ndarray of bool
        Agents not dominated by another agent or baseline (in every reward's value).
    candidate : ndarray of bool
        Chosen by :meth:`select`.
    """

    reward_names: tuple[str, ...]
    signs: FloatArray
    labels: list[str]
    weights: list[dict[str, float]]
    agents: list[Any]
    values: SequentialValues
    baseline: NDArray[np.bool_]
    on_front: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    candidate: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        obj = self.objectives
        nd = is_non_dominated(obj, deduplicate=False)
        self.on_front = nd & ~self.baseline
        if len(self.candidate) != len(self.labels):
            self.candidate = np.zeros(len(self.labels), dtype=bool)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def value(self) -> FloatArray:
        """(P, R) estimated value of each point per reward."""
        return np.stack([self.values[k].value[: len(self.reward_names)] for k in self.labels])

    @property
    def objectives(self) -> FloatArray:
        """Values times the goal signs (every column maximized)."""
        return self.value * self.signs

    @property
    def reference_point(self) -> FloatArray:
        """Per reward, the worst baseline's value (the hypervolume's corner)."""
        base = self.objectives[self.baseline] if self.baseline.any() else self.objectives
        return np.asarray(base.min(axis=0) * self.signs)

    def hypervolume(self, reference_point: FloatArray | None = None) -> float:
        """Hypervolume dominated by the front's agents above the reference (values)."""
        ref = self.reference_point if reference_point is None else np.asarray(reference_point)
        if not self.on_front.any():
            return 0.0
        return hypervolume(self.objectives[self.on_front], ref * self.signs)

    def select(self, q: int = 3) -> list[int]:
        """Indices of q front agents whose subset has the largest hypervolume; marks them."""
        pool = [int(i) for i in np.flatnonzero(self.on_front)]
        if not pool:
            raise InvalidParameterError("no agent is on the front; nothing to select.")
        picked = select_subset(
            self.objectives[pool], self.reference_point * self.signs, min(q, len(pool))
        )
        idx = [pool[j] for j in picked]
        self.candidate = np.zeros(len(self.labels), dtype=bool)
        self.candidate[idx] = True
        return idx

    def to_frame(self) -> pd.DataFrame:
        """One row per (point, reward or utility): label, weights, value, CI, on_front."""
        frame = self.values.to_frame().rename(columns={"policy": "label"})
        info = pd.DataFrame(
            {
                "label": self.labels,
                "weights": [", ".join(f"{k}={v:g}" for k, v in w.items()) for w in self.weights],
                "baseline": self.baseline,
                "on_front": self.on_front,
                "candidate": self.candidate,
            }
        )
        return frame.merge(info, on="label", how="left")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (no agents): rewards, reference point, hypervolume, and every point."""
        points = []
        for i, lab in enumerate(self.labels):
            v = self.values[lab]
            points.append(
                {
                    "label": lab,
                    "weights": self.weights[i],
                    "baseline": bool(self.baseline[i]),
                    "on_front": bool(self.on_front[i]),
                    "candidate": bool(self.candidate[i]),
                    "value": dict(zip(v.names, v.value.tolist(), strict=True)),
                    "ci": {
                        n: [lo, hi]
                        for n, lo, hi in zip(
                            v.names, v.ci_low.tolist(), v.ci_high.tolist(), strict=True
                        )
                    },
                }
            )
        return {
            "rewards": list(self.reward_names),
            "reference_point": dict(
                zip(self.reward_names, self.reference_point.tolist(), strict=True)
            ),
            "hypervolume": self.hypervolume(),
            "points": points,
            **({"meta": self.meta} if self.meta else {}),
        }


def sequential_front(
    log: TransitionLog,
    weights: Sequence[Mapping[str, float]] | None = None,
    *,
    algorithm: str = "fqi",
    estimator: str = "dr",
    n_points: int = 7,
    epsilon: float = 0.0,
    n_bootstrap: int = 200,
    random_state: int = 0,
    agent_options: Mapping[str, Any] | None = None,
    eval_log: TransitionLog | None = None,
    progress: bool | None = None,
) -> SequentialFront:
    """Train an agent per set of reward weights and estimate each one's value per reward.

    Parameters
    ----------
    log : TransitionLog
    weights : list of {reward: weight}, optional
        Default :func:`default_weight_grid` (``n_points`` of them).
    algorithm : {"fqi", "cql", "ddqn"}
        ``"fqi"`` (the cheapest) by default.
    estimator : str
        Off-policy estimator of every point (default ``"dr"``).
    epsilon : float
        Evaluate the agents with this much exploration (what they would serve with).
    agent_options : mapping, optional
        Options of every agent.
    eval_log : TransitionLog, optional
        Estimate the points on this log (other units than ``log``, which trains
        the agents): estimates on the training units favour the agents.
    """
    from pexkit.sequential.agents import OfflineAgent

    grid = [
        dict(w) for w in (weights if weights is not None else default_weight_grid(log, n_points))
    ]
    if not grid:
        raise InvalidParameterError("'weights' is empty; give at least one set of reward weights.")
    spec = log.spec
    agents: list[Any] = []
    with progress_bar(len(grid), f"front ({algorithm})", progress) as bar:
        for w in grid:
            agents.append(
                OfflineAgent(
                    algorithm=algorithm,
                    weights=w,
                    random_state=random_state,
                    **dict(agent_options or {}),
                ).fit(log, progress=False)
            )
            bar.advance()
    target = log if eval_log is None else eval_log
    # agents as they would serve (with epsilon), the baselines as they are
    policies: dict[str, Any] = {
        f"policy {i + 1}": a.probabilities(target.states, epsilon=epsilon)
        for i, a in enumerate(agents)
    }
    n, A = target.n_decisions, target.n_actions
    policies["logging"] = logging_probabilities(target)
    for a, label in enumerate(spec.actions):
        policies[f"always {label}"] = one_hot(np.full(n, a), A)
    values = evaluate_sequential(
        policies,
        target,
        estimator,
        epsilon=0.0,
        n_bootstrap=n_bootstrap,
        random_state=random_state,
        progress=progress,
    )
    n_base = len(policies) - len(agents)
    labels = list(policies)
    return SequentialFront(
        reward_names=spec.reward_names,
        signs=np.array([r.sign for r in spec.rewards]),
        labels=labels,
        weights=grid + [{} for _ in range(n_base)],
        agents=agents + [None] * n_base,
        values=values,
        baseline=np.r_[np.zeros(len(agents), dtype=bool), np.ones(n_base, dtype=bool)],
        meta={"algorithm": algorithm, "estimator": estimator, "epsilon": epsilon},
    )
