"""API keys: authentication before the body is read, scopes, per-experiment limits.

:class:`Gate` is a plain ASGI middleware in front of ``/v1``: a request without
a live key is answered 401 before a byte of its body is read, and a body over
``PEXKIT_MAX_BODY_BYTES`` gets 413 (by its Content-Length, or while it streams).
Key look-ups are cached for :data:`KEY_TTL_S` seconds: a revoked key stops
working at once on the server that revoked it and within that time on others.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
from starlette.exceptions import HTTPException

from pexkit.service.errors import ForbiddenError
from pexkit.service.validation import LIMITS, NAME_PATTERN
from pexkit.store.db import EventStore, KeyInfo

__all__ = ["KEY_TTL_S", "Gate", "KeyCache", "authorize"]

KEY_TTL_S = 5.0
_OPEN = ("/v1/health",)
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: a lean handler for ``POST /v1/experiments/{name}/decide``: (name, key, receive, send)
HotRoute = Callable[[str, KeyInfo, Receive, Send], Awaitable[None]]
_DECIDE = re.compile(r"/v1/experiments/(" + NAME_PATTERN.strip("^$") + r")/decide")


class KeyCache:
    """Key -> rights, cached briefly (unknown keys are not cached)."""

    def __init__(self, store_of: Callable[[], EventStore]) -> None:
        self._store_of = store_of
        self._hits: dict[str, tuple[KeyInfo, float]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> KeyInfo | None:
        hit = self._hits.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        return None

    def lookup(self, key: str) -> KeyInfo | None:
        info = self.cached(key)
        if info is not None:
            return info
        info = self._store_of().key_info(key)
        if info is not None:
            with self._lock:
                if len(self._hits) > 10_000:
                    self._hits.clear()
                self._hits[key] = (info, time.monotonic() + KEY_TTL_S)
        return info

    def forget(self, key_id: int | None = None) -> None:
        with self._lock:
            if key_id is None:
                self._hits.clear()
            else:
                self._hits = {k: v for k, v in self._hits.items() if v[0].id != key_id}


def _key_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    key = None
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                return text[7:].strip() or None
        elif name == b"x-api-key":
            key = value.decode("latin-1").strip() or None
    return key


async def _error(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *_SECURITY_HEADERS, _API_CSP]})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """ASGI middleware: security headers everywhere; key and body size checks on /v1.

    With ``decide``, a single decision (``POST /v1/experiments/{name}/decide``
    with a JSON body) goes from here straight to that handler, past the
    framework's routing, dependency solving and response classes: the hot path
    of a decision service. The FastAPI route of the same path stays in the
    OpenAPI schema and answers everything else (other content types); both
    validate with the same request model and answer the same bodies.
    """

    def __init__(self, app: ASGIApp, keys: KeyCache, decide: HotRoute | None = None) -> None:
        self.app = app
        self.keys = keys
        self.decide = decide

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_secure(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {n.lower() for n, _ in headers}
                headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
                if b"content-security-policy" not in names and path.startswith("/v1"):
                    headers.append(_API_CSP)
                message = {**message, "headers": headers}
            await send(message)

        if not path.startswith("/v1/") or path in _OPEN:
            await self.app(scope, receive, send_secure)
            return
        headers = scope["headers"]
        key = _key_of(headers)
        if key is None:
            await _error(send, 401, "missing API key: send 'Authorization: Bearer KEY' (or "
                         "'X-API-Key: KEY').")
            return
        info = self.keys.cached(key)
        if info is None:
            try:
                info = await anyio.to_thread.run_sync(self.keys.lookup, key)
            except Exception:  # noqa: BLE001 - an unreachable store is 503, not a 500
                await _error(send, 503, "the store is unavailable, so the key cannot be "
                             "checked; retry later (GET /v1/health).")
                return
        if info is None:
            await _error(send, 401, "unknown or revoked API key; ask an admin for a key "
                         "(POST /v1/keys).")
            return
        limit = LIMITS.max_body_bytes
        for name, value in headers:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = limit + 1
                if size > limit:
                    await _error(send, 413, f"request body of {size:,} bytes is over the limit "
                                 f"of {limit:,} (PEXKIT_MAX_BODY_BYTES); split the batch.")
                    return
        scope.setdefault("state", {})["key"] = info
        seen = 0

        async def receive_limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        try:
            hot = _hot_name(scope, path)
            if hot is not None and self.decide is not None:
                await self.decide(hot, info, receive_limited, send_secure)
            else:
                await self.app(scope, receive_limited, send_secure)
        except _TooLarge as exc:
            await _error(send, 413, str(exc.detail))


def _json_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class _TooLarge(HTTPException):
    """Raised while a body streams past the limit (FastAPI passes HTTPException through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit:,} bytes "
                         "(PEXKIT_MAX_BODY_BYTES); split the batch.")


def _hot_name(scope: Scope, path: str) -> str | None:
    """The experiment of a single JSON decide request, or None for any other request."""
    if scope["method"] != "POST" or not path.endswith("/decide"):
        return None
    m = _DECIDE.fullmatch(path)
    if m is None or not _json_body(scope["headers"]):
        return None
    return m.group(1)


def authorize(
    info: KeyInfo | None, needed: str, experiment: str | None = None, any_experiment: bool = False
) -> None:
    """Raise :class:`ForbiddenError` unless the key has ``needed`` (or admin) on ``experiment``.

    ``experiment=None`` means a store-wide action (create experiments or keys):
    only a key that is not limited to experiments may do it.
    """
    if info is None:  # pragma: no cover - the Gate answers 401 before
        raise ForbiddenError("no API key.")
    if needed not in info.scopes and "admin" not in info.scopes:
        raise ForbiddenError(
            f"this key has scopes {sorted(info.scopes)}; this endpoint needs {needed!r}."
        )
    if info.experiments is not None and not any_experiment:
        if experiment is None:
            raise ForbiddenError(
                "this key is limited to experiments "
                f"{sorted(info.experiments)[:10]}; this store-wide action needs a key without "
                "that limit."
            )
        if experiment not in info.experiments:
            raise ForbiddenError(
                f"this key is limited to experiments {sorted(info.experiments)[:10]}; it "
                f"cannot act on {experiment!r:.80}."
            )
