"""Understanding policies: policy trees and distillation (issue 5 in progress)."""

from pexkit.explain.distill import DistilledPolicy, distill
from pexkit.explain.policytree import PolicyTree, fit_policy_tree

__all__ = ["DistilledPolicy", "PolicyTree", "distill", "fit_policy_tree"]
