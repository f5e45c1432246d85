"""Policy optimization: Pareto fronts of linear policies, hypervolume, candidate selection."""

from pexkit.optimize.front import (
    ParetoFront,
    front_from_dict,
    load_policies,
    single_treatment_policy,
)
from pexkit.optimize.objective import Evaluations, Guardrail, PolicyObjective
from pexkit.optimize.optimize import hypervolume_history, optimize_policies
from pexkit.optimize.pareto import hypervolume, is_non_dominated
from pexkit.optimize.search import METHODS
from pexkit.optimize.selection import select_subset
from pexkit.optimize.space import PolicySpace

__all__ = [
    "METHODS",
    "Evaluations",
    "Guardrail",
    "ParetoFront",
    "PolicyObjective",
    "PolicySpace",
    "front_from_dict",
    "hypervolume",
    "hypervolume_history",
    "is_non_dominated",
    "load_policies",
    "optimize_policies",
    "select_subset",
    "single_treatment_policy",
]
