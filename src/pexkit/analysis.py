"""The analyze job: log -> effects -> baseline and utility policies -> summary.

Kept apart from the CLI so that it can be called from Python and tested
without a terminal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation import PolicyValue, build_scores, evaluate_policy
from pexkit.policy import LinearPolicy

__all__ = ["AnalysisResult", "analyze"]


@dataclass
class AnalysisResult:
    """What :func:`analyze` produced."""

    data: LoggedData
    model: EffectModel
    ate: pd.DataFrame
    policies: dict[str, PolicyValue]
    summary: dict[str, Any]


def effect_columns(data: LoggedData) -> list[str]:
    """Names of the per-user effect columns, ``tau[treatment][outcome]``."""
    spec = data.spec
    return [f"tau[{a}][{o}]" for a in spec.arms[1:] for o in spec.outcome_names]


def analyze(
    data: LoggedData,
    *,
    learner: str = "auto",
    base: str = "lightgbm",
    n_folds: int = 3,
    random_state: int = 0,
    weights: dict[str, float] | None = None,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> AnalysisResult:
    """Fit effects and evaluate the baseline and utility policies.

    Parameters
    ----------
    data : LoggedData
    learner, base, n_folds, random_state
        Passed to :class:`EffectModel`.
    weights : dict, optional
        Utility weights per outcome (default: the spec's).
    out : path, optional
        Folder for ``summary.json`` and ``effects.parquet``.
    progress : bool or None
        Show progress bars.
    """
    spec = data.spec
    started = time.perf_counter()
    model = EffectModel(
        learner=learner, base=base, n_folds=n_folds, random_state=random_state,
        progress=progress,
    ).fit(data)
    fit_seconds = time.perf_counter() - started
    scores = build_scores(data, model)
    n = data.n_units
    policies: dict[str, PolicyValue] = {}
    for k, arm in enumerate(spec.arms):
        label = f"all {arm}"
        policies[label] = evaluate_policy(np.full(n, k), data, scores=scores)
    utility = LinearPolicy(spec, weights=weights)
    policies["utility"] = evaluate_policy(utility.choose(model.effects_), data, scores=scores)
    ate = model.ate()
    summary: dict[str, Any] = {
        "experiment": spec.name,
        "n_units": n,
        "arms": data.arm_counts,
        "sample_ratio_test": data.srm.to_dict() if data.srm else None,
        "fit_seconds": fit_seconds,
        "learner": learner,
        "base": base,
        "n_folds": n_folds,
        "learner_selection": model.selection_.to_dict(orient="records"),
        "ate": ate.to_dict(orient="records"),
        "utility_weights": utility.weights,
        "policies": {name: value.to_dict() for name, value in policies.items()},
    }
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        effects = pd.DataFrame(
            model.effects_[:, 1:, :].reshape(n, -1), columns=effect_columns(data)
        )
        effects.insert(0, "unit", data.unit_ids)
        effects.insert(1, "treatment", np.asarray(spec.arms)[data.treatment])
        effects.to_parquet(out_dir / "effects.parquet", index=False)
        spec.to_yaml(out_dir / "spec.yaml")
    return AnalysisResult(data, model, ate, policies, summary)
