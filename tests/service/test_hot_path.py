"""The lean decide route (in the Gate) answers exactly as the FastAPI route it bypasses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson

import pexkit as px
from pexkit.service.app import create_app
from pexkit.service.auth import Gate

ADMIN = "hot-path-admin-key-0123"


def _plain(app: Any) -> Any:
    """The same app with the Gate's hot route switched off (everything through FastAPI)."""
    for mw in app.user_middleware:
        if mw.cls is Gate:
            mw.kwargs["decide"] = None
    return app


def test_hot_and_framework_routes_answer_alike(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/hot.db"
    asyncio.run(_compare(create_app(db, ADMIN), _plain(create_app(db, ADMIN))))


async def _compare(hot_app: Any, plain_app: Any) -> None:
    async with hot_app.router.lifespan_context(hot_app), \
            plain_app.router.lifespan_context(plain_app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=hot_app),
                              base_url="http://t") as hot, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=plain_app),
                              base_url="http://t") as plain:
        await _cases(hot, plain)


async def _cases(hot: httpx.AsyncClient, plain: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
    spec["name"] = "hot"
    r = await hot.post("/v1/experiments", json={"spec": spec}, headers=auth)
    assert r.status_code == 201, r.text
    sim = px.simulate("notifications", n_units=1, seed=1)
    feats = sim.frame[list(sim.spec.features)].to_dict("records")[0]
    read_key = (await hot.post("/v1/keys", json={"scopes": ["read"]}, headers=auth)).json()["key"]
    cases: list[tuple[str, dict[str, str], bytes]] = [
        ("/v1/experiments/hot/decide", auth, b'{"unit": "u1", "features": FEATS}'),
        ("/v1/experiments/hot/decide", auth, b'{"unit": 7, "features": FEATS}'),
        ("/v1/experiments/hot/decide", auth, b'{"unit": "u2", "features": {}}'),
        ("/v1/experiments/hot/decide", auth, b'{"features": FEATS}'),
        ("/v1/experiments/hot/decide", auth, b'{"unit": "u3", "features": 3}'),
        ("/v1/experiments/hot/decide", auth, b'{"unit": ["x"], "features": FEATS}'),
        ("/v1/experiments/nope/decide", auth, b'{"unit": "u4", "features": FEATS}'),
        ("/v1/experiments/hot/decide", {"Authorization": f"Bearer {read_key}"},
         b'{"unit": "u5", "features": FEATS}'),
        ("/v1/experiments/hot/decide", auth, b'{"unit": "' + b"u" * 201 + b'", "features": {}}'),
    ]
    blob = orjson.dumps(feats)
    for path, headers, body in cases:
        body = body.replace(b"FEATS", blob)
        h = {**headers, "Content-Type": "application/json"}
        a = await hot.post(path, content=body, headers=h)
        b = await plain.post(path, content=body, headers=h)
        assert a.status_code == b.status_code, (path, body[:60], a.text, b.text)
        assert a.json() == b.json(), (path, body[:60])
        for name in ("content-type", "x-frame-options", "content-security-policy"):
            assert a.headers[name] == b.headers[name], name
    # statuses cover success, validation, too long an id, not found and forbidden
    codes = {(await hot.post(p, content=bd.replace(b"FEATS", blob),
                             headers={**h, "Content-Type": "application/json"})).status_code
             for p, h, bd in cases}
    assert codes == {200, 403, 404, 413, 422}
    # invalid JSON: both say 422 with a detail (the parsers' wording differs)
    for client in (hot, plain):
        r = await client.post("/v1/experiments/hot/decide", content=b"{unit",
                        headers={**auth, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"]
