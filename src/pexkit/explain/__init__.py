"""Understanding policies: interpretable policy trees (work in progress for issue 5)."""

from pexkit.explain.policytree import PolicyTree, fit_policy_tree

__all__ = ["PolicyTree", "fit_policy_tree"]
