"""Serving: deterministic assignment and compiled policies (numeric, no web code)."""

from pexkit.serving.assign import bucket, uniform_arm
from pexkit.serving.compiled import CompiledPolicy, compile_policy

__all__ = ["CompiledPolicy", "bucket", "compile_policy", "uniform_arm"]
