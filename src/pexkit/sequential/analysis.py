"""analyze_sequential: the whole offline job on a decision log, in one call.

Train the agent (optionally choosing its hyperparameters by held-out
off-policy estimates), estimate it against the logging policy, each action
taken always, and the myopic one-step policy (the same learner with gamma 0)
on shared bootstrap resamples, trace the front over reward weights, and write
summary.json, agent.json and report.html.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pexkit.exceptions import InvalidParameterError
from pexkit.sequential.evaluate import SequentialValues, evaluate_sequential
from pexkit.sequential.front import SequentialFront, logging_probabilities, sequential_front
from pexkit.sequential.log import TransitionLog
from pexkit.sequential.policy import one_hot
from pexkit.sequential.selection import AgentSelection, split_units, tune_agent

__all__ = ["SequentialAnalysis", "analyze_sequential"]

#: the grid tune=True searches (CQL's penalty and the training discount), per algorithm
TUNE_GRID: dict[str, dict[str, list[Any]]] = {
    "cql": {"alpha": [0.1, 1.0, 4.0], "gamma": [0.8, 0.9]},
    "ddqn": {"steps": [1000, 3000]},
    "fqi": {"num_leaves": [7, 31]},
}


@dataclass
class SequentialAnalysis:
    """What :func:`analyze_sequential` found.

    Attributes
    ----------
    agent : OfflineAgent
    values : SequentialValues
        The agent (served with ``epsilon``), the logging policy, ``always
        <action>`` for each action and ``myopic``, on shared resamples.
    front : SequentialFront or None
    selection : AgentSelection or None
    summary : dict
        JSON-ready: the log, every policy's value per reward with CIs, the
        agent's difference from the logging policy, the front.
    """

    log: TransitionLog
    agent: Any
    values: SequentialValues
    front: SequentialFront | None
    selection: AgentSelection | None
    summary: dict[str, Any] = field(default_factory=dict)

    def comparison(self) -> pd.DataFrame:
        """Every policy per reward: value and CI, and the difference from the logging policy."""
        frame = self.values.to_frame()
        diffs = []
        for name in self.values:
            d = self.values.difference(name, "logging").reset_index()
            d = d.rename(
                columns={
                    "value": "vs_logging",
                    "se": "vs_logging_se",
                    "ci_low": "vs_logging_ci_low",
                    "ci_high": "vs_logging_ci_high",
                }
            )
            diffs.append(d.assign(policy=name))
        return frame.merge(pd.concat(diffs, ignore_index=True), on=["policy", "reward"])


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def analyze_sequential(
    log: TransitionLog,
    *,
    algorithm: str = "cql",
    estimator: str = "dr",
    epsilon: float = 0.05,
    tune: bool = False,
    grid: Mapping[str, Sequence[Any]] | None = None,
    front: bool = True,
    front_points: int = 6,
    holdout: float = 0.5,
    n_bootstrap: int = 200,
    random_state: int = 0,
    agent_options: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> SequentialAnalysis:
    """Train, evaluate and compare a sequential policy on a decision log.

    Parameters
    ----------
    log : TransitionLog
    algorithm : {"cql", "ddqn", "fqi"}
    estimator : {"dr", "smis", "wpdis", "pdis", "fqe"}
        The off-policy estimator of every comparison.
    epsilon : float
        The agent is evaluated as it would serve: with this much exploration.
    tune : bool
        Choose the agent's hyperparameters by held-out estimates
        (:func:`~pexkit.sequential.selection.tune_agent`, criterion: the CI's
        lower bound) over ``grid`` (default :data:`TUNE_GRID`).
    front : bool
        Trace the front over reward weights (FQI agents, the cheapest).
    holdout : float
        Share of units held out: the agents learn from the others and every
        estimate is made on these (estimates on the units an agent learned
        from flatter it). 0 trains and estimates on every unit.
    out : path, optional
        Folder for summary.json, agent.json and report.html.
    """
    from pexkit.sequential.agents import OfflineAgent

    if not isinstance(log, TransitionLog):
        raise InvalidParameterError(
            f"'log' must be a TransitionLog; got {type(log).__name__}. Build it with "
            "px.TransitionLog.from_frame(df, spec)."
        )
    if not 0.0 <= float(holdout) < 1.0:
        raise InvalidParameterError(f"'holdout' must be in [0, 1); got {holdout!r}.")
    options = dict(agent_options or {})
    train, test = split_units(log, 1.0 - holdout, random_state) if holdout > 0 else (log, log)
    selection = None
    if tune:
        selection = tune_agent(
            train,
            grid or TUNE_GRID.get(algorithm, {}),
            algorithm=algorithm,
            random_state=random_state,
            progress=progress,
            **options,
        )
        agent = selection.agent
    else:
        agent = OfflineAgent(algorithm=algorithm, random_state=random_state, **options)
        agent.fit(train, progress=progress)
    myopic = OfflineAgent(algorithm="fqi", gamma=0.0, random_state=random_state)
    myopic.fit(train, progress=False)
    n, A = test.n_decisions, test.n_actions
    policies: dict[str, Any] = {
        "agent": agent.probabilities(test.states, epsilon=epsilon),
        "logging": logging_probabilities(test),
    }
    for a, label in enumerate(log.spec.actions):
        policies[f"always {label}"] = one_hot(np.full(n, a), A)
    policies["myopic"] = myopic.probabilities(test.states, epsilon=epsilon)
    values = evaluate_sequential(
        policies,
        test,
        estimator,
        n_bootstrap=n_bootstrap,
        random_state=random_state,
        progress=progress,
    )
    tradeoff = None
    if front:
        tradeoff = sequential_front(
            train,
            algorithm="fqi",
            estimator=estimator,
            n_points=front_points,
            epsilon=epsilon,
            n_bootstrap=n_bootstrap,
            random_state=random_state,
            eval_log=test,
            progress=progress,
        )
        tradeoff.select(3)
    result = SequentialAnalysis(test, agent, values, tradeoff, selection)
    spec = log.spec
    comp = result.comparison()
    result.summary = _jsonable(
        {
            "experiment": spec.name,
            "kind": "sequential",
            "decisions": log.n_decisions,
            "trained_on_units": int(train.episode_units.max()) + 1,
            "estimated_on_units": int(test.episode_units.max()) + 1,
            "holdout": holdout,
            "episodes": log.n_episodes,
            "units": int(log.episode_units.max()) + 1,
            "actions": list(spec.actions),
            "rewards": [{"name": r.name, "goal": r.goal, "weight": r.weight} for r in spec.rewards],
            "gamma": spec.gamma,
            "propensity": log.propensity_info,
            "estimator": estimator,
            "epsilon": epsilon,
            "agent": {
                "algorithm": agent.algorithm,
                "options": agent.options,
                "selection": None
                if selection is None
                else selection.table.to_dict(orient="records"),
            },
            "policies": comp.to_dict(orient="records"),
            "front": None if tradeoff is None else tradeoff.to_dict(),
        }
    )
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(result.summary, indent=2, default=float))
        agent.save(folder / "agent.json")
        from pexkit.report.sequential import write_sequential_report

        write_sequential_report(result, folder / "report.html")
    return result
