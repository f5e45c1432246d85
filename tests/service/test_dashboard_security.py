"""Dashboard hardening in a real browser: names that are XSS payloads stay text,
the pages carry a nonce-based Content-Security-Policy (and the plots still draw
under it), and the ``?key=`` of a link leaves the URL at once."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from pexkit.simulate.scenarios import NotificationsScenario

from .conftest import ADMIN, client
from .test_api import spec_dict
from .test_dashboard import ARGS, CHROMIUM, browser, open_page  # noqa: F401 - fixture

NAME = "xss-demo"
SCRIPT = "</script><script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
SVG = "<svg onload=window.__pwned=1>"
ARMS = ["control", SCRIPT, IMG]  # light, heavy
OUTCOMES = [SCRIPT + "!", IMG + "!", "revenue"]  # engagement, unsubscribe, revenue
FEATURE = SVG  # the scenario's first noise feature, x0
PAYLOADS = [SCRIPT, IMG, SCRIPT + "!", IMG + "!", FEATURE]
assert len(ARGS) > 0 and CHROMIUM  # the same Chromium settings as test_dashboard


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from .conftest import Server

    tmp = tmp_path_factory.mktemp("dash-xss")
    srv = Server(f"sqlite:///{tmp / 'events.db'}", tmp).start()
    api = client(srv.url, ADMIN, timeout=120)
    spec = spec_dict()
    spec["name"] = NAME
    spec["treatment"]["arms"] = ARMS
    spec["outcomes"] = [{"name": o, "goal": g} for o, g in
                        zip(OUTCOMES, ("maximize", "minimize", "maximize"), strict=True)]
    spec["features"]["numeric"] = [FEATURE if f == "x0" else f
                                   for f in spec["features"]["numeric"]]
    api.create_experiment(spec, tracking=[{"name": IMG + " 90d"}], salt="xss-salt-000001")
    sc, rng, n = NotificationsScenario(), np.random.default_rng(5), 1500
    feats = sc.features(n, rng).rename(columns={"x0": FEATURE})
    ids = [f"u{i}" for i in range(n)]
    decisions = api.decide_batch(NAME, list(zip(ids, feats.to_dict("records"), strict=True)))
    t = np.array([d.treatment_index for d in decisions])
    plain = feats.rename(columns={FEATURE: "x0"})
    y = sc.draw(sc.means(plain)[np.arange(n), t, :], rng, plain)
    names = [*OUTCOMES, IMG + " 90d"]
    api.log_batch(NAME, [{"unit": ids[i], "outcome": o, "value": float(y[i, m]),
                          "event_id": f"{ids[i]}:{m}"} for i in range(n)
                         for m, o in enumerate(names)])
    api.run_job(NAME, "train", learner="t", n_folds=2)
    api.run_job(NAME, "optimize", budget=60, q=2)
    api.close()
    yield srv
    srv.kill()


def open_checked(browser: Any, url: str) -> tuple[Any, list[str]]:  # noqa: F811
    """``open_page``, also naming the URL of any failed response."""
    page, errors = open_page(browser, "about:blank")
    page.on("response", lambda r: errors.append(f"http {r.status}: {r.url}")
            if r.status >= 400 else None)
    page.on("console", lambda m: errors.append(f"at {m.location.get('url')}")
            if m.type == "error" else None)
    page.goto(url)
    return page, errors


def pwned(page: Any) -> Any:
    return page.evaluate("() => window.__pwned")


def assert_secure_headers(headers: dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "'nonce-" in script_src and "unsafe-inline" not in script_src
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"


def test_key_leaves_the_url_and_headers_are_set(hostile: Any) -> None:
    with httpx.Client(base_url=hostile.url) as http:
        for path in ("/", f"/experiments/{NAME}", f"/experiments/{NAME}/report"):
            resp = http.get(path, params={"key": ADMIN}, follow_redirects=False)
            assert resp.status_code == 303, path
            assert resp.headers["location"] == path  # same page, without the key
            cookie = resp.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            assert resp.headers["referrer-policy"] == "no-referrer"
        # a name that is not a plain path segment is percent-encoded in the redirect
        odd = "a?b=c&d e"
        resp = http.get(f"/experiments/{quote(odd, safe='')}", params={"key": ADMIN},
                        follow_redirects=False)
        assert resp.headers["location"] == "/experiments/a%3Fb%3Dc%26d%20e"
        login = httpx.get(f"{hostile.url}/")  # no cookie: the sign-in page
        assert login.status_code == 401
        assert_secure_headers(dict(login.headers))
    with httpx.Client(base_url=hostile.url, cookies={"pexkit_key": ADMIN}) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert_secure_headers(dict(page.headers))
        report = http.get(f"/experiments/{NAME}/report")
        assert report.status_code == 200
        csp = report.headers["content-security-policy"]
        assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
        assert report.headers["x-frame-options"] == "DENY"


def test_payload_names_stay_text(hostile: Any, browser: Any) -> None:  # noqa: F811
    page, errors = open_checked(browser, f"{hostile.url}/?key={ADMIN}")
    assert page.url == f"{hostile.url}/"  # the key left the URL (and the history)
    assert pwned(page) is None
    page.click("#experiments a")
    page.wait_for_selector("#front .main-svg")
    page.wait_for_selector("#importance .main-svg")
    assert page.url == f"{hostile.url}/experiments/{NAME}"
    assert pwned(page) is None
    # the names are shown as typed, as text
    spec_text = page.locator("#spec").inner_text()
    assert all(p in spec_text for p in PAYLOADS)
    assert page.locator("#ate").inner_text().count(SCRIPT) >= 3
    assert page.locator("img[src='x'], svg[onload]").count() == 0
    # the front's axes carry the outcome names, literally
    assert SCRIPT + "! lift" in page.locator("#front").inner_text()
    # click a front point: the policy's arms and outcomes appear as text, nothing runs
    points = page.locator("#front .scatterlayer .point")
    assert points.count() >= 2
    point = points.nth(0)
    point.scroll_into_view_if_needed()
    point.hover(force=True)
    page.wait_for_selector(".hoverlayer .hovertext")
    point.click(force=True)
    page.wait_for_selector("#policy-detail h2")  # the clicked policy's heading
    detail = page.locator("#policy-detail").inner_text()
    assert IMG in detail and SCRIPT in detail
    assert page.locator("#policy-detail img, #policy-detail script").count() == 0
    assert pwned(page) is None
    assert errors == []  # no CSP violation, no script error
    page.close()


def test_report_page_runs_sandboxed(hostile: Any, browser: Any) -> None:  # noqa: F811
    page, errors = open_checked(browser, f"{hostile.url}/experiments/{NAME}?key={ADMIN}")
    page.click("#report-link")
    page.wait_for_selector("#interpretable-policy")
    page.wait_for_selector(".plotly-graph-div .main-svg")
    assert pwned(page) is None
    assert SCRIPT in page.locator("body").inner_text()
    assert errors == []
    page.close()
