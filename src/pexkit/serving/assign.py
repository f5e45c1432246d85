"""Deterministic, salted-hash assignment.

The same (salt, purpose, unit) always maps to the same number, in any process
and after any restart: no state is needed to keep assignment sticky, and two
server processes agree without talking to each other.
"""

from __future__ import annotations

import hashlib

__all__ = ["bucket", "uniform_arm"]

_SCALE = float(2**64)


def bucket(salt: str, purpose: str, unit: str) -> float:
    """A uniform number in [0, 1) from a keyed BLAKE2b hash of the unit id.

    Examples
    --------
    >>> bucket("s", "arm", "u1") == bucket("s", "arm", "u1")
    True
    >>> 0.0 <= bucket("s", "arm", "u1") < 1.0
    True
    """
    digest = hashlib.blake2b(
        f"{purpose}\x1f{unit}".encode(), key=salt.encode()[:64], digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / _SCALE


def uniform_arm(salt: str, purpose: str, unit: str, n_arms: int) -> int:
    """Index in ``range(n_arms)``, uniform over units, fixed per unit.

    Examples
    --------
    >>> uniform_arm("s", "randomize", "u1", 3) in (0, 1, 2)
    True
    """
    return min(int(bucket(salt, purpose, unit) * n_arms), n_arms - 1)
