"""Input checks and limits of the decision service (one place, documented).

Names of experiments use a safe alphabet (they appear in URLs); ids are short
printable strings; numbers are finite and within float range. Each check
raises :class:`~pexkit.service.errors.InvalidRequestError` or
:class:`~pexkit.service.errors.PayloadTooLargeError` with a message that says
what was wrong and what is expected.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pexkit.service.errors import InvalidRequestError, PayloadTooLargeError

__all__ = ["LIMITS", "NAME_PATTERN", "Limits", "check_finite_json", "check_id", "check_name",
           "check_number", "check_time"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_MAX_FLOAT = 1e300


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """Resource limits; each can be set by an environment variable of the same name.

    Attributes
    ----------
    max_body_bytes : int
        ``PEXKIT_MAX_BODY_BYTES`` (default 16 MiB): larger bodies get 413.
    max_batch : int
        ``PEXKIT_MAX_BATCH`` (default 10,000): decisions or events per batch call.
    max_id_length : int
        Characters in a unit id, event id, category or tracked-outcome name (200).
    max_queued_jobs : int
        ``PEXKIT_MAX_QUEUED_JOBS`` (default 8): more queued jobs per server get 429.
    max_cached_models : int
        ``PEXKIT_MAX_CACHED_MODELS`` (default 8): loaded models kept per server (LRU).
    min_admin_key_length : int
        ``PEXKIT_ADMIN_KEY`` must have at least this many characters (16).
    """

    max_body_bytes: int = _env_int("PEXKIT_MAX_BODY_BYTES", 16 * 1024 * 1024)
    max_batch: int = _env_int("PEXKIT_MAX_BATCH", 10_000)
    max_id_length: int = 200
    max_queued_jobs: int = _env_int("PEXKIT_MAX_QUEUED_JOBS", 8)
    max_cached_models: int = _env_int("PEXKIT_MAX_CACHED_MODELS", 8)
    min_admin_key_length: int = 16


LIMITS = Limits()


def check_name(value: Any, where: str) -> str:
    """An experiment name: 1-64 of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit.

    Examples
    --------
    >>> check_name("email-campaign.v2", "spec.name")
    'email-campaign.v2'
    >>> check_name("../etc", "spec.name")
    Traceback (most recent call last):
    ...
    pexkit.service.errors.InvalidRequestError: spec.name: expected 1-64 characters ...
    """
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequestError(
            f"{where}: expected 1-64 characters from A-Z a-z 0-9 _ . - starting with a letter "
            f"or digit (the name appears in URLs); got {_show(value)}. Rename it, e.g. "
            "'email-campaign'."
        )
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_text(value: Any, where: str, max_length: int | None = None) -> str:
    """A printable, UTF-8-encodable string of at most ``max_length`` characters."""
    limit = max_length or LIMITS.max_id_length
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where}: expected a string; got {_show(value)}.")
    if len(value) > limit:
        raise PayloadTooLargeError(
            f"{where}: at most {limit} characters; got {len(value)}. Use a shorter id."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            f"{where}: not valid Unicode text (it holds a lone surrogate such as \\ud800); "
            "send UTF-8 text."
        ) from None
    return value


def check_id(value: Any, where: str) -> str:
    """A unit or event id: a non-empty string (<= 200 chars) or an integer below 2**63.

    Examples
    --------
    >>> check_id(42, "unit")
    '42'
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequestError(
            f"{where}: expected a non-empty string or integer id; got {_show(value)}."
        )
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise InvalidRequestError(
                f"{where}: integer ids must be below 2**63 in magnitude; send large ids as "
                "strings."
            )
        return str(value)
    if value == "":
        raise InvalidRequestError(f"{where}: expected a non-empty id; got ''.")
    return check_text(value, where)


def check_number(value: Any, where: str) -> float:
    """A finite number within float range (booleans count as 0/1).

    Examples
    --------
    >>> check_number(True, "value")
    1.0
    >>> check_number(10**400, "value")
    Traceback (most recent call last):
    ...
    pexkit.service.errors.InvalidRequestError: value: expected a finite number ...
    """
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        try:
            out = float(value)
        except OverflowError:
            out = math.inf
        if math.isfinite(out) and abs(out) <= _MAX_FLOAT:
            return out
    raise InvalidRequestError(
        f"{where}: expected a finite number (|x| <= 1e300); got {_show(value)}."
    )


MAX_FUTURE = timedelta(hours=1)  # event times further ahead of the server's clock are refused
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # event times before it are refused


def check_finite_json(value: Any, where: str) -> Any:
    """``value`` (parsed JSON) unchanged, or a refusal naming the first NaN or infinity in it.

    Python's JSON parser reads ``NaN`` and ``Infinity``; standard JSON (and so
    PostgreSQL's ``json`` columns) has neither, so a body that carries one into
    the store is refused here rather than failing there.
    """
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidRequestError(
                f"{path}: expected a finite number; got {item!r}. JSON has no NaN or "
                "infinity: send a number, or leave the parameter out for its default."
            )
        if isinstance(item, dict):
            stack.extend((f"{path}.{k}", v) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(item))
    return value


def check_time(value: Any, where: str, received: datetime) -> datetime:
    """An event time: a timezone-aware ISO-8601 timestamp (or datetime), returned in UTC.

    At most :data:`MAX_FUTURE` after ``received`` (the server's clock), so a
    client clock that runs ahead cannot put events past every window.

    Examples
    --------
    >>> now = datetime(2026, 1, 2, tzinfo=UTC)
    >>> check_time("2026-01-01T09:30:00+02:00", "time", now)
    datetime.datetime(2026, 1, 1, 7, 30, tzinfo=datetime.timezone.utc)
    >>> check_time("2026-01-01T09:30:00", "time", now)
    Traceback (most recent call last):
    ...
    pexkit.service.errors.InvalidRequestError: time: expected a timezone-aware ISO-8601 ...
    """
    stamp: datetime | None = None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            stamp = None
    if stamp is None or stamp.tzinfo is None or stamp.utcoffset() is None:
        raise InvalidRequestError(
            f"{where}: expected a timezone-aware ISO-8601 timestamp such as "
            f"'2026-03-01T12:00:00Z' or '2026-03-01T13:00:00+01:00'; got {_show(value)}. "
            "Leave it out to use the time the event is received."
        )
    try:
        stamp = stamp.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 or 9999 shifted out of range
        stamp = _EPOCH - timedelta(days=1)
    if stamp < _EPOCH:
        raise InvalidRequestError(
            f"{where}: expected a time after 1970-01-01T00:00:00Z; got {_show(value)}."
        )
    if stamp > received + MAX_FUTURE:
        raise InvalidRequestError(
            f"{where}: {stamp.isoformat()} is more than {MAX_FUTURE} after the server's clock "
            f"({received.isoformat(timespec='seconds')}); send the time the event happened."
        )
    return stamp


def check_batch(n: int, where: str) -> None:
    if n > LIMITS.max_batch:
        raise PayloadTooLargeError(
            f"{where}: at most {LIMITS.max_batch:,} items per call; got {n:,}. Split the batch "
            "(or raise PEXKIT_MAX_BATCH on the server)."
        )
    if n == 0:
        raise InvalidRequestError(f"{where}: expected at least one item; got an empty list.")
