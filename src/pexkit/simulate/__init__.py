"""Simulated experiments with known effects (an oracle for tests and demos)."""

from pexkit.simulate.scenarios import SCENARIOS, Scenario, Simulation, simulate

__all__ = ["SCENARIOS", "Scenario", "Simulation", "simulate"]
