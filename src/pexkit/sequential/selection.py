"""Choosing an agent's hyperparameters by off-policy estimates, not by a simulator.

The notification papers tune CQL's penalty, the discount and the training
length by the state-marginalized importance sampling estimate of each trained
policy. Here the log's units are split in two: every configuration is trained
on one part and evaluated on the other (so a policy is never scored on the
decisions it was fitted to), the configuration with the best criterion is
chosen, and it is refitted on the whole log.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pexkit._progress import progress_bar
from pexkit.exceptions import InvalidParameterError
from pexkit.sequential.evaluate import ESTIMATORS, SequentialValue, evaluate_sequential
from pexkit.sequential.log import TransitionLog

__all__ = ["AgentSelection", "split_units", "tune_agent"]


def split_units(log: TransitionLog, share: float, seed: int) -> tuple[TransitionLog, TransitionLog]:
    """Two logs of disjoint units: ``share`` of the units in the first."""
    units = log.episode_units
    n_units = int(units.max()) + 1
    rng = np.random.default_rng(seed)
    first = rng.random(n_units) < share
    episodes = np.arange(log.n_episodes)
    a, b = episodes[first[units]], episodes[~first[units]]
    if a.size == 0 or b.size == 0:
        raise InvalidParameterError(
            f"the log has {n_units} units; too few to split for selection. Log more units."
        )
    return log.subset(a), log.subset(b)


@dataclass
class AgentSelection:
    """The outcome of :func:`tune_agent`.

    Attributes
    ----------
    agent : OfflineAgent
        The chosen configuration, refitted on the whole log (or as trained on
        the training part when ``refit=False``).
    best : dict
        Its options.
    table : DataFrame
        One row per configuration: the options, the held-out estimate of the
        utility with its CI, and ``chosen``.
    """

    agent: Any
    best: dict[str, Any]
    table: pd.DataFrame
    values: list[SequentialValue]


def _grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    for k in keys:
        if isinstance(grid[k], str) or not isinstance(grid[k], Sequence) or not grid[k]:
            raise InvalidParameterError(
                f"grid[{k!r}] must be a non-empty list of values to try; got {grid[k]!r}."
            )
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))
    ]


def tune_agent(
    log: TransitionLog,
    grid: Mapping[str, Sequence[Any]],
    *,
    algorithm: str = "cql",
    estimator: str = "smis",
    criterion: str = "lower",
    holdout: float = 0.5,
    refit: bool = True,
    random_state: int = 0,
    progress: bool | None = None,
    **fixed: Any,
) -> AgentSelection:
    """Train one agent per configuration and keep the best by its off-policy estimate.

    Parameters
    ----------
    log : TransitionLog
    grid : mapping
        Option name -> values to try, e.g. ``{"alpha": [0.1, 1, 5], "gamma": [0.8, 0.9]}``.
        ``gamma`` here is the training discount; the estimates always use the
        spec's (the objective).
    algorithm : {"cql", "ddqn", "fqi"}
    estimator : str
        Off-policy estimator (default ``"smis"``, the papers').
    criterion : {"lower", "value"}
        Rank by the CI's lower bound (prefers estimates one can trust) or by the estimate.
    holdout : float
        Share of units held out for the estimates.
    refit : bool
        Refit the chosen configuration on the whole log.
    **fixed
        Options passed to every configuration (e.g. ``steps=3000``).
    """
    from pexkit.sequential.agents import OfflineAgent

    if estimator not in ESTIMATORS:
        raise InvalidParameterError(
            f"'estimator' must be one of {list(ESTIMATORS)}; got {estimator!r}."
        )
    if criterion not in ("lower", "value"):
        raise InvalidParameterError(f"'criterion' must be 'lower' or 'value'; got {criterion!r}.")
    if not 0.0 < float(holdout) < 1.0:
        raise InvalidParameterError(f"'holdout' must be in (0, 1); got {holdout!r}.")
    configs = _grid(grid)
    train, test = split_units(log, 1.0 - float(holdout), random_state)
    agents, values = [], []
    with progress_bar(len(configs), f"tuning {algorithm}", progress) as bar:
        for cfg in configs:
            opts = {**fixed, **cfg}
            agent = OfflineAgent(algorithm=algorithm, random_state=random_state, **opts)
            agent.fit(train, progress=False)
            agents.append(agent)
            values.append(evaluate_sequential(agent, test, estimator, random_state=random_state))
            bar.advance()
    score = np.array([v.ci_low[-1] if criterion == "lower" else v.value[-1] for v in values])
    best = int(np.argmax(score))
    rows = []
    for i, (cfg, v) in enumerate(zip(configs, values, strict=True)):
        rows.append(
            {
                **cfg,
                "utility": v.value[-1],
                "ci_low": v.ci_low[-1],
                "ci_high": v.ci_high[-1],
                "ess": v.ess,
                "chosen": i == best,
            }
        )
    chosen = agents[best]
    if refit:
        chosen = OfflineAgent(
            algorithm=algorithm,
            random_state=random_state,
            **{**fixed, **configs[best]},
        ).fit(log, progress=False)
    return AgentSelection(chosen, dict(configs[best]), pd.DataFrame(rows), values)
