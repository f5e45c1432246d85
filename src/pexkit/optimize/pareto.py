"""Pareto utilities on objective vectors that are all to be maximized.

Policies' objectives are ``s_m * lift_m`` (goal sign times lift vs control), so
"larger is better" holds for every column and one set of routines serves every
mix of maximized and minimized outcomes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError

__all__ = ["hypervolume", "is_non_dominated"]

FloatArray = NDArray[np.float64]


def _check(Y: FloatArray) -> FloatArray:
    arr = np.asarray(Y, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidParameterError(
            f"objective values must have shape (n_points, n_objectives); got {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise InvalidParameterError("objective values must be finite; got NaN or inf.")
    return arr


def is_non_dominated(Y: FloatArray, deduplicate: bool = True) -> NDArray[np.bool_]:
    """Mask of the points no other point dominates (maximization).

    Parameters
    ----------
    Y : ndarray of shape (n_points, n_objectives)
    deduplicate : bool
        Keep only the first of identical points.

    Returns
    -------
    ndarray of shape (n_points,) of bool

    Examples
    --------
    >>> is_non_dominated(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.4, 0.4]])).tolist()
    [True, True, True, False]
    """
    Y = _check(Y)
    n = Y.shape[0]
    keep = np.ones(n, dtype=bool)
    for start in range(0, n, 512):
        block = Y[start : start + 512]
        geq = np.all(Y[None, :, :] >= block[:, None, :], axis=2)
        gt = np.any(Y[None, :, :] > block[:, None, :], axis=2)
        keep[start : start + 512] = ~np.any(geq & gt, axis=1)
    if deduplicate:
        _, first = np.unique(Y, axis=0, return_index=True)
        unique = np.zeros(n, dtype=bool)
        unique[first] = True
        keep &= unique
    return keep


def hypervolume(Y: FloatArray, reference: FloatArray) -> float:
    """Exact hypervolume dominated by ``Y`` above ``reference`` (maximization).

    Parameters
    ----------
    Y : ndarray of shape (n_points, n_objectives)
    reference : ndarray of shape (n_objectives,)
        Points that do not exceed it in every objective add nothing.

    Returns
    -------
    float

    Notes
    -----
    Slicing along the last objective (HSO): sort the points by it, and sum
    slab height times the (M-1)-dimensional hypervolume of the points above
    the slab. Exact; fine for fronts of a few hundred points and M <= 4.

    Examples
    --------
    >>> hypervolume(np.array([[2.0, 1.0], [1.0, 2.0]]), np.zeros(2))
    3.0
    """
    Y = _check(Y)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (Y.shape[1],):
        raise InvalidParameterError(
            f"'reference' must have shape ({Y.shape[1]},); got {ref.shape}."
        )
    Y = Y[(ref < Y).all(axis=1)]
    if Y.shape[0] == 0:
        return 0.0
    Y = Y[is_non_dominated(Y)]
    return float(_hso(Y - ref))


def _hso(P: FloatArray) -> float:
    """Hypervolume of points P > 0 against the origin."""
    n, m = P.shape
    if m == 1:
        return float(P.max())
    if m == 2:
        order = np.argsort(-P[:, 0])
        xs, ys = P[order, 0], P[order, 1]
        best = np.maximum.accumulate(ys)
        widths = xs - np.append(xs[1:], 0.0)
        return float((widths * best).sum())
    order = np.argsort(-P[:, -1])
    P = P[order]
    total = 0.0
    for i in range(n):
        top = P[i, -1]
        below = P[i + 1, -1] if i + 1 < n else 0.0
        height = top - below
        if height <= 0:
            continue
        prefix = P[: i + 1, :-1]
        if prefix.shape[1] > 2:
            prefix = prefix[is_non_dominated(prefix, deduplicate=False)]
        total += height * _hso(prefix)
    return total
