"""The dashboard: server-rendered pages at ``/`` (Jinja2, Plotly inlined, no network).

``/`` lists the experiments; ``/experiments/{name}`` shows one: phase, spec,
its live health (each monitoring flag with its reason and fix), average effects,
the interactive Pareto front (click a point to see that policy), candidates and
online arms, the launched policy's backtest over time, its interpretable policy
tree, and the effect segments. Pages need a key with
the ``read`` scope, given once as ``?key=...``: it is kept in an HttpOnly,
SameSite=Strict cookie and the page redirects to its own URL without the key
(so the key stays out of the history and of Referer headers).

Every name on these pages (experiment, arms, outcomes, features) is user data:
HTML is escaped (Jinja autoescape, ``html.escape``), data for scripts travels
in ``<script type="application/json">`` blocks with ``<``, ``>``, ``&`` and
U+2028/2029 escaped and is read with ``JSON.parse``, and the page's own script
writes text with ``textContent`` only. Responses carry a Content-Security-Policy
whose ``script-src`` is a per-response nonce (Plotly needs neither ``eval`` nor
inline handlers; its inline ``style`` attributes need ``style-src
'unsafe-inline'``), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``
and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import html
import json
import math
import secrets
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import plotly.graph_objects as go
import plotly.io as pio
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from pexkit.service.core import DecisionService
from pexkit.service.errors import NotFoundError, ServiceRequestError
from pexkit.spec.spec import ExperimentSpec
from pexkit.store.db import KeyInfo

__all__ = ["mount_dashboard"]

_CONFIG = {"displaylogo": False, "responsive": True}


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("pexkit.service", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


_SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _csp(nonce: str) -> str:
    """The dashboard pages' policy: scripts only with this response's nonce."""
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        "style-src 'unsafe-inline'; "  # Plotly sets inline styles and <style> rules
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


# The static report is a standalone document whose inline scripts carry no nonce:
# it runs in a sandbox (an opaque origin: no cookies, no same-origin API calls).
_REPORT_CSP = (
    "sandbox allow-scripts allow-popups; default-src 'none'; "
    "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "font-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _secure(resp: Response, csp: str) -> Response:
    """Add the security headers to a dashboard response."""
    resp.headers["Content-Security-Policy"] = csp
    for k, v in _SECURITY_HEADERS.items():
        resp.headers[k] = v
    return resp


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    from pexkit.report.scorecard import CSS

    text = _env().get_template("dashboard.html.j2").render(
        title=title, body=body, plotly_js=_plotly_js(), nonce=nonce, scorecard_css=CSS
    )
    resp = HTMLResponse(text, status_code=status)
    _secure(resp, _csp(nonce))
    return resp


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (and HTML in general).

    ``<``, ``>``, ``&`` and U+2028/2029 become ``\\u`` escapes, e.g. ``\\u003c`` (the JSON
    value is unchanged); non-finite floats become ``null`` so ``JSON.parse``
    accepts it.
    """
    text = json.dumps(_finite(value), allow_nan=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _data_block(block_id: str, value: Any) -> str:
    """A non-executed data block that the page script reads with ``JSON.parse``."""
    return f'<script type="application/json" id="{_e(block_id)}">{_script_json(value)}</script>'


def _label(x: Any) -> str:
    """A user-named value inside Plotly text (titles, ticks, hover): shown literally.

    Plotly renders a small subset of HTML tags in its text and decodes entities
    after it has split the tags, so escaping ``<``, ``>`` and ``&`` makes a name
    like ``<b>x</b>`` display as typed. (Plotly builds SVG text nodes; it never
    passes text through ``innerHTML``.)
    """
    return html.escape(str(x), quote=False)


def _fig(fig: go.Figure, div_id: str) -> str:
    """A plot: an empty div plus its figure as a data block (the page script draws it)."""
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=380,
                      template="plotly_white")
    spec = json.loads(str(pio.to_json(fig, validate=False)))
    return (f"<div id='{_e(div_id)}' class='pk-plot'></div>"
            + _data_block(f"{div_id}-figure", {**spec, "config": _CONFIG}))


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    try:
        return f"{float(x):+.{digits}g}"
    except (TypeError, ValueError):
        return _e(x)


def _pct(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.1%}"


