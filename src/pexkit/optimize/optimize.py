"""optimize_policies: from a fitted effect model to a Pareto front of linear policies."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation import build_scores, evaluate_policies
from pexkit.exceptions import InvalidParameterError, SlowSearchWarning
from pexkit.execution import is_distributed
from pexkit.optimize.front import ParetoFront, single_treatment_policy
from pexkit.optimize.objective import Evaluations, Guardrail, PolicyObjective
from pexkit.optimize.pareto import hypervolume, is_non_dominated
from pexkit.optimize.search import get_method
from pexkit.optimize.space import PolicySpace
from pexkit.policy import LinearPolicy

__all__ = ["DEFAULT_BUDGETS", "SLOW_QNPAREGO_BUDGET", "hypervolume_history", "optimize_policies"]

FloatArray = NDArray[np.float64]

#: policies evaluated when ``budget`` is not given, per method
DEFAULT_BUDGETS = {"sobol": 2000, "nsga2": 2000, "qnparego": 200}
#: qNParEGO budgets above this warn that the search will take long
SLOW_QNPAREGO_BUDGET = 500


def hypervolume_history(
    evals: Evaluations, signs: FloatArray, reference: FloatArray, checkpoints: Sequence[int]
) -> list[tuple[int, float]]:
    """Hypervolume of the feasible points among the first n evaluations, per checkpoint n."""
    objectives = evals.lifts * signs[None, :]
    feasible = evals.feasible
    out = []
    front = np.zeros((0, objectives.shape[1]))
    done = 0
    for n in sorted(checkpoints):
        n = min(n, objectives.shape[0])
        new = objectives[done:n][feasible[done:n]]
        done = n
        if new.shape[0]:
            front = np.vstack([front, new])
            front = front[is_non_dominated(front)]
        hv = hypervolume(front, reference * signs) if front.shape[0] else 0.0
        out.append((n, hv))
    return out


def optimize_policies(
    model: EffectModel,
    data: LoggedData | None = None,
    method: str = "sobol",
    budget: int | None = None,
    *,
    biases: bool = True,
    parameterization: str = "weights",
    guardrails: Sequence[Guardrail] = (),
    reference_point: Any = "worst",
    random_state: int = 0,
    progress: bool | None = None,
    start: Sequence[Any] = (),
) -> ParetoFront:
    """Search the linear policy space for the Pareto front of DR lifts.

    Parameters
    ----------
    model : EffectModel
        Fitted; its effects drive the policies, its DR scores evaluate them.
    data : LoggedData, optional
        Default: the data the model was fitted on (out-of-fold effects, honest).
    method : {"sobol", "qnparego", "nsga2"}
        Default "sobol": evaluations are cheap here (2,000 policies on 1M rows
        in about a second), and measured on the simulator a dense Sobol search
        reaches a larger hypervolume than qNParEGO's 200 (see benchmarks/).
        "qnparego" (BoTorch ``qLogNParEGO``) is the paper's method and pays off
        when each evaluation is expensive.
    budget : int, optional
        Number of policies evaluated. Default per method (:data:`DEFAULT_BUDGETS`):
        2,000 for "sobol" and "nsga2" (a policy costs milliseconds), 200 for
        "qnparego" (each batch of 16 refits or conditions a GP and optimizes an
        acquisition; about 18 s for 200 on 2 cores). A qNParEGO budget above
        :data:`SLOW_QNPAREGO_BUDGET` warns (:class:`~pexkit.exceptions.SlowSearchWarning`).
    biases : bool
        Search per-treatment biases too (default) or weights only.
    parameterization : {"weights", "shrinkage"}
    guardrails : sequence of Guardrail
        Constraints on the DR lifts; infeasible policies never reach the front.
    reference_point : "worst", "control", mapping or array
        Hypervolume reference in lift units. "worst" (default): per outcome,
        the worst of the single-treatment policies, all-control included, so
        that trading one outcome for another still adds volume when every
        treatment costs something; "control": all-control (0 lift).
    random_state : int
    progress : bool or None
    start : sequence of LinearPolicy, weight mappings or ProxyWeights
        Policies evaluated before the search and pooled with its points, e.g.
        the weights :func:`pexkit.proxy_weights` learned for a long-term
        outcome (outcomes they do not name get weight 0; biases 0). Each is
        mapped to the nearest point of the space (``PolicySpace.to_unit``).
        Not on a cluster yet.

    Returns
    -------
    ParetoFront
        Non-dominated feasible policies (front order: by the first outcome's
        objective), followed by the single-treatment baselines.
    """
    model._check_fitted()
    search = get_method(method)
    if budget is None:
        budget = DEFAULT_BUDGETS[method]
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 2:
        raise InvalidParameterError(
            f"'budget' must be an integer >= 2 (policies evaluated); got {budget!r}. "
            f"Defaults: {DEFAULT_BUDGETS}."
        )
    budget = int(budget)
    if method == "qnparego" and budget > SLOW_QNPAREGO_BUDGET:
        warnings.warn(
            f"qNParEGO with budget={budget}: its cost grows faster than linearly with the "
            f"budget (a GP over every evaluated policy, {math.ceil(budget / 16)} acquisition "
            f"rounds); expect minutes or more. Use budget<={SLOW_QNPAREGO_BUDGET}, or "
            "method='sobol' (milliseconds per policy) for large budgets.",
            SlowSearchWarning,
            stacklevel=2,
        )
    data = model.data_ if data is None else data
    spec = data.spec
    started = time.perf_counter()
    if is_distributed(data) and len(start):
        raise InvalidParameterError(
            "'start' is not supported on a cluster yet; optimize without it, or in one process."
        )
    if is_distributed(data):  # the sums come from the workers
        from pexkit.execution.dask import ClusterEvaluator

        evaluator = ClusterEvaluator(model, cast(Any, data))
        space = PolicySpace.from_moments(spec, evaluator.tau_mean, evaluator.tau_sq_mean,
                                         biases=biases, parameterization=parameterization)
        objective = PolicyObjective(space, data, None, None, tuple(guardrails),
                                    evaluator=evaluator)
        evals = search(objective, budget, seed=random_state, progress=progress)
        single = evaluator.single_treatments()
    else:
        scores = build_scores(data, model)
        tau = model.effects_for(data)  # out-of-fold on the rows the model was fitted on
        space = PolicySpace.from_effects(spec, tau, biases=biases,
                                         parameterization=parameterization)
        objective = PolicyObjective(space, data, scores, tau, tuple(guardrails))
        evals = search(objective, budget, seed=random_state, progress=progress)
        if len(start):
            if parameterization != "weights":
                raise InvalidParameterError(
                    "'start' policies need parameterization='weights'; got "
                    f"{parameterization!r}."
                )
            points = np.stack([space.to_unit(_start_policy(spec, s)) for s in start])
            evals = Evaluations.concat([objective(points), evals])
        # single-treatment baselines, evaluated the same way
        n = data.n_units
        single_actions = np.repeat(np.arange(spec.n_treatments)[:, None], n, axis=1)
        single = evaluate_policies(single_actions, data, scores=scores)
    signs = np.asarray(spec.signs)
    single_eval = objective._wrap(
        np.zeros((spec.n_treatments, space.dim)), single.lift, single.lift_se, single.shares
    )

    if reference_point is None or (isinstance(reference_point, str) and reference_point == "worst"):
        # per outcome, the worst single-treatment policy (all-control included)
        ref = signs * (single.lift * signs[None, :]).min(axis=0)
    elif isinstance(reference_point, str) and reference_point == "control":
        ref = np.zeros(spec.n_outcomes)
    elif isinstance(reference_point, dict):
        ref = np.array([float(reference_point.get(o, 0.0)) for o in spec.outcome_names])
    else:
        ref = np.asarray(reference_point, dtype=np.float64)
        if ref.shape != (spec.n_outcomes,):
            raise InvalidParameterError(
                f"'reference_point' must be 'worst', 'control', a mapping outcome -> lift, "
                f"or {spec.n_outcomes} numbers; got {reference_point!r}."
            )
    feasible = evals.feasible
    pool_obj = np.vstack([evals.lifts[feasible], single.lift[1:][single_eval.feasible[1:]]]) * signs
    nd_pool = is_non_dominated(pool_obj) if pool_obj.shape[0] else np.zeros(0, dtype=bool)
    n_feasible = int(feasible.sum())
    front_idx = np.flatnonzero(feasible)[nd_pool[:n_feasible]]
    order = np.argsort(-(evals.lifts[front_idx, 0] * signs[0]))
    front_idx = front_idx[order]
    front_policies = space.policies(evals.points[front_idx])
    single_on_front = np.zeros(spec.n_treatments, dtype=bool)
    feasible_singles = np.flatnonzero(single_eval.feasible[1:]) + 1
    single_on_front[feasible_singles] = nd_pool[n_feasible:]

    policies = front_policies + [single_treatment_policy(spec, k) for k in range(spec.n_treatments)]
    lifts = np.vstack([evals.lifts[front_idx], single.lift])
    se = np.vstack([evals.lift_se[front_idx], single.lift_se])
    shares = np.vstack([evals.shares[front_idx], single.shares])
    labels = [f"policy {i + 1}" for i in range(len(front_idx))] + [
        f"all {arm}" for arm in spec.arms
    ]
    on_front = np.concatenate([np.ones(len(front_idx), dtype=bool), single_on_front])
    step = max(10, budget // 40)
    checkpoints = sorted({*range(step, budget + 1, step), budget})
    meta = {
        "method": method,
        "budget": budget,
        "n_evaluations": int(evals.points.shape[0]),
        "n_feasible": n_feasible,
        "biases": biases,
        "parameterization": parameterization,
        "guardrails": [g.__dict__ for g in guardrails],
        "seconds": time.perf_counter() - started,
        "start_lifts": [{o: float(evals.lifts[i, m]) for m, o in enumerate(spec.outcome_names)}
                        for i in range(len(start))] or None,
        "history": hypervolume_history(evals, signs, ref, checkpoints),
        "control_value": objective.control_value.tolist(),
        "space_dim": space.dim,
    }
    return ParetoFront(
        spec, policies, lifts, se, shares, ref,
        on_front=on_front, labels=labels, meta=meta,
    )


def _start_policy(spec: Any, start: Any) -> LinearPolicy:
    """A ``start`` entry as a policy over ``spec``: a LinearPolicy, weights, or ProxyWeights."""
    if isinstance(start, LinearPolicy):
        return start
    weights = getattr(start, "weights", start)
    if not isinstance(weights, Mapping):
        raise InvalidParameterError(
            "each 'start' entry must be a LinearPolicy, a mapping outcome -> weight, or "
            f"px.proxy_weights(...); got {type(start).__name__}."
        )
    unknown = [o for o in weights if o not in spec.outcome_names]
    if unknown:
        raise InvalidParameterError(
            f"'start' weights name outcomes {unknown} the log does not have; its outcomes are "
            f"{list(spec.outcome_names)}."
        )
    return LinearPolicy(spec, weights={o: float(weights.get(o, 0.0)) for o in spec.outcome_names})
