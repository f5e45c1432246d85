"""Pick q points of a front that maximize the hypervolume of the subset."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError
from pexkit.optimize.pareto import hypervolume

__all__ = ["select_subset"]

FloatArray = NDArray[np.float64]
EXACT_LIMIT = 5000


def select_subset(
    Y: FloatArray,
    reference: FloatArray,
    q: int,
    include: Sequence[int] = (),
    exact_limit: int = EXACT_LIMIT,
) -> list[int]:
    """Indices of q points maximizing the hypervolume of the subset.

    Parameters
    ----------
    Y : ndarray of shape (n_points, n_objectives)
        Objectives (maximized).
    reference : ndarray of shape (n_objectives,)
    q : int
        Subset size (including the forced points).
    include : sequence of int
        Points that must be in the subset (e.g. the best single-treatment policies).
    exact_limit : int
        Enumerate every subset when there are at most this many; else greedy
        (hypervolume is monotone submodular, so greedy is within 1 - 1/e).

    Returns
    -------
    list of int
        Forced points first, then the chosen ones in order of selection.
    """
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[0]
    include = list(dict.fromkeys(int(i) for i in include))
    if q < 1 or q > n:
        raise InvalidParameterError(f"'q' must be in [1, {n}] (the number of points); got {q}.")
    if len(include) > q or any(i < 0 or i >= n for i in include):
        raise InvalidParameterError(
            f"'include' must hold at most q={q} valid indices; got {include}."
        )
    rest = [i for i in range(n) if i not in include]
    free = q - len(include)
    if free == 0:
        return include
    if math.comb(len(rest), free) <= exact_limit:
        combos = list(itertools.combinations(rest, free))
        volumes = [hypervolume(Y[include + list(c)], reference) for c in combos]
        return include + list(combos[int(np.argmax(volumes))])
    chosen = list(include)
    for _ in range(free):
        gains = [
            (hypervolume(Y[chosen + [i]], reference), i) for i in rest if i not in chosen
        ]
        _, pick = max(gains, key=lambda t: (t[0], -t[1]))
        chosen.append(pick)
    return chosen
