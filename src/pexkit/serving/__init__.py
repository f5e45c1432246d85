"""Serving: assignment, compiled policies, portable artifacts (numeric, no web code)."""

from pexkit.serving.artifact import export_distilled, export_policy, write_artifact
from pexkit.serving.assign import bucket, uniform_arm
from pexkit.serving.compiled import CompiledPolicy, compile_policy
from pexkit.serving.decision import Decision
from pexkit.serving.evaluator import PolicyEvaluator

__all__ = [
    "CompiledPolicy",
    "Decision",
    "PolicyEvaluator",
    "bucket",
    "compile_policy",
    "export_distilled",
    "export_policy",
    "uniform_arm",
    "write_artifact",
]
