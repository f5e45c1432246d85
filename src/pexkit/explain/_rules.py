"""Readable split conditions shared by policy trees, effect trees and segments."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["condition", "describe_path", "format_number"]


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


def describe_path(
    path: Sequence[tuple[str, float, bool, Sequence[str] | None, bool | None]],
) -> list[str]:
    """Readable conditions of a root-to-leaf path, one per feature (bounds merged).

    ``path`` holds ``(name, threshold, left, categories, missing_left)`` per
    split, as for :func:`condition`. Several splits on one feature become one
    condition (``1.5 < age <= 40``, or the intersection of category sets).
    """
    order: list[str] = []
    groups: dict[str, list[tuple[float, bool, Sequence[str] | None, bool | None]]] = {}
    for name, threshold, left, categories, missing_left in path:
        if name not in groups:
            order.append(name)
            groups[name] = []
        groups[name].append((threshold, left, categories, missing_left))
    out: list[str] = []
    for name in order:
        splits = groups[name]
        if len(splits) == 1:
            t, left, cats, miss = splits[0]
            out.append(condition(name, t, left, cats, miss))
            continue
        # missing values satisfy the path only if every split sends them this way
        missing_known = all(miss is not None for _, _, _, miss in splits)
        missing_ok = missing_known and all(miss == left for _, left, _, miss in splits)
        only_missing = any(left and t == -math.inf for t, left, _, _ in splits)
        if only_missing:
            out.append(f"{name} is missing")
            continue
        cats = splits[0][2]
        suffix = " or missing" if missing_ok else ""
        if cats is not None:
            allowed = set(range(len(cats)))
            for t, left, _, _ in splits:
                if t == -math.inf:
                    continue
                cut = max(0, min(len(cats), math.floor(t) + 1))
                allowed &= set(range(cut)) if left else set(range(cut, len(cats)))
            chosen = [str(cats[i]) for i in sorted(allowed)]
            out.append(f"{name} in {{{', '.join(chosen)}}}{suffix}")
            continue
        lows = [t for t, left, _, _ in splits if not left and t != -math.inf]
        highs = [t for t, left, _, _ in splits if left]
        lo = max(lows) if lows else None
        hi = min(highs) if highs else None
        if lo is not None and hi is not None:
            text = f"{format_number(lo)} < {name} <= {format_number(hi)}"
        elif hi is not None:
            text = f"{name} <= {format_number(hi)}"
        elif lo is not None:
            text = f"{name} > {format_number(lo)}"
        else:
            text = f"{name} is not missing"
            suffix = ""
        out.append(text + suffix)
    return out
