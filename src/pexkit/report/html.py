"""report.html: a self-contained page a product engineer can read (Plotly inlined, Jinja2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.effects.diagnostics import calibration, uplift_curve
from pexkit.optimize import ParetoFront

__all__ = ["render_report", "tradeoff_sentences", "write_report"]


def _num(x: float) -> str:
    return f"{x:+.3g}"


def _pct(x: float) -> str:
    return f"{x:+.1f}%"


def _relative(lift: float, control: float) -> float | None:
    return None if abs(control) < 1e-12 else 100.0 * lift / abs(control)


def tradeoff_sentences(front: ParetoFront, control_value: np.ndarray, which: list[int]) -> list[str]:
    """Plain-language sentences: what each policy gains and what it costs, vs control."""
    spec = front.spec
    ci = front.lift_ci
    labels = front.labels
    out = []
    for p in which:
        gains: list[str] = []
        costs: list[str] = []
        for m, o in enumerate(spec.outcome_names):
            lift = front.lifts[p, m]
            rel = _relative(lift, control_value[m])
            lo, hi = ci[p, m]
            if rel is not None:
                rlo, rhi = _relative(lo, control_value[m]), _relative(hi, control_value[m])
                text = f"{_pct(rel)} {o} [{_pct(rlo or 0)}, {_pct(rhi or 0)}]"
            else:
                text = f"{_num(lift)} {o} [{_num(lo)}, {_num(hi)}]"
            good = lift * spec.signs[m] > 0
            (gains if good else costs).append(text)
        shares = ", ".join(
            f"{front.shares[p, k]:.0%} {a}" for k, a in enumerate(spec.arms) if front.shares[p, k] > 0.005
        )
        sentence = f"{labels[p]} gains {', '.join(gains) or 'nothing'}"
        sentence += f" at {', '.join(costs)}" if costs else " with no outcome worse"
        sentence += f" vs all-{spec.control} (sends {shares})."
        out.append(sentence)
    return out


def _hover(front: ParetoFront, p: int) -> str:
    spec = front.spec
    ci = front.lift_ci
    labels = front.labels
    lines = [f"<b>{labels[p]}</b>"]
    for m, o in enumerate(spec.outcome_names):
        lines.append(f"{o}: {_num(front.lifts[p, m])} [{_num(ci[p, m, 0])}, {_num(ci[p, m, 1])}]")
    lines.append("shares: " + ", ".join(f"{a} {front.shares[p, k]:.0%}" for k, a in enumerate(spec.arms)))
    if not labels[p].startswith("all "):
        policy = front.policies[p]
        lines.append("weights: " + ", ".join(f"{o}={w:.3g}" for o, w in policy.weights.items()))
        for arm, per in policy.biases.items():
            lines.append(f"bias {arm}: " + ", ".join(f"{o}={b:.3g}" for o, b in per.items()))
    return "<br>".join(lines)


def _front_figure(front: ParetoFront) -> go.Figure:
    spec = front.spec
    names = spec.outcome_names
    pairs = [(a, b) for a in range(len(names)) for b in range(a + 1, len(names))] or [(0, 0)]
    fig = make_subplots(
        rows=1, cols=len(pairs),
        subplot_titles=[f"{names[b]} vs {names[a]}" for a, b in pairs],
    )
    labels = front.labels
    on = np.asarray(front.on_front, dtype=bool)
    cand = np.asarray(front.candidate, dtype=bool)
    single = np.array([lab.startswith("all ") for lab in labels])
    groups = [
        ("front", on & ~single & ~cand, {"size": 8, "color": "#1a73e8", "symbol": "circle"}),
        ("candidate", cand & ~single, {"size": 14, "color": "#f9ab00", "symbol": "star", "line": {"width": 1, "color": "#5f4b00"}}),
        ("single treatment", single, {"size": 12, "color": "#d93025", "symbol": "diamond"}),
    ]
    hover = [_hover(front, p) for p in range(len(front))]
    for col, (a, b) in enumerate(pairs, start=1):
        for name, mask, marker in groups:
            idx = np.flatnonzero(mask)
            fig.add_trace(
                go.Scatter(
                    x=front.lifts[idx, a], y=front.lifts[idx, b], mode="markers",
                    marker=marker, name=name, legendgroup=name, showlegend=col == 1,
                    text=[hover[i] for i in idx], hoverinfo="text",
                    customdata=[labels[i] for i in idx],
                ),
                row=1, col=col,
            )
        fig.update_xaxes(title_text=f"{names[a]} lift", row=1, col=col, zeroline=True)
        fig.update_yaxes(title_text=f"{names[b]} lift", row=1, col=col, zeroline=True)
    fig.update_layout(height=420, margin={"l": 40, "r": 20, "t": 40, "b": 40}, legend={"orientation": "h"})
    return fig


def _grid(model: EffectModel, kind: str) -> go.Figure:
    spec = model.spec_
    K, M = spec.n_treatments, spec.n_outcomes
    titles = [
        f"{spec.arms[k]} · {o} ({model.chosen_[k, m]})"
        for k in range(1, K) for m, o in enumerate(spec.outcome_names)
    ]
    fig = make_subplots(rows=K - 1, cols=M, subplot_titles=titles)
    for k in range(1, K):
        for m in range(M):
            if kind == "calibration":
                cal = calibration(model, k, m)
                fig.add_trace(go.Scatter(
                    x=cal.predicted, y=cal.estimated, mode="markers",
                    error_y={"type": "data", "array": 1.96 * cal.se}, marker={"color": "#1a73e8"},
                    showlegend=False, hovertemplate="predicted %{x:.3g}<br>DR estimate %{y:.3g}",
                ), row=k, col=m + 1)
                lo = float(min(cal.predicted.min(), cal.estimated.min()))
                hi = float(max(cal.predicted.max(), cal.estimated.max()))
                fig.add_trace(go.Scatter(
                    x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dash", "color": "#9aa0a6"},
                    showlegend=False, hoverinfo="skip",
                ), row=k, col=m + 1)
            else:
                up = uplift_curve(model, k, m)
                fig.add_trace(go.Scatter(
                    x=up.fraction, y=up.gain, mode="lines", line={"color": "#1a73e8"},
                    showlegend=False, hovertemplate="treat top %{x:.0%}<br>gain %{y:.3g}",
                ), row=k, col=m + 1)
                fig.add_trace(go.Scatter(
                    x=up.fraction, y=up.random, mode="lines", line={"dash": "dash", "color": "#9aa0a6"},
                    showlegend=False, hoverinfo="skip",
                ), row=k, col=m + 1)
    title = "Calibration: predicted vs DR-estimated effect" if kind == "calibration" else "Uplift curves (goal-signed)"
    fig.update_layout(height=260 * (K - 1) + 60, title=title, margin={"l": 40, "r": 20, "t": 70, "b": 30})
    return fig


def _history_figure(front: ParetoFront) -> go.Figure | None:
    history = front.meta.get("history")
    if not history:
        return None
    xs, ys = zip(*history, strict=True)
    fig = go.Figure(go.Scatter(x=list(xs), y=list(ys), mode="lines+markers"))
    fig.update_layout(
        height=260, title="Hypervolume vs policies evaluated",
        xaxis_title="evaluations", yaxis_title="hypervolume", margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return fig


def render_report(
    data: LoggedData, model: EffectModel, front: ParetoFront, candidates: ParetoFront | None = None
) -> str:
    """Return the report's HTML (self-contained: Plotly's JS is inlined once, in the head)."""
    from pexkit import __version__

    spec = data.spec
    env = Environment(
        loader=PackageLoader("pexkit.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    control_value = np.asarray(front.meta.get("control_value", model.scores_[:, 0, :].mean(axis=0)))
    counts = data.arm_counts
    arm_rows = [
        {"arm": a, "count": f"{c:,}", "share": f"{c / data.n_units:.2%}", "expected": f"{s:.2%}"}
        for (a, c), s in zip(counts.items(), spec.shares, strict=True)
    ]
    if data.srm is None:
        srm = "The log carries its own propensities; no single design share to test against."
    elif data.srm.mismatch:
        srm = (f'<span class="bad">Sample ratio mismatch</span>: the arm counts differ from the design '
               f"(chi-square {data.srm.chi2:.1f}, p = {data.srm.p_value:.2g}). Check the assignment "
               "pipeline before trusting these results.")
    else:
        srm = (f'<span class="ok">Balanced</span>: arm counts match the design (chi-square '
               f"{data.srm.chi2:.2f}, p = {data.srm.p_value:.2g}).")
    ate = model.ate()
    chosen = {(r["treatment"], r["outcome"]): r["learner"] for r in model.selection_.to_dict("records")}
    ate_rows = []
    for r in ate.to_dict("records"):
        rel = _relative(r["estimate"], control_value[spec.outcome_index(r["outcome"])])
        ate_rows.append({
            "treatment": r["treatment"], "outcome": r["outcome"], "estimate": _num(r["estimate"]),
            "ci": f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
            "relative": "-" if rel is None else _pct(rel),
            "learner": chosen[(r["treatment"], r["outcome"])],
        })
    cand = candidates if candidates is not None else front.select(min(4, int(np.sum(front.on_front))))
    labels = front.labels
    cand_idx = [labels.index(lab) for lab in (cand.labels) if lab in labels]
    front.mark_candidates(cand)
    tradeoffs = tradeoff_sentences(front, control_value, cand_idx)
    ci = front.lift_ci
    candidate_rows = [
        {
            "label": labels[p],
            "cells": [f"{_num(front.lifts[p, m])} [{_num(ci[p, m, 0])}, {_num(ci[p, m, 1])}]" for m in range(spec.n_outcomes)],
            "share": ", ".join(f"{front.shares[p, k]:.0%} {a}" for k, a in enumerate(spec.arms)),
        }
        for p in cand_idx
    ]
    on = np.flatnonzero(front.on_front & ~np.array([lab.startswith("all ") for lab in labels]))
    headline = []
    if len(on):
        util = front.objectives[on].sum(axis=1)
        headline += tradeoff_sentences(front, control_value, [int(on[np.argmax(util)])])
    headline.append(
        f"{int(np.sum(front.on_front))} policies are on the Pareto front; {len(cand_idx)} are "
        "proposed for the online test (chosen to cover the widest range of trade-offs)."
    )
    def html(fig: go.Figure | None) -> str:
        if fig is None:
            return ""
        return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))

    template = env.get_template("report.html.j2")
    return template.render(
        plotly_js=get_plotlyjs(),
        title=spec.name, version=__version__, n_units=f"{data.n_units:,}", arms=list(spec.arms),
        outcomes=list(spec.outcome_names), control=spec.control, arm_rows=arm_rows,
        srm_sentence=srm, ate_rows=ate_rows, headline=headline,
        front_html=html(_front_figure(front)),
        calibration_html=html(_grid(model, "calibration")),
        uplift_html=html(_grid(model, "uplift")),
        history_html=html(_history_figure(front)),
        hypervolume=f"{front.hypervolume():.4g}",
        reference=", ".join(f"{o} {_num(v)}" for o, v in zip(spec.outcome_names, front.reference_point, strict=True)),
        method=front.meta.get("method", "?"), n_evaluations=front.meta.get("n_evaluations", "?"),
        tradeoffs=tradeoffs, candidate_rows=candidate_rows,
    )


def write_report(
    path: str | Path, data: LoggedData, model: EffectModel, front: ParetoFront,
    candidates: ParetoFront | None = None, **_: Any,
) -> Path:
    """Write report.html."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data, model, front, candidates), encoding="utf-8")
    return path
