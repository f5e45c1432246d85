"""Simulated experiments with known effects (an oracle for tests and demos)."""

from pexkit.simulate.scenarios import SCENARIOS, Scenario, Simulation, simulate
from pexkit.simulate.sequential import SequentialSimulation, simulate_notification_volume

__all__ = [
    "SCENARIOS",
    "Scenario",
    "SequentialSimulation",
    "Simulation",
    "simulate",
    "simulate_notification_volume",
]
