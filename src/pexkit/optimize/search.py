"""Search strategies over a PolicySpace: Sobol, NSGA-II (pymoo), qNParEGO (BoTorch)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import qmc

from pexkit._progress import progress_bar
from pexkit.exceptions import InvalidParameterError
from pexkit.optimize.objective import Evaluations, PolicyObjective

__all__ = ["METHODS", "nsga2_search", "qnparego_search", "sobol_search"]

FloatArray = NDArray[np.float64]

#: qNParEGO's inner work per round (BoTorch): restarts and raw samples of the
#: acquisition optimizer, its L-BFGS iterations, the QMC samples of the
#: acquisition, how often the GP's hyperparameters are refitted (between
#: refits the GP conditions on the new points with the last hyperparameters),
#: and the points per round. Measured (notifications, 20k units, budget 200,
#: seeds 0 and 1): 84 s with BoTorch-tutorial settings (3 restarts, 128 raw
#: samples, 60 iterations, 64 samples, refit every round, batches of 8),
#: 18 s with these, hypervolume within 1-2% of it.
QNPAREGO = {"num_restarts": 1, "raw_samples": 32, "maxiter": 20, "mc_samples": 16,
            "refit_every": 3, "batch_size": 16}


def _sobol(dim: int, n: int, seed: int) -> FloatArray:
    m = max(0, math.ceil(math.log2(max(n, 1))))
    points: FloatArray = qmc.Sobol(dim, scramble=True, seed=seed).random_base2(m)[:n]
    return points


def sobol_search(
    objective: PolicyObjective, budget: int, seed: int = 0, progress: bool | None = None
) -> Evaluations:
    """Evaluate ``budget`` scrambled-Sobol points in one batch."""
    with progress_bar(1, "sobol search", progress) as bar:
        out = objective(_sobol(objective.space.dim, budget, seed))
        bar.advance()
    return out


def nsga2_search(
    objective: PolicyObjective,
    budget: int,
    seed: int = 0,
    progress: bool | None = None,
    pop_size: int | None = None,
) -> Evaluations:
    """NSGA-II (pymoo) on the DR objectives; guardrails as inequality constraints."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    space = objective.space
    signs = np.asarray(space.spec.signs)
    n_constr = len(objective.guardrails)
    logs: list[Evaluations] = []
    pop = pop_size or max(8, min(50, budget // 5))
    generations = max(1, budget // pop)

    with progress_bar(generations, "NSGA-II", progress) as bar:

        class _Problem(Problem):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__(
                    n_var=space.dim, n_obj=space.spec.n_outcomes, n_ieq_constr=n_constr,
                    xl=0.0, xu=1.0,
                )

            def _evaluate(self, X: FloatArray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
                ev = objective(X)
                logs.append(ev)
                out["F"] = -(ev.lifts * signs[None, :])
                if n_constr:
                    out["G"] = ev.slack
                bar.advance()

        minimize(
            _Problem(), NSGA2(pop_size=pop), ("n_evals", budget), seed=seed, verbose=False
        )
    return Evaluations.concat(logs)


def qnparego_search(
    objective: PolicyObjective,
    budget: int,
    seed: int = 0,
    progress: bool | None = None,
    batch_size: int | None = None,
    n_init: int | None = None,
    n_scalarizations: int = 2,
) -> Evaluations:
    """qNParEGO (BoTorch ``qLogNParEGO``): random Chebyshev scalarizations of GP models.

    Each objective gets a GP with its DR standard errors as observed noise;
    guardrail slacks get GPs too and enter as outcome constraints.
    """
    import torch
    from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
    from botorch.acquisition.multi_objective.parego import qLogNParEGO
    from botorch.fit import fit_gpytorch_mll
    from botorch.models.gp_regression import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim.optimize import optimize_acqf
    from botorch.sampling.normal import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood

    batch_size = int(batch_size or QNPAREGO["batch_size"])
    space = objective.space
    dim = space.dim
    M = space.spec.n_outcomes
    signs = np.asarray(space.spec.signs)
    n_init = n_init or min(budget, max(2 * (dim + 1), 8))
    torch.manual_seed(seed)
    dtype = torch.double
    evals = objective(_sobol(dim, n_init, seed))
    bounds = torch.stack([torch.zeros(dim, dtype=dtype), torch.ones(dim, dtype=dtype)])
    n_constr = len(objective.guardrails)
    rounds = math.ceil(max(budget - n_init, 0) / batch_size)
    objective_columns = IdentityMCMultiOutputObjective(outcomes=list(range(M)))
    constraints: list[Callable[[Any], Any]] | None = [
        _slack_column(M + c) for c in range(n_constr)
    ] or None
    hypers: dict[str, Any] | None = None
    round_ = 0
    with progress_bar(rounds, "qNParEGO", progress) as bar:
        while evals.points.shape[0] < budget:
            X = torch.tensor(evals.points, dtype=dtype)
            # one batched GP over every objective (and guardrail slack), each with
            # its DR standard error as the observed noise
            Y = np.column_stack([evals.lifts * signs[None, :], evals.slack])
            spread = np.maximum(Y.std(axis=0), 1e-12)
            var = np.column_stack(
                [np.maximum(evals.lift_se**2, 1e-10 * spread[:M] ** 2),
                 np.tile(1e-10 * spread[M:] ** 2, (X.shape[0], 1))]
            )
            model = SingleTaskGP(
                X,
                torch.tensor(Y, dtype=dtype),
                torch.tensor(var, dtype=dtype),
                outcome_transform=Standardize(m=Y.shape[1]),
            )
            if hypers is not None and round_ % int(QNPAREGO["refit_every"]) != 0:
                model.load_state_dict(hypers, strict=False)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
                hypers = {k: v for k, v in model.state_dict().items()
                          if k.startswith(("covar_module.", "mean_module."))}
            model.eval()
            round_ += 1
            q = min(batch_size, budget - evals.points.shape[0])
            chosen: list[Any] = []
            # the batch is built from a few random Chebyshev scalarizations, each
            # optimized jointly over its share of the q points
            per = max(1, math.ceil(q / n_scalarizations))
            while sum(c.shape[0] for c in chosen) < q:
                size = min(per, q - sum(c.shape[0] for c in chosen))
                acqf = qLogNParEGO(
                    model=model,
                    X_baseline=X,
                    objective=objective_columns,
                    constraints=constraints,
                    sampler=SobolQMCNormalSampler(
                        sample_shape=torch.Size([int(QNPAREGO["mc_samples"])]),
                        seed=int(torch.randint(1 << 30, (1,))),
                    ),
                    X_pending=torch.cat(chosen) if chosen else None,
                    prune_baseline=True,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cand, _ = optimize_acqf(
                        acqf, bounds=bounds, q=size,
                        num_restarts=int(QNPAREGO["num_restarts"]),
                        raw_samples=int(QNPAREGO["raw_samples"]),
                        options={"batch_limit": int(QNPAREGO["num_restarts"]),
                                 "maxiter": int(QNPAREGO["maxiter"])},
                    )
                chosen.append(cand.detach())
            new = torch.cat(chosen).numpy()
            evals = evals.extend(objective(new))
            bar.advance()
    return evals


def _slack_column(index: int) -> Callable[[Any], Any]:
    """Constraint callable for BoTorch: feasible where the sample is <= 0."""

    def slack(samples: Any) -> Any:
        return samples[..., index]

    return slack


METHODS: dict[str, Callable[..., Evaluations]] = {
    "qnparego": qnparego_search,
    "sobol": sobol_search,
    "nsga2": nsga2_search,
}


def get_method(name: str) -> Callable[..., Evaluations]:
    """Search function registered as ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise InvalidParameterError(
            f"'method' must be one of {sorted(METHODS)}; got {name!r}."
        ) from None
