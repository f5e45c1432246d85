"""The analyze job: log -> effects -> baseline and utility policies -> summary.

Kept apart from the CLI so that it can be called from Python and tested
without a terminal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation import PolicyValue, build_scores, evaluate_policy
from pexkit.evaluation.personalization import lifts_vs_arm, personalization_value
from pexkit.exceptions import InvalidParameterError
from pexkit.execution import is_distributed
from pexkit.optimize import Guardrail, ParetoFront, optimize_policies
from pexkit.optimize.search import get_method
from pexkit.policy import LinearPolicy

if TYPE_CHECKING:
    from pexkit.longterm import SurrogateIndex

__all__ = ["AnalysisResult", "analyze"]


@dataclass
class AnalysisResult:
    """What :func:`analyze` produced."""

    data: LoggedData
    model: EffectModel
    ate: pd.DataFrame
    policies: dict[str, PolicyValue]
    summary: dict[str, Any]
    front: ParetoFront | None = None
    candidates: ParetoFront | None = None


def effect_columns(data: LoggedData) -> list[str]:
    """Names of the per-user effect columns, ``tau[treatment][outcome]``."""
    spec = data.spec
    return [f"tau[{a}][{o}]" for a in spec.arms[1:] for o in spec.outcome_names]


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def longterm_block(index: SurrogateIndex, data: LoggedData,
                   policies: dict[str, Any] | None = None) -> dict[str, Any]:
    """``summary["longterm"]``'s entry for one fitted index on its transformed log.

    ``target``, ``outcome`` (the index's name), ``diagnostics`` (r2, n_history,
    the surrogacy check per arm), ``ate`` (per arm: estimate, se = hypot of
    se_sampling and se_index, 95% CI), ``trusted`` (every arm passes the check),
    ``note`` (a one-sentence verdict) and ``policy_lift`` (each evaluated
    policy's DR lift on the index, from ``policies``: the summary's policies).
    """
    diag = index.diagnostics()
    target = index.target
    failed = [a for a in diag["arms"] if not a["surrogacy_ok"]]
    if failed:
        arms = " and ".join(str(a["treatment"]) for a in failed)
        ps = (_p_text(failed[0]["direct_effect_p"]) if len(failed) == 1 else ", ".join(
            f"{a['treatment']} {_p_text(a['direct_effect_p'])}" for a in failed))
        note = (f"the surrogacy check found a direct effect of {arms} on {target} that the "
                f"short-term outcomes do not carry ({ps}): do not trust the long-term "
                f"estimate for {arms}")
    else:
        note = (f"the surrogacy check found no effect of any arm on {target} beyond what the "
                f"short-term outcomes carry (on {diag['n_history']:,} earlier units; it cannot "
                "prove there is none): the long-term estimate holds if surrogacy does")
    if diag["r2"] < 0.1:
        note += f"; the index explains little of {target} (r2 {diag['r2']:.2f})"
    lifts = {}
    for name, value in (policies or {}).items():
        entry = value.get("outcomes", {}).get(index.name) if isinstance(value, dict) else None
        if entry is not None:
            lifts[name] = {k: entry[k] for k in ("lift", "lift_se", "lift_ci_low", "lift_ci_high")
                           if k in entry}
    return {
        "target": target,
        "outcome": index.name,
        "goal": index.goal_,
        "diagnostics": diag,
        "ate": index.ate(data).to_dict(orient="records"),
        "trusted": not failed,
        "note": note,
        "policy_lift": lifts,
    }


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
    optimize: bool = True,
    method: str = "sobol",
    budget: int | None = None,
    n_candidates: int = 4,
    biases: bool = True,
    guardrails: tuple[Guardrail, ...] = (),
    surrogates: Sequence[SurrogateIndex] = (),
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
        Folder for ``summary.json``, ``effects.parquet``, ``policies.json`` and
        ``report.html``.
    progress : bool or None
        Show progress bars.
    optimize : bool
        Search the policy space for a Pareto front (and write the report).
    method, budget, biases, guardrails
        Passed to :func:`pexkit.optimize_policies`.
    n_candidates : int
        Policies picked from the front for the online test.
    surrogates : sequence of SurrogateIndex
        Fitted surrogate indices whose outcomes ``data`` carries (``data`` went
        through each one's ``transform``): ``summary["longterm"]`` gets one block
        per index (its diagnostics, the long-term effect per arm with a CI that
        includes the index's error, the surrogacy verdict), and the report a
        "Long-term outcomes" section.
    """
    spec = data.spec
    if surrogates and is_distributed(data):
        raise InvalidParameterError(
            "'surrogates': not supported on a cluster log (the index's effects are computed in "
            "one process); found a distributed log. Analyze a local LoggedData instead."
        )
    for index in surrogates:  # before the (long) fit
        if index.name not in spec.outcome_names:
            raise InvalidParameterError(
                f"'surrogates': expected the log to carry the index's outcome {index.name!r} "
                f"(pass index.transform(data)); found the outcomes {list(spec.outcome_names)}."
            )
        index.diagnostics()  # NotFittedError before the fit, not after it
    if optimize:  # fail on a bad option before the (long) fit, not after it
        get_method(method)
        for guard in guardrails:
            spec.outcome_index(guard.outcome)
    started = time.perf_counter()
    model = EffectModel(
        learner=learner, base=base, n_folds=n_folds, random_state=random_state,
        progress=progress,
    ).fit(data)
    fit_seconds = time.perf_counter() - started
    n = data.n_units
    on_cluster = is_distributed(data)
    policies: dict[str, PolicyValue] = {}
    utility = LinearPolicy(spec, weights=weights)
    if on_cluster:  # sums over the parts, where they live
        from pexkit.execution.dask import single_treatment_values

        for arm, value in zip(spec.arms, single_treatment_values(model, cast(Any, data)),
                              strict=True):
            policies[f"all {arm}"] = value
        policies["utility"] = evaluate_policy(utility, data, model)
    else:
        scores = build_scores(data, model)
        for k, arm in enumerate(spec.arms):
            policies[f"all {arm}"] = evaluate_policy(np.full(n, k), data, scores=scores)
        policies["utility"] = evaluate_policy(utility.choose(model.effects_), data, scores=scores)
    ate = model.ate()
    summary: dict[str, Any] = {
        "experiment": spec.name,
        "n_units": n,
        "arms": data.arm_counts,
        "outcome_rows": (data.outcome_rows if isinstance(data, LoggedData)
                         else dict.fromkeys(spec.outcome_names, n)),
        "sample_ratio_test": data.srm.to_dict() if data.srm else None,
        "propensity_diagnostics": getattr(data, "propensity_diagnostics", None),
        "fit_seconds": fit_seconds,
        "learner": learner,
        "base": base,
        "n_folds": n_folds,
        "learner_selection": model.selection_.to_dict(orient="records"),
        "ate": ate.to_dict(orient="records"),
        "utility_weights": utility.weights,
        "utility": utility.utility_text(),
        "utility_weights_source": (
            "given" if weights is not None else "spec" if spec.weights_given else "default"
        ),
        "utility_note": (
            spec.default_weights_note() if weights is None and not spec.weights_given else None
        ),
        "policies": {name: value.to_dict() for name, value in policies.items()},
        "guardrails": [{"outcome": g.outcome, "max_change": g.max_change, "bound": g.bound}
                       for g in guardrails],
    }
    if surrogates:
        from pexkit._progress import progress_bar

        blocks = []
        with progress_bar(len(surrogates), "long-term effects (index refits)",
                          enabled=progress) as bar:
            for index in surrogates:
                blocks.append(longterm_block(index, data, summary["policies"]))
                bar.advance()
        summary["longterm"] = blocks
    front = candidates = None
    if optimize:
        front = optimize_policies(
            model, data, method=method, budget=budget, biases=biases,
            guardrails=guardrails, random_state=random_state, progress=progress,
        )
        n_on = int(front.on_front.sum())
        candidates = front.select(min(n_candidates, n_on), include_single=False) if n_on else None
        if candidates is not None:
            front.mark_candidates(candidates)
        summary["front"] = {
            "method": method,
            "budget": int(front.meta["n_evaluations"]),
            "hypervolume": front.hypervolume(),
            "n_on_front": n_on,
            "candidates": list(candidates.labels) if candidates is not None else [],
            "candidates_note": candidates.meta.get("distinct") if candidates is not None else None,
            "seconds": front.meta["seconds"],
        }
    if not on_cluster:
        named = {"utility": utility}
        if candidates is not None:
            named.update({label: candidates.policy(label) for label in candidates.labels})
        summary["personalization"] = personalization_value(data, model, named, utility, scores)
        if front is not None:  # every front policy against the best single treatment
            best = spec.treatment_index(summary["personalization"]["best_single"])
            for part in (front, candidates):
                if part is not None:
                    lift, se = lifts_vs_arm(part.policies, data, model, best, scores)
                    part.meta["vs_best_single"] = {"arm": spec.arms[best], "lift": lift,
                                                   "lift_se": se}
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        if on_cluster:
            from pexkit.execution.dask import write_effects

            (out_dir / "effects").mkdir(exist_ok=True)
            write_effects(model, str(out_dir / "effects"), effect_columns(data))
            summary["effects"] = "effects/ (one Parquet file per part, written by the workers)"
            summary["report"] = ("not written on a cluster: the report plots per-unit data in "
                                 "one process; its policy tree and segments are below")
            from pexkit.explain import distill, segments

            summary["policy_tree"] = distill(utility, model, data, max_depth=2).to_dict()
            summary["segments"] = segments(model, data, max_depth=2).to_dict()
            (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
            spec.to_yaml(out_dir / "spec.yaml")
            if front is not None:
                front.save(out_dir / "policies.json")
            return AnalysisResult(data, model, ate, policies, summary, front, candidates)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        effects = pd.DataFrame(
            model.effects_[:, 1:, :].reshape(n, -1), columns=effect_columns(data)
        )
        effects.insert(0, "unit", data.unit_ids)
        effects.insert(1, "treatment", np.asarray(spec.arms)[data.treatment])
        effects.to_parquet(out_dir / "effects.parquet", index=False)
        spec.to_yaml(out_dir / "spec.yaml")
        if front is not None:
            from pexkit.report import write_report

            front.save(out_dir / "policies.json")
            write_report(out_dir / "report.html", data, model, front, candidates,
                         longterm=summary.get("longterm"))
    return AnalysisResult(data, model, ate, policies, summary, front, candidates)

