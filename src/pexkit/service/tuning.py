"""Online multi-objective tuning of policy parameters with Ax (``ax.Client``).

Each arm of the tune phase is one Ax trial whose parameters are a linear
policy's flat vector (``LinearPolicy.to_vector``: weights relative to the first
outcome, then biases). The offline front's candidates are attached as the first
trials; each round completes the running trials with the arms' online means and
standard errors (long-term outcomes included) and asks Ax for the next arms,
within bounds taken from the offline front. The Ax state is kept as JSON in the
event store, so tuning survives restarts and any worker can run the next round.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from pexkit.policy.linear import LinearPolicy
from pexkit.spec.spec import ExperimentSpec

__all__ = ["OnlineTuner"]


def _names(spec: ExperimentSpec) -> list[str]:
    w = [f"w_{o}" for o in spec.outcome_names[1:]]
    b = [f"b_{a}_{o}" for a in spec.arms[1:] for o in spec.outcome_names]
    return [n.replace(" ", "_").replace("-", "_") for n in w + b]


class OnlineTuner:
    """An ``ax.Client`` over the policy vector of one spec."""

    def __init__(self, client: Any, spec: ExperimentSpec) -> None:
        self.client = client
        self.spec = spec

    @classmethod
    def create(
        cls, spec: ExperimentSpec, bounds: list[list[float]], objectives: dict[str, str],
        seed: int = 0,
    ) -> OnlineTuner:
        from ax import Client
        from ax.api.configs import RangeParameterConfig

        names = _names(spec)
        client = Client(random_seed=seed)
        client.configure_experiment(
            name="pexkit_online_tuning",
            parameters=[
                RangeParameterConfig(name=n, bounds=(float(lo), float(hi)), parameter_type="float")
                for n, (lo, hi) in zip(names, bounds, strict=True)
            ],
        )
        objective = ", ".join(("-" if goal == "minimize" else "") + o for o, goal in objectives.items())
        client.configure_optimization(objective=objective)
        # qLogNParEGO: the same acquisition as the offline search; Ax's default for
        # <= 4 objectives (qLogNEHVI) took ~50 s per round here with 4 objectives.
        from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
        from ax.api.utils.structs import GenerationStrategyDispatchStruct
        from botorch.acquisition.multi_objective.parego import qLogNParEGO

        client.set_generation_strategy(
            choose_generation_strategy(
                GenerationStrategyDispatchStruct(
                    method="fast", initialization_budget=0,
                    use_existing_trials_for_initialization=True,
                    min_observed_initialization_trials=1,
                    allow_exceeding_initialization_budget=True,
                ),
                botorch_acqf_class=qLogNParEGO if len(objectives) > 1 else None,
            )
        )
        return cls(client, spec)

    def attach(self, policy: LinearPolicy) -> int:
        names = _names(self.spec)
        vec = policy.to_vector()
        return int(self.client.attach_trial(
            parameters={n: float(v) for n, v in zip(names, vec, strict=True)}
        ))

    def complete(self, trial: int, metrics: dict[str, Any], objectives: list[str]) -> None:
        raw = {o: (float(metrics[o]["mean"]), float(metrics[o]["sem"])) for o in objectives}
        self.client.complete_trial(trial_index=int(trial), raw_data=raw)

    def next(self, q: int) -> list[tuple[int, LinearPolicy]]:
        names = _names(self.spec)
        trials = self.client.get_next_trials(max_trials=q)
        return [
            (int(idx), LinearPolicy.from_vector(self.spec, [float(p[n]) for n in names]))
            for idx, p in trials.items()
        ]

    def dump(self) -> dict[str, Any]:
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            self.client.save_to_json_file(path)
            with open(path, encoding="utf-8") as fh:
                blob = fh.read()
        finally:
            os.unlink(path)
        return {"client": blob, "spec": self.spec.to_dict()}

    @classmethod
    def load(cls, dumped: dict[str, Any]) -> OnlineTuner:
        from ax import Client

        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumped["client"])
        try:
            client = Client.load_from_json_file(path)
        finally:
            os.unlink(path)
        return cls(client, ExperimentSpec.from_dict(dumped["spec"]))
