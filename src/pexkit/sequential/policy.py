"""What counts as a sequential policy, and its action probabilities at given states.

A policy is any of:

- an object with ``probabilities(states)`` -> (n, A) (an :class:`~pexkit.OfflineAgent`,
  a served policy), or with ``choose(states)`` -> (n,) action indices;
- a callable ``states -> actions`` (n,) of indices, or ``states -> probabilities`` (n, A);
- an array: (n,) action indices or (n, A) probabilities, one row per state.

``states`` is a DataFrame with the spec's state columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError

__all__ = ["action_probabilities", "one_hot"]

FloatArray = NDArray[np.float64]


def one_hot(actions: Any, n_actions: int) -> FloatArray:
    """(n, A) indicator matrix of action indices.

    >>> one_hot([1, 0], 3)
    array([[0., 1., 0.],
           [1., 0., 0.]])
    """
    a = np.asarray(actions)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        if a.ndim == 1 and a.size and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        else:
            raise InvalidParameterError(
                f"a policy's actions must be a 1-D array of integer action indices; got dtype "
                f"{a.dtype} with shape {a.shape}."
            )
    if a.size and (a.min() < 0 or a.max() >= n_actions):
        raise InvalidParameterError(
            f"a policy returned action index {int(a.max() if a.max() >= n_actions else a.min())}; "
            f"indices must be in 0..{n_actions - 1} (the spec's actions, in order)."
        )
    out = np.zeros((a.size, n_actions))
    out[np.arange(a.size), a.astype(np.int64)] = 1.0
    return out


def _as_probabilities(raw: Any, n: int, n_actions: int) -> FloatArray:
    arr = np.asarray(raw)
    if arr.ndim == 1:
        probs = one_hot(arr, n_actions)
    elif arr.ndim == 2:
        if arr.shape[1] != n_actions:
            raise InvalidParameterError(
                f"a policy's probabilities must have one column per action ({n_actions}); "
                f"got shape {arr.shape}."
            )
        probs = np.asarray(arr, dtype=np.float64)
        if (
            not np.all(np.isfinite(probs))
            or probs.min() < -1e-9
            or np.abs(probs.sum(1) - 1).max() > 1e-6
        ):
            raise InvalidParameterError(
                "a policy's action probabilities must be finite, >= 0 and sum to 1 in each row."
            )
        probs = np.clip(probs, 0.0, None)
    else:
        raise InvalidParameterError(
            f"a policy must give (n,) action indices or (n, A) probabilities; got shape {arr.shape}."
        )
    if probs.shape[0] != n:
        raise InvalidParameterError(
            f"a policy gave {probs.shape[0]} rows for {n} states; give one per state."
        )
    return probs


def action_probabilities(
    policy: Any, states: pd.DataFrame, n_actions: int, *, epsilon: float = 0.0
) -> FloatArray:
    """(n, A) probabilities of each action under ``policy`` at ``states``.

    ``epsilon`` mixes in uniform exploration: ``(1 - epsilon) * p + epsilon / A``.

    >>> import pandas as pd
    >>> states = pd.DataFrame({"fatigue": [0.0, 3.0]})
    >>> action_probabilities(lambda s: (s["fatigue"] < 1).astype(int).to_numpy(), states, 2)
    array([[0., 1.],
           [1., 0.]])
    """
    if not 0.0 <= float(epsilon) <= 1.0:
        raise InvalidParameterError(f"'epsilon' must be in [0, 1]; got {epsilon!r}.")
    n = len(states)
    if isinstance(
        policy, np.ndarray | list | tuple | pd.Series
    ):  # before choose(): ndarray has one
        probs = _as_probabilities(np.asarray(policy), n, n_actions)
    elif hasattr(policy, "probabilities"):
        probs = _as_probabilities(policy.probabilities(states), n, n_actions)
    elif hasattr(policy, "choose"):
        probs = _as_probabilities(policy.choose(states), n, n_actions)
    elif callable(policy):
        probs = _as_probabilities(policy(states), n, n_actions)
    else:
        raise InvalidParameterError(
            "a sequential policy must be an agent (with probabilities() or choose()), a callable "
            f"states -> actions or probabilities, or an array; got {type(policy).__name__}."
        )
    if epsilon:
        probs = (1.0 - epsilon) * probs + epsilon / n_actions
    return probs
