"""Decision policies."""

from pexkit.policy.linear import LinearPolicy, choose_batch

__all__ = ["LinearPolicy", "choose_batch"]