def _table(rows: list[dict[str, Any]], cols: list[str], table_id: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"<td>{_num(v) if isinstance(v, float) else _e('' if v is None else v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Explain:
    """Policy tree and segments per (experiment, model, policy): computed once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, svc: DecisionService, name: str) -> dict[str, Any] | None:
        state = svc.experiment(name).state
        model_id = state.model_id
        if model_id is None:
            return None
        version = state.launched_version
        if version is None:  # not launched: explain the utility candidate
            pols = [p for p in svc.store.policies(name) if p["label"].startswith("utility")]
            version = pols[-1]["version"] if pols else None
        key = (name, model_id, version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        out = self._compute(svc, int(model_id), name, version)
        with self._lock:
            self._cache[key] = out
        return out

    @staticmethod
    def _compute(svc: DecisionService, model_id: int, name: str, version: int | None) -> dict[str, Any]:
        from pexkit import explain
        from pexkit.policy.linear import LinearPolicy

        model = svc.registry.effect_model(model_id)
        log = svc.registry.training_log(model_id)
        out: dict[str, Any] = {"version": version}
        if version is not None:
            prow = svc.store.policy(name, version)
            if prow is not None and prow["kind"] == "tree":  # a launched tree explains itself
                tree = svc.registry.distilled(int(prow["model_id"]))
                out["tree_text"] = str(tree)
                out["fidelity"] = (tree.fidelity, *tree.fidelity_ci)
                out["value_kept"] = (tree.value_kept, *tree.value_kept_ci)
            if prow is not None and prow["kind"] == "linear":
                policy = LinearPolicy(model.spec_, weights=prow["params"]["weights"],
                                      biases=prow["params"]["biases"])
                tree = explain.distill(policy, model, log, max_depth=3)
                out["tree_text"] = str(tree)
                out["fidelity"] = (tree.fidelity, *tree.fidelity_ci)
                out["value_kept"] = (tree.value_kept, *tree.value_kept_ci)
        if hasattr(explain, "segments"):
            seg = explain.segments(model, log, max_depth=2)
            out["segments"] = seg.to_frame().to_dict(orient="records")
        if hasattr(explain, "feature_importance"):
            imp = explain.feature_importance(model)
            out["importance"] = imp.to_dict(orient="records")
        return out


def mount_dashboard(app: FastAPI, svc: Callable[[], DecisionService]) -> None:
    """Add the dashboard routes to ``app``."""
    explainer = _Explain()

    def authorized(request: Request) -> tuple[str, KeyInfo] | None:
        key = request.query_params.get("key") or request.cookies.get("pexkit_key")
        if not key or len(key) > 256:
            return None
        info = svc().store.key_info(key)
        if info is None or not ({"read", "admin"} & info.scopes):
            return None
        return key, info

    def may_read(info: KeyInfo, name: str) -> bool:
        return info.experiments is None or name in info.experiments

    def not_found(name: str) -> HTMLResponse:
        return _page("not found", f"<section><p>experiment {_e(repr(name))} not found (or "
                     "this key may not read it).</p></section>", 404)

    def login(status: int = 401) -> HTMLResponse:
        body = (
            "<section><h1>Sign in</h1><p>The dashboard needs an API key with the "
            "<code>read</code> scope.</p><form method='get'><input name='key' type='password' "
            "size='40' aria-label='API key'> <button>Open</button></form></section>"
        )
        return _page("sign in", body, status)

    def keyed(request: Request, key: str, path: str) -> Response | None:
        """A key given in the URL: keep it in a cookie and reload ``path`` without it."""
        if not request.query_params.get("key"):
            return None
        resp = RedirectResponse(path, status_code=303)
        resp.set_cookie("pexkit_key", key, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return _secure(resp, _csp(secrets.token_urlsafe(18)))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> Response:
        auth = authorized(request)
        if auth is None:
            return login()
        if (redirect := keyed(request, auth[0], "/")) is not None:
            return redirect
        rows = []
        for exp_name in svc().store.experiment_names():
            if not may_read(auth[1], exp_name):
                continue
            d = svc().describe(exp_name)
            rows.append(
                f"<tr><td><a href='{_e(_path(d['name']))}'>{_e(d['name'])}</a></td>"
                f"<td><span class='phase {_e(d['phase'])}'>{_e(d['phase'])}</span></td>"
                f"<td>{sum(d['assignments'].values()):,}</td><td>{d['events']:,}</td>"
                f"<td>{_e(d['launched_version'] or '–')}</td></tr>"
            )
        body = (
            "<h1>Experiments</h1><section><table id='experiments'><thead><tr><th>experiment</th>"
            "<th>phase</th><th>units</th><th>events</th><th>launched version</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )
        return _page("experiments", body)

    @app.get("/experiments/{name}", response_class=HTMLResponse, include_in_schema=False)
    def experiment_page(name: str, request: Request) -> Response:
        auth = authorized(request)
        if auth is None:
            return login()
        if (redirect := keyed(request, auth[0], _path(name))) is not None:
            return redirect
        if not may_read(auth[1], name):
            return not_found(name)
        try:
            body = _experiment_body(svc(), name, explainer)
        except NotFoundError:
            return not_found(name)
        except ServiceRequestError as exc:
            return _page("unavailable", f"<section><p>{_e(exc)}</p></section>", 409)
        return _page(name, body)

    reports: dict[tuple[str, int, int], str] = {}

    @app.get("/experiments/{name}/report", response_class=HTMLResponse, include_in_schema=False)
    def experiment_report(name: str, request: Request) -> Response:
        """The static analysis report of the experiment's current model and front."""
        auth = authorized(request)
        if auth is None:
            return login()
        if (redirect := keyed(request, auth[0], _path(name) + "/report")) is not None:
            return redirect
        if not may_read(auth[1], name):
            return not_found(name)
        try:
            state = svc().experiment(name).state
        except NotFoundError:
            return not_found(name)
        model_id, front_id = state.model_id, state.front_id
        if model_id is None or front_id is None:
            return _page(name, "<section><p>No report yet: run the 'train' and 'optimize' "
                         "jobs first.</p></section>", 404)
        cache_key = (name, int(model_id), int(front_id))
        if cache_key not in reports:
            from pexkit.optimize.front import front_from_dict
            from pexkit.report.html import render_report

            model = svc().registry.effect_model(int(model_id))
            front = front_from_dict(svc().registry.json_blob(int(front_id), "front"),
                                    model.spec_)
            log = svc().registry.training_log(int(model_id))
            reports[cache_key] = render_report(log, model, front)
        return _secure(HTMLResponse(reports[cache_key]), _REPORT_CSP)


def _path(name: str) -> str:
    """The experiment page's URL path (the name percent-encoded: ``a?b=c``, ``a/b``)."""
    return "/experiments/" + quote(name, safe="")


def _experiment_body(svc: DecisionService, name: str, explainer: _Explain) -> str:
    d = svc.describe(name)
    state = svc.experiment(name).state
    report_link = (
        f" <a id='report-link' href='{_e(_path(name))}/report' style='font-size:0.9rem'>"
        "full analysis report</a>" if state.front_id is not None else ""
    )
    parts = [
        f"<h1>{_e(name)} <span class='phase {_e(d['phase'])}' id='phase'>{_e(d['phase'])}</span>"
        f"{report_link}</h1>",
        "<section><div class='grid'><div><h2>Status</h2>"
        + _table([{"what": k, "value": v} for k, v in (
            ("units by phase", ", ".join(f"{p}: {n:,}" for p, n in d["assignments"].items()) or "0"),
            ("outcome events", f"{d['events']:,}"), ("duplicates ignored", d["duplicates"]),
            ("launched version", d["launched_version"] or "–"),
            ("holdout", f"{d['holdout']:.0%}"), ("model", d["model_id"] or "not trained"),
        )], ["what", "value"])
        + "</div><div><h2>Spec</h2><pre id='spec'>"
        + _e(yaml.safe_dump({**d["spec"], "tracking": d["tracking"]}, sort_keys=False))
        + "</pre></div></div></section>",
    ]
    try:
        parts.append(_health_section(svc.health(name)))
    except Exception as exc:  # noqa: BLE001 - the page still renders
        parts.append(f"<section id='health'><h2>Health</h2><p class='neg'>could not check: "
                     f"{_e(exc)}</p></section>")
    if d["ate"]:
        parts.append(_ate_section(d, svc.front(name) if state.front_id is not None else None))
    if state.front_id is not None:
        parts.append(_front_section(svc.front(name), _front_marks(svc, name)))
    arms = svc.tune_results(name)
    if arms:
        outs = [o["name"] for o in d["spec"]["outcomes"]] + [t["name"] for t in d["tracking"]]
        tuning = svc.tuning(name)
        words = {a["arm"]: a["policy"] for a in tuning["arms"]}
        flat = [{"round": a["round"] if a["round"] is not None else a["epoch"],
                 "arm": a["arm_number"] if a["arm_number"] is not None else a["arm"],
                 "version": a["version"], "units": f"{(a['metrics'] or {}).get('n', 0):,}",
                 **_arm_means(a["metrics"] or {}, outs), "policy": words.get(a["arm"], "")}
                for a in arms]
        parts.append("<section><h2>Online arms (tune phase)</h2>"
                     + _table(flat, ["round", "arm", "version", "units",
                                     *(f"{o}: mean [95% CI]" for o in outs), "policy"], "arms")
                     + _tuning_verdicts(tuning) + "</section>")
    if state.launch_epoch is not None:
        parts.append(_backtest_section(svc.backtest(name)))
    try:
        ex = explainer.get(svc, name)
    except Exception as exc:  # noqa: BLE001 - the page still renders
        ex = {"error": str(exc)}
    if ex:
        parts.append(_explain_section(ex))
    return "".join(parts)


def _health_section(h: dict[str, Any]) -> str:
    """Live monitoring: each flag coloured by status, with its reason and fix."""
    flags = "".join(
        f"<li class='flag {_e(f['status'])}' data-flag='{_e(f['name'])}'><strong>"
        f"{_e(f['name'].replace('_', ' '))}</strong> <span class='status'>{_e(f['status'])}"
        f"</span><div class='reason'>{_e(f['reason'])}</div>"
        + ("" if f["status"] == "ok" else f"<div class='fix'>Fix: {_e(f['fix'])}</div>")
        + "</li>" for f in h["flags"])
    dec, ev = h["traffic"]["decisions"], h["traffic"]["events"]
    win = h["settings"]["window_minutes"]
    traffic = (f"per minute, last {win:g} min: {dec['per_minute_window']:.3g} decisions, "
               f"{ev['per_minute_window']:.3g} events · since the phase started: "
               f"{dec['per_minute_since_start']:.3g} decisions, "
               f"{ev['per_minute_since_start']:.3g} events")
    drift = [{"feature": r["feature"], "kind": r["kind"], "psi": f"{r['psi']:.3f}",
              "status": r["status"]} for r in h["drift"]["features"][:8]]
    table = ("<h3>Feature drift (PSI, live vs training log; &gt; 0.25 alert, 0.1-0.25 warn)</h3>"
             + _table(drift, ["feature", "kind", "psi", "status"], "drift") if drift else "")
    return (f"<section id='health'><h2>Health <span class='flag-status {_e(h['status'])}' "
            f"id='health-status'>{_e(h['status'])}</span></h2>"
            f"<p class='muted'>{_e(traffic)}</p><ul class='flags'>{flags}</ul>{table}</section>")


def _tuning_verdicts(tuning: dict[str, Any]) -> str:
    """The best completed arm per objective (mean, 95% CI) and Ax's recommendation."""
    from pexkit._stats import Z95
    from pexkit.report.scorecard import fmt_interval, fmt_number

    best = [{"objective": f"{o} ({b['goal']})", "best arm": f"round {b['round']} arm "
             f"{b['arm_number']} (version {b['version']})",
             "mean [95% CI]": " ".join(fmt_interval(b["mean"], b["ci_low"], b["ci_high"],
                                                    signed=False))}
            for o, b in tuning["best"].items()]
    rec = []
    for r in tuning["recommendation"]:
        predicted = "; ".join(
            f"{o} {fmt_number(v['mean'])}" + (f" ± {fmt_number(Z95 * v['sem'])}"
                                             if v.get("sem") is not None else "")
            for o, v in r["predicted"].items())
        rec.append({"arm": f"round {r['round']} arm {r['arm_number']} (version {r['version']})"
                    if r["arm"] else f"trial {r['trial']}",
                    "Ax's predicted means (95%)": predicted, "policy": r["policy"]})
    out = ""
    if best:
        out += ("<h3>Best arm so far, per objective (completed rounds)</h3>"
                + _table(best, ["objective", "best arm", "mean [95% CI]"], "tuning-best"))
    if rec:
        out += ("<h3>Ax recommends</h3><p class='muted'>Ax's model of the completed arms: "
                "the arm it would keep (several when objectives trade off: its Pareto "
                "frontier), with its predicted means.</p>"
                + _table(rec, ["arm", "Ax's predicted means (95%)", "policy"],
                         "tuning-recommendation"))
    return out


def _front_marks(svc: DecisionService, name: str) -> dict[str, Any]:
    """What the front's plot marks besides its own policies: tuned arms (their offline DR
    lifts, stored when they were proposed) and the launched version (followed back through
    distilled trees and serving refits to the linear policy it came from)."""
    state = svc.experiment(name).state
    policies = {int(p["version"]): p for p in svc.policies(name)}
    tuned = [{"version": v, "label": p["label"], **p["params"]["offline"]}
             for v, p in policies.items()
             if str(p.get("label", "")).startswith("tune round")
             and isinstance(p.get("params"), dict) and p["params"].get("offline")]
    source = state.launched_version
    seen: set[int] = set()
    while source in policies and source not in seen:
        seen.add(source)
        parent = (policies[source].get("params") or {}).get("source_version")
        if parent is None:
            break
        source = int(parent)
    row = policies.get(source) if source is not None else None
    return {"tuned": tuned, "launched": state.launched_version,
            "launched_source": source, "launched_label": row["label"] if row else None,
            "launched_offline": (row.get("params") or {}).get("offline") if row else None}


def _rule_words(spec: ExperimentSpec, p: dict[str, Any]) -> str:
    """A linear policy's rule in words: the utility it maximizes and its biases."""
    from pexkit.policy.linear import LinearPolicy

    policy = LinearPolicy(spec, weights=p["weights"], biases=p["biases"])
    text = (f"each unit gets the arm with the largest predicted "
            f"{policy.utility_text()} (effects vs {spec.control})")
    shifts = policy.shift_text()
    return text + (f", with the utility shifted by {shifts}" if shifts else "")


def _front_section(front: dict[str, Any], marks: dict[str, Any] | None = None) -> str:
    outs = [o["name"] for o in front["outcomes"]]
    pols = front["policies"]
    marks = marks or {}
    versions = (front.get("meta") or {}).get("versions") or {}
    spec = ExperimentSpec.from_dict(front["spec"]) if front.get("spec") else None
    for p in pols:  # one name per policy: its front label, and the version it became
        p["version"] = versions.get(str(p["id"]))
        p["title"] = str(p["id"]) + (f" · version {p['version']}" if p["version"] else "")
        if spec is not None:
            p["rules"] = _rule_words(spec, p)
    x_name, y_name = outs[0], outs[1] if len(outs) > 1 else outs[0]
    color = outs[2] if len(outs) > 2 else None
    fig = go.Figure()
    for cand in (False, True):
        sub = [p for p in pols if bool(p.get("candidate")) == cand]
        if not sub:
            continue
        fig.add_trace(go.Scatter(
            x=[p["lift"][x_name] for p in sub], y=[p["lift"][y_name] for p in sub],
            mode="markers", name="candidate" if cand else "front",
            customdata=[str(p["id"]) for p in sub], text=[p["title"] for p in sub],
            marker={"size": 13 if cand else 8, "symbol": "star" if cand else "circle",
                    "color": [p["lift"][color] for p in sub] if color else None,
                    "colorscale": "Viridis", "showscale": not cand and color is not None,
                    # the lower half of the right margin: the legend sits above it
                    "colorbar": {"title": _label(color), "len": 0.5, "y": 0,
                                 "yanchor": "bottom"} if color else None},
            hovertemplate="%{text}<br>" + _label(x_name)
            + " %{x:.4g}<br>" + _label(y_name) + " %{y:.4g}<extra></extra>",
        ))
    tuned = [t for t in marks.get("tuned", []) if x_name in t["lift"] and y_name in t["lift"]]
    if tuned:
        fig.add_trace(go.Scatter(
            x=[t["lift"][x_name] for t in tuned], y=[t["lift"][y_name] for t in tuned],
            mode="markers", name="tuned arm (online)",
            text=[f"{t['label']} · version {t['version']}" for t in tuned],
            marker={"size": 10, "symbol": "triangle-up", "color": "#e37400"},
            hovertemplate="%{text}<br>" + _label(x_name) + " %{x:.4g}<br>" + _label(y_name)
            + " %{y:.4g}<extra></extra>",
        ))
    launched = marks.get("launched")
    if launched is not None:
        label = marks.get("launched_label")
        spot = next((p["lift"] for p in pols if str(p["id"]) == label), None)
        spot = spot or (marks.get("launched_offline") or {}).get("lift")
        if spot and x_name in spot and y_name in spot:
            fig.add_trace(go.Scatter(
                x=[spot[x_name]], y=[spot[y_name]], mode="markers",
                name=f"launched (version {launched})",
                text=[f"launched: version {launched} (from {label})"],
                marker={"size": 18, "symbol": "diamond-open", "color": "#b3261e",
                        "line": {"width": 3}},
                hovertemplate="%{text}<extra></extra>",
            ))
    fig.update_layout(title=f"Pareto front: DR lift vs control ({len(pols)} policies; "
                      "click a point)", xaxis_title=f"{_label(x_name)} lift",
                      yaxis_title=f"{_label(y_name)} lift")
    detail = {str(p["id"]): {k: p.get(k) for k in ("id", "title", "version", "candidate",
                                                      "weights", "lift", "lift_ci", "share",
                                                      "biases", "rules", "vs_best_single")}
              for p in pols}
    hv = front.get("hypervolume")
    pers = (front.get("meta") or {}).get("personalization") or {}
    said = "".join(f"<p class='personalization'>{_e(text)}</p>" for text in (
        pers.get("sentence") and f"Personalization: {pers['sentence']}",
        pers.get("candidates_note") and f"Candidates: {pers['candidates_note']}") if text)
    return ("<section><h2>Offline Pareto front</h2>" + said + "<p class='muted'>hypervolume "
            f"{_num(hv)}; reference point {_e(front.get('reference_point'))}</p>"
            + _fig(fig, "front") + "<div id='policy-detail' class='muted'>Click a point to see "
            "its policy.</div>" + _data_block("front-policies", detail) + "</section>")


def _backtest_section(bt: dict[str, Any]) -> str:
    rows = bt["outcomes"]
    fig = go.Figure()
    pts: list[tuple[int, dict[str, Any]]] = [(c["units"], next((r for r in c["outcomes"] if r["outcome"] == "utility"), {}))
           for c in bt["over_time"]]
    pts = [(u, r) for u, r in pts if "lift" in r]
    if pts:
        xs = [u for u, _ in pts]
        fig.add_trace(go.Scatter(x=xs + xs[::-1],
                                 y=[r["ci_high"] for _, r in pts] + [r["ci_low"] for _, r in pts][::-1],
                                 fill="toself", line={"width": 0}, name="95% CI",
                                 fillcolor="rgba(66,133,244,0.2)"))
        fig.add_trace(go.Scatter(x=xs, y=[r["lift"] for _, r in pts], mode="lines+markers",
                                 name="utility lift"))
    fig.update_layout(title="Backtest over time: policy - holdout (utility)",
                      xaxis_title="units launched", yaxis_title="lift")
    return ("<section><h2>Launched policy vs holdout (version "
            f"{_e(bt['version'])}, holdout {bt['holdout']:.0%})</h2><div class='grid'><div>"
            + _backtest_scorecard(rows)
            + "<p class='note'>Always-valid 95% CI: a confidence sequence that stays at 95% "
            "however often this page is read; the colours follow it (green: significantly "
            "better by the metric's goal, red: worse, grey: inconclusive). The one-look 95% CI "
            "holds for one planned look only.</p>"
            + _predicted_note(bt.get("predicted"))
            + "</div><div>" + _fig(fig, "backtest-plot") + "</div></div></section>")


def _ate_section(d: dict[str, Any], front: dict[str, Any] | None) -> str:
    """Average effects vs control as a scorecard, coloured by each outcome's goal.

    The control mean is the DR value of all-control (stored with the model; for a
    model trained before it was, the front's ``control_value``).
    """
    from pexkit.report.scorecard import ScoreRow, guardrail_limits, html_table

    names = [o["name"] for o in d["spec"]["outcomes"]]
    goals = {o["name"]: o.get("goal", "maximize") for o in d["spec"]["outcomes"]}
    meta = (front or {}).get("meta") or {}
    guards = guardrail_limits(meta.get("guardrails"))
    dr_control = dict(zip(names, meta.get("control_value") or [], strict=False))
    rows = [
        ScoreRow(str(r["outcome"]), goals.get(r["outcome"], "maximize"), r.get("estimate"),
                 r.get("ci_low"), r.get("ci_high"),
                 control_mean=r.get("control_mean", dr_control.get(r["outcome"])),
                 label=str(r["treatment"]), guardrail=guards.get(r["outcome"]))
        for r in d["ate"]
    ]
    return ("<section><h2>Average effects vs control (DR, 95% CI)</h2>"
            + html_table(rows, label_column="Treatment", table_id="ate")
            + "<p class='note'>Control mean: the DR value of sending everyone control. "
            "Green: significantly better by the outcome's goal (the CI excludes 0), red: "
            "significantly worse, grey: inconclusive.</p></section>")


def _backtest_scorecard(rows: list[dict[str, Any]]) -> str:
    """Launched policy vs holdout per metric, as a scorecard (one row per metric)."""
    from pexkit.report.scorecard import COLUMNS, ScoreRow, fmt_interval, html_table

    card = [
        ScoreRow(str(r["outcome"]), r.get("goal", "maximize"), r.get("lift"),
                 r.get("always_valid_low"), r.get("always_valid_high"),
                 control_mean=r.get("holdout_mean"), treatment_mean=r.get("policy_mean"),
                 extra=(fmt_interval(r.get("lift"), r.get("ci_low"), r.get("ci_high"))[1],
                        f"{r.get('n_policy', 0):,} / {r.get('n_holdout', 0):,}"))
        for r in rows
    ]
    return html_table(
        card, headers=("Holdout mean", "Policy mean", "Change", "Always-valid 95% CI",
                       *COLUMNS[4:]),
        extra_columns=("95% CI (one look)", "Units (policy / holdout)"), table_id="backtest")


def _arm_means(metrics: dict[str, Any], outs: list[str]) -> dict[str, str]:
    """Per outcome of a tuning arm: its mean with a 95% CI from the standard error."""
    from pexkit._stats import Z95
    from pexkit.report.scorecard import fmt_interval

    n = int(metrics.get("n", 0) or 0)
    out: dict[str, str] = {}
    for o in outs:
        m = metrics.get(o)
        if not isinstance(m, dict) or m.get("mean") is None:
            out[f"{o}: mean [95% CI]"] = "–"
            continue
        mean, sem = float(m["mean"]), m.get("sem")
        lo, hi = ((mean - Z95 * float(sem), mean + Z95 * float(sem))
                  if n >= 2 and sem is not None else (None, None))
        out[f"{o}: mean [95% CI]"] = " ".join(fmt_interval(mean, lo, hi, signed=False))
    return out


def _predicted_note(pred: dict[str, Any] | None) -> str:
    """The offline DR prediction of the utility lift, to read beside the measured one."""
    if not pred or "utility" not in pred:
        return ""
    u = pred["utility"]
    from pexkit.report.scorecard import fmt_interval

    lift, ci = fmt_interval(u["lift"], u["ci_low"], u["ci_high"])
    return (f"<p class='note'>Predicted offline (DR on the {pred['n_units']:,} training units): "
            f"utility lift {_e(lift)} {_e(ci)}.</p>")


def _explain_section(ex: dict[str, Any]) -> str:
    parts = ["<section><h2>Interpretable policy (depth-3 tree"
             + (f", policy version {_e(ex['version'])}" if ex.get("version") else "") + ")</h2>"]
    if "error" in ex:
        parts.append(f"<p class='neg'>could not explain: {_e(ex['error'])}</p>")
    if "tree_text" in ex:
        f, flo, fhi = ex["fidelity"]
        v, vlo, vhi = ex["value_kept"]
        parts.append(f"<p>fidelity {_pct(f)} [{_pct(flo)}, {_pct(fhi)}] · value kept {_pct(v)} "
                     f"[{_pct(vlo)}, {_pct(vhi)}]</p><pre id='policy-tree'>{_e(ex['tree_text'])}</pre>")
    parts.append("</section>")
    if ex.get("segments"):
        segs = ex["segments"]
        cols = [c for c in ("segment", "rule", "size", "treatment", "outcome", "estimate",
                            "ci_low", "ci_high") if c in segs[0]]
        parts.append("<section><h2>Segments (honest DR estimates, 95% CI)</h2>"
                     + _table(segs, cols, "segments") + "</section>")
    if ex.get("importance"):
        imp = ex["importance"][:15]
        fig = go.Figure(go.Bar(x=[r.get("importance", 0) for r in imp][::-1],
                               y=[_label(r.get("feature")) for r in imp][::-1], orientation="h"))
        fig.update_layout(title="What drives the effects (feature importance)")
        parts.append("<section>" + _fig(fig, "importance") + "</section>")
    return "".join(parts)
