"""/docs and /redoc render offline: their JS and CSS come from the server, not a CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .test_dashboard import ARGS, CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from .conftest import Server

    tmp = tmp_path_factory.mktemp("docs")
    srv = Server(f"sqlite:///{tmp / 'events.db'}", tmp).start()
    yield srv
    srv.kill()


def test_docs_assets_are_served_locally(server: Any) -> None:
    html = httpx.get(f"{server.url}/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        resp = httpx.get(f"{server.url}/docs-assets/{asset}")
        assert resp.status_code == 200 and len(resp.content) > 100_000, asset
    redoc = httpx.get(f"{server.url}/redoc").text
    assert "/docs-assets/redoc.standalone.js" in redoc and "fonts.googleapis" not in redoc


def test_swagger_ui_renders_every_tag_without_network(server: Any) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `make test` installs it "
                    "(bash scripts/install-system.sh).")
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def route(r: Any) -> None:  # no network but this server: a CDN request fails here
            if r.request.url.startswith(server.url):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        text = page.locator("#swagger-ui").inner_text()
        assert "/v1/experiments/{name}/decide" in text
        assert page.locator(".opblock").count() >= 20
        browser.close()
    assert outside == []
