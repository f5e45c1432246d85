"""Readable split conditions shared by policy trees, effect trees and segments."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["condition", "format_number"]


def format_number(x: float) -> str:
    """Short, exact-looking number: integers without a decimal point, else 6 digits."""
    if math.isfinite(x) and float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def condition(
    name: str,
    threshold: float,
    left: bool,
    categories: Sequence[str] | None = None,
    missing_left: bool | None = None,
) -> str:
    """Text of one side of the split ``x <= threshold`` (left) / ``x > threshold`` (right).

    Parameters
    ----------
    name : str
        Feature name.
    threshold : float
        Split value on the encoded feature (categorical features: category codes).
    left : bool
        Describe the left (``<=``) side, else the right side.
    categories : sequence of str, optional
        The feature's categories in code order; the condition is then a set.
    missing_left : bool, optional
        Where missing values go; None to leave them unmentioned.
    """
    if threshold == -math.inf:  # the only left rows are the missing ones
        return f"{name} is missing" if left else f"{name} is not missing"
    if categories is not None:
        cut = max(0, min(len(categories), math.floor(threshold) + 1))
        chosen = list(categories[:cut]) if left else list(categories[cut:])
        text = f"{name} in {{{', '.join(str(c) for c in chosen)}}}"
    else:
        text = f"{name} {'<=' if left else '>'} {format_number(threshold)}"
    if missing_left is not None and missing_left == left:
        text += " or missing"
    return text
