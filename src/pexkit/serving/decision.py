"""The one ``Decision`` type: what the service decided for one unit.

Shared by the service core, its HTTP schema and the Python client.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Decision"]


@dataclass(frozen=True)
class Decision:
    """What the service decided for one unit.

    Attributes
    ----------
    treatment : str
        The arm's label.
    policy_version : int
        The policy that chose it (1: uniform random).
    propensity : float
        P(this treatment | the unit's features) under the serving distribution:
        1/K when randomized, the share of tuning arms that pick it, or
        ``(1 - epsilon) * 1{policy picks it} + epsilon / K`` after launch.
    holdout : bool
        Whether the unit is in the launch's randomized holdout.
    unit : str
    treatment_index : int
        Index in the spec's arms (0 = control).
    arm : str or None
        Tuning arm, ``"policy"``, ``"explore"`` or ``"holdout"``.
    phase : str
    """

    treatment: str
    policy_version: int
    propensity: float
    holdout: bool
    unit: str = ""
    treatment_index: int = -1
    arm: str | None = None
    phase: str = ""
