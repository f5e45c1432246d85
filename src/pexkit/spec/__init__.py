"""Experiment specs: treatments, outcomes and features."""

from pexkit.spec.spec import ExperimentSpec, Outcome

__all__ = ["ExperimentSpec", "Outcome"]
