"""report.html: a self-contained page a product engineer can read (Plotly inlined, Jinja2)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.effects.diagnostics import calibration
from pexkit.evaluation.personalization import personalization_value
from pexkit.explain import DistilledPolicy, Segments, distill, feature_importance
from pexkit.explain import segments as find_segments
from pexkit.optimize import ParetoFront
from pexkit.policy import LinearPolicy
from pexkit.report.scorecard import (
    COLUMNS,
    CSS,
    MISSING,
    Limit,
    ScoreRow,
    fmt_interval,
    fmt_number,
    guardrail_limits,
    headline_html,
    html_table,
    verdict,
)
from pexkit.report.staples import (
    balance_rows,
    effect_distributions,
    importance_heatmap,
    noise_split_warning,
    uplift_figure,
)

__all__ = ["render_report", "tradeoff_sentences", "write_report"]


def _num(x: float) -> str:
    return fmt_number(x, signed=True)


def _pct(x: float) -> str:
    return fmt_number(x, signed=True) + "%"


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
                est, cis = fmt_interval(rel, _relative(lo, control_value[m]),
                                        _relative(hi, control_value[m]), unit="%")
            else:
                est, cis = fmt_interval(lift, lo, hi)
            text = f"{est} {o} {cis}"
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
    # at most 3 panels a row (6 side by side overlapped their titles); the legend sits
    # below the last row's axis titles
    n_cols = min(3, len(pairs))
    n_rows = -(-len(pairs) // n_cols)
    fig = make_subplots(
        rows=n_rows, cols=n_cols, horizontal_spacing=0.09,
        vertical_spacing=0.3 / n_rows if n_rows > 1 else 0.0,
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
    for i, (a, b) in enumerate(pairs):
        row, col = i // n_cols + 1, i % n_cols + 1
        for name, mask, marker in groups:
            idx = np.flatnonzero(mask)
            fig.add_trace(
                go.Scatter(
                    x=front.lifts[idx, a], y=front.lifts[idx, b], mode="markers",
                    marker=marker, name=name, legendgroup=name, showlegend=i == 0,
                    text=[hover[i] for i in idx], hoverinfo="text",
                    customdata=[labels[i] for i in idx],
                ),
                row=row, col=col,
            )
        fig.update_xaxes(title_text=f"{names[a]} lift", row=row, col=col, zeroline=True)
        fig.update_yaxes(title_text=f"{names[b]} lift", row=row, col=col, zeroline=True)
    # the legend's top 70 px under the plotting area: below the x-axis titles, not on them
    fig.update_layout(height=340 * n_rows + 130, margin={"l": 60, "r": 20, "t": 40, "b": 110},
                      legend={"orientation": "h", "x": 0, "xanchor": "left", "yanchor": "top",
                              "y": -70 / (340 * n_rows - 20)})
    return fig


def _calibration_figure(model: EffectModel) -> go.Figure:
    spec = model.spec_
    K, M = spec.n_treatments, spec.n_outcomes
    titles = [
        f"{spec.arms[k]} · {o} ({model.chosen_[k, m]})"
        for k in range(1, K) for m, o in enumerate(spec.outcome_names)
    ]
    fig = make_subplots(rows=K - 1, cols=M, subplot_titles=titles)
    for k in range(1, K):
        for m in range(M):
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
            fig.update_xaxes(title_text="predicted effect", row=k, col=m + 1)
            fig.update_yaxes(title_text="DR-estimated effect" if m == 0 else None,
                             row=k, col=m + 1)
    fig.update_layout(height=280 * (K - 1) + 60,
                      title="Calibration: predicted vs DR-estimated effect (by decile)",
                      margin={"l": 50, "r": 20, "t": 70, "b": 50})
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


def _headline_policy(front: ParetoFront) -> int | None:
    """The personalized front policy the summary leads with (largest summed objective)."""
    labels = front.labels
    on = np.flatnonzero(front.on_front & ~np.array([lab.startswith("all ") for lab in labels]))
    if not len(on):
        return None
    return int(on[np.argmax(front.objectives[on].sum(axis=1))])


def _ci_text(est: float, lo: float, hi: float, pct: bool = False) -> str:
    if pct:
        return " ".join(fmt_interval(100 * est, 100 * lo, 100 * hi, signed=False, unit="%"))
    return " ".join(fmt_interval(est, lo, hi))


def _policy_card(front: ParetoFront, p: int, control_value: np.ndarray,
                 guards: dict[str, Limit]) -> list[ScoreRow]:
    """Policy ``p``'s scorecard rows: each outcome's lift vs all-control, goal-coloured."""
    spec = front.spec
    return [
        ScoreRow(o.name, o.goal, front.lifts[p, m], front.lift_ci[p, m, 0],
                 front.lift_ci[p, m, 1], control_mean=float(control_value[m]),
                 label=front.labels[p], guardrail=guards.get(o.name))
        for m, o in enumerate(spec.outcomes)
    ]


def _explain_context(
    data: LoggedData, model: EffectModel, front: ParetoFront,
    distilled: DistilledPolicy | None, segs: Segments | None, importance: pd.DataFrame | None,
    explain: bool,
) -> dict[str, Any]:
    """Template values of the "Interpretable policy" and "Segments" sections."""
    spec = data.spec
    context: dict[str, Any] = {"explain": explain}
    if not explain:
        return context
    label = None
    if distilled is None:
        p = _headline_policy(front)
        if p is not None:
            policy: LinearPolicy = front.policies[p]
            label = front.labels[p]
            distilled = distill(policy, model, data, max_depth=3)
    if distilled is not None:
        lifts = distilled.lifts
        context["policy_label"] = label or "the chosen policy"
        context["distilled"] = {
            "fidelity": _ci_text(distilled.fidelity, *distilled.fidelity_ci, pct=True),
            "value_kept": _ci_text(distilled.value_kept, *distilled.value_kept_ci, pct=True),
            "gain_kept": _ci_text(distilled.gain_kept, *distilled.gain_kept_ci, pct=True),
            "baseline": distilled.baseline,
            "evaluation": distilled.evaluation,
            "lifts": [
                {"name": name, "lift": _ci_text(row["lift"], row["ci_low"], row["ci_high"])}
                for name, row in lifts.items()
            ],
            "rules": [
                {"indent": round(level * 1.6, 1), "text": text}
                for level, text in distilled.rule_lines()
            ],
            "shares": ", ".join(f"{v:.0%} {a}" for a, v in distilled.shares.items() if v > 0.005),
        }
        root = distilled.tree.root
        context["root_feature"] = (None if root.is_leaf
                                   else distilled.tree.feature_names[root.feature])
    segs = segs if segs is not None else find_segments(model, data, max_depth=2)
    cells = [(a, o) for a in spec.arms[1:] for o in spec.outcome_names]
    rows = []
    for seg in segs.to_dict()["segments"]:
        by_cell = {(e["treatment"], e["outcome"]): e for e in seg["effects"]}

        def cell(c: tuple[str, str], by_cell: dict[tuple[str, str], Any] = by_cell) -> str:
            e = by_cell.get(c)
            if e is None:
                return "-"
            nan = float("nan")
            lo, hi = e["ci_low"], e["ci_high"]
            return _ci_text(e["estimate"], nan if lo is None else lo, nan if hi is None else hi)

        rows.append({
            "segment": seg["segment"], "rule": seg["rule"], "share": f"{seg['share']:.0%}",
            "size": f"{seg['size']:,}", "cells": [cell(c) for c in cells],
            "best": [seg["best"].get(o, "-") for o in spec.outcome_names],
        })
    context["segments"] = {
        "method": segs.method, "honest": segs.honest, "rows": rows,
        "cells": [f"{a} · {o}" for a, o in cells],
    }
    imp = importance if importance is not None else feature_importance(model, data)
    context["noise_split"] = noise_split_warning(context.get("root_feature"), imp)
    context["importance_by_effect_fig"] = importance_heatmap(imp)
    top = imp.head(15).iloc[::-1]
    fig = go.Figure(go.Bar(
        x=top["importance"], y=top["feature"], orientation="h", marker={"color": "#1a73e8"},
        hovertemplate="%{y}: %{x:.1%} of the effects' explained variance<extra></extra>",
    ))
    fig.update_layout(
        height=max(220, 28 * len(top) + 80), title="What drives the effects (feature importance)",
        xaxis_title="share of explained effect variance", xaxis_tickformat=".0%",
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    context["importance_fig"] = fig
    return context


def _longterm_context(blocks: list[dict[str, Any]] | None, ate: pd.DataFrame,
                      goals: Mapping[str, str]) -> list[dict[str, Any]]:
    """Template values of the "Long-term outcomes (surrogate index)" section: per index, a
    row per arm with the short-term effects (DR) and the long-term one (through the index,
    its CI with the index's own error) side by side, and the surrogacy check."""
    out = []
    by_cell = {(str(r["treatment"]), str(r["outcome"])): r for r in ate.to_dict("records")}
    for block in blocks or []:
        diag = block["diagnostics"]
        short = [o for o in diag["surrogates"] if o in goals]
        checks = {str(a["treatment"]): a for a in diag["arms"]}
        goal = block.get("goal", "maximize")
        rows = []
        for r in block["ate"]:
            arm = str(r["treatment"])
            cells = []
            for o in short:
                e = by_cell.get((arm, o))
                if e is None:
                    cells.append({"text": MISSING, "tone": ""})
                    continue
                cells.append({"text": " ".join(fmt_interval(e["estimate"], e["ci_low"],
                                                            e["ci_high"])),
                              "tone": verdict(e["estimate"], e["ci_low"], e["ci_high"],
                                              goals[o])})
            long_cell = {"text": " ".join(fmt_interval(r["estimate"], r["ci_low"], r["ci_high"])),
                         "tone": verdict(r["estimate"], r["ci_low"], r["ci_high"], goal)}
            check = checks.get(arm, {})
            ok = bool(check.get("surrogacy_ok", True))
            p = check.get("direct_effect_p", float("nan"))
            direct = check.get("direct_effect", float("nan"))
            se = check.get("direct_effect_se", float("nan"))
            share = check.get("share_carried", float("nan"))
            rows.append({
                "arm": arm, "cells": cells, "long": long_cell,
                "se_split": (f"sampling {fmt_number(r['se_sampling'])}, index "
                             f"{fmt_number(r['se_index'])}"),
                "direct": " ".join(fmt_interval(direct, direct - 1.96 * se, direct + 1.96 * se)),
                "p": "< 0.001" if p < 0.001 else fmt_number(p),
                "share": MISSING if not np.isfinite(share) else f"{share:.0%}",
                "ok": ok,
            })
        utility = (block.get("policy_lift") or {}).get("utility")
        out.append({
            "target": block["target"], "outcome": block["outcome"], "goal": goal,
            "r2": f"{diag['r2']:.2f}", "n_history": f"{diag['n_history']:,}",
            "surrogates": ", ".join(diag["surrogates"]),
            "features": len(diag.get("features") or []),
            "note": block["note"][0].upper() + block["note"][1:] + ".",
            "trusted": bool(block["trusted"]),
            "failed": [row["arm"] for row in rows if not row["ok"]],
            "short": short, "rows": rows,
            "utility": (" ".join(fmt_interval(utility["lift"], utility["lift_ci_low"],
                                              utility["lift_ci_high"]))
                        if utility and "lift_ci_low" in utility else None),
        })
    return out


def render_report(
    data: LoggedData,
    model: EffectModel,
    front: ParetoFront,
    candidates: ParetoFront | None = None,
    *,
    explain: bool = True,
    distilled: DistilledPolicy | None = None,
    segments: Segments | None = None,
    importance: pd.DataFrame | None = None,
    longterm: list[dict[str, Any]] | None = None,
) -> str:
    """Return the report's HTML (self-contained: Plotly's JS is inlined once, in the head).

    Parameters
    ----------
    data, model, front, candidates
        The analysis; ``candidates`` default to ``front.select(4)``.
    explain : bool
        Add the "Interpretable policy" and "Segments" sections.
    distilled : DistilledPolicy, optional
        Default: ``distill`` of the summary's headline policy, depth 3.
    segments : Segments, optional
        Default: ``pexkit.explain.segments(model, data)``.
    importance : DataFrame, optional
        Default: ``pexkit.explain.feature_importance(model, data)``.
    longterm : list of dict, optional
        ``summary["longterm"]`` (:func:`pexkit.analysis.longterm_block` per
        surrogate index): adds the "Long-term outcomes (surrogate index)" section.
    """
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
    goals = {o.name: o.goal for o in spec.outcomes}
    guards = guardrail_limits(front.meta.get("guardrails"))
    ate_html = html_table([
        ScoreRow(r["outcome"], goals[r["outcome"]], r["estimate"], r["ci_low"], r["ci_high"],
                 control_mean=float(control_value[spec.outcome_index(r["outcome"])]),
                 label=str(r["treatment"]), guardrail=guards.get(r["outcome"]),
                 extra=(chosen[(r["treatment"], r["outcome"])],))
        for r in ate.to_dict("records")
    ], label_column="Treatment", extra_columns=("Learner",), table_id="ate")
    cand = candidates if candidates is not None else front.select(min(4, int(np.sum(front.on_front))))
    labels = front.labels
    cand_idx = [labels.index(lab) for lab in (cand.labels) if lab in labels]
    front.mark_candidates(cand)
    tradeoffs = tradeoff_sentences(front, control_value, cand_idx)
    shown = [p for p in cand_idx if labels[p] != f"all {spec.control}"]  # not control vs itself
    candidates_html = html_table(
        [r for p in shown for r in _policy_card(front, p, control_value, guards)],
        label_column="Policy", headers=("Control mean", "Policy mean", *COLUMNS[2:]),
        table_id="candidate-scorecard",
    )
    candidate_rows = [
        {"label": labels[p],
         "share": ", ".join(f"{front.shares[p, k]:.0%} {a}" for k, a in enumerate(spec.arms))}
        for p in cand_idx
    ]
    on = np.flatnonzero(front.on_front & ~np.array([lab.startswith("all ") for lab in labels]))
    headline: list[str] = []
    headline_card = None
    if len(on):  # coloured by goal: what got worse is said first, in red
        util = front.objectives[on].sum(axis=1)
        top = int(on[np.argmax(util)])
        headline_card = headline_html(labels[top], f"all-{spec.control}",
                                      _policy_card(front, top, control_value, guards))
    headline.append(
        f"{int(np.sum(front.on_front))} policies are on the Pareto front; {len(cand_idx)} are "
        "proposed for the online test (chosen to cover the widest range of trade-offs)."
    )
    named = {labels[p]: front.policies[p] for p in cand_idx if not labels[p].startswith("all ")}
    if len(on):
        top = int(on[np.argmax(front.objectives[on].sum(axis=1))])
        named[labels[top]] = front.policies[top]
    if named:  # what personalizing adds over the best single treatment
        sentence = personalization_value(data, model, named, LinearPolicy(spec))["sentence"]
        headline.append(sentence[0].upper() + sentence[1:] + ".")
    def html(fig: go.Figure | None) -> str:
        if fig is None:
            return ""
        return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))

    explained = _explain_context(data, model, front, distilled, segments, importance, explain)
    explained["importance_html"] = html(explained.pop("importance_fig", None))
    explained["importance_by_effect_html"] = html(explained.pop("importance_by_effect_fig", None))
    uplift_fig, auuc_rows = uplift_figure(model)
    template = env.get_template("report.html.j2")
    return template.render(
        **explained,
        plotly_js=get_plotlyjs(),
        title=spec.name, version=__version__, n_units=f"{data.n_units:,}", arms=list(spec.arms),
        outcomes=list(spec.outcome_names), control=spec.control, arm_rows=arm_rows,
        srm_sentence=srm, ate_html=ate_html, headline=headline, headline_card=headline_card,
        scorecard_css=CSS, candidates_html=candidates_html,
        front_html=html(_front_figure(front)),
        calibration_html=html(_calibration_figure(model)),
        uplift_html=html(uplift_fig), auuc_rows=auuc_rows,
        distributions_html=html(effect_distributions(model)),
        balance=balance_rows(data),
        history_html=html(_history_figure(front)),
        hypervolume=f"{front.hypervolume():.4g}",
        reference=", ".join(f"{o} {_num(v)}" for o, v in zip(spec.outcome_names, front.reference_point, strict=True)),
        method=front.meta.get("method", "?"), n_evaluations=front.meta.get("n_evaluations", "?"),
        tradeoffs=tradeoffs, candidate_rows=candidate_rows,
        longterm=_longterm_context(longterm, ate, goals),
    )


def write_report(
    path: str | Path, data: LoggedData, model: EffectModel, front: ParetoFront,
    candidates: ParetoFront | None = None, *, explain: bool = True,
    distilled: DistilledPolicy | None = None, segments: Segments | None = None,
    importance: pd.DataFrame | None = None,
    longterm: list[dict[str, Any]] | None = None, **_: Any,
) -> Path:
    """Write report.html (options as in :func:`render_report`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(
        data, model, front, candidates, explain=explain, distilled=distilled,
        segments=segments, importance=importance, longterm=longterm,
    )
    path.write_text(text, encoding="utf-8")
    return path
