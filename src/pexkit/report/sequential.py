"""report.html of a sequential analysis: the agent against the simple policies, and the front."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from pexkit.report.scorecard import CSS, ScoreRow, fmt_interval, headline_html, html_table

__all__ = ["render_sequential_report", "write_sequential_report"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · sequential · pexkit</title>
<script>{plotly_js}</script>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} .muted {{ color: #666; }} .note {{ background: #f6f6f6; padding: 0.6em 1em; border-radius: 6px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
.sc-l {{ text-align: left; }} .sc-label, .sc-metric, .sc-verdict {{ text-align: left; }}
{scorecard_css}
</style></head><body>
<h1>{title}</h1>
<p class="muted">Sequential decisions: {units} units; the agents learned from {trained} of them and
every estimate below is made on the other {held_out} ({decisions} decisions, {episodes} episodes); actions {actions}; rewards {rewards}; discount gamma = {gamma}. Values are the expected discounted
sum of each reward over an episode, estimated off-policy with <b>{estimator}</b> (95% bootstrap CIs
over units). The agent is evaluated as it would serve, with {epsilon_pct} exploration.</p>
<h2 id="headline">The agent against the logging policy</h2>
<p class="headline">{headline}</p>
{agent_table}
<h2 id="comparison">Every policy, per reward</h2>
<p class="muted">"Control" is the logging policy (the one that produced this log); each change is a
paired difference on the same bootstrap resamples. <i>myopic</i> is the same kind of learner with
gamma = 0: it maximizes the next reward only, which is what a one-shot model does.</p>
{comparison_table}
<h2 id="front">Trade-off between rewards</h2>
<p class="muted">Each point is an agent (fitted Q iteration) trained with other reward weights;
grey diamonds are the simple policies. Filled points are on the front; stars are the
candidates for an online test (the 3 whose front has the largest hypervolume).</p>
{front_html}
{front_table}
{selection_html}
<h2 id="notes">How far to trust this</h2>
<ul>{notes}</ul>
<p class="muted">pexkit {version}</p>
</body></html>
"""


def _rows(analysis: Any, name: str) -> list[ScoreRow]:
    spec = analysis.log.spec
    base = analysis.values["logging"]
    diff = analysis.values.difference(name, "logging")
    rows = []
    for j, r in enumerate(spec.rewards):
        d = diff.iloc[j]
        rows.append(
            ScoreRow(
                r.name,
                r.goal,
                float(d["value"]),
                float(d["ci_low"]),
                float(d["ci_high"]),
                control_mean=float(base.value[j]),
                label=name,
            )
        )
    d = diff.iloc[-1]
    rows.append(
        ScoreRow(
            "utility",
            "maximize",
            float(d["value"]),
            float(d["ci_low"]),
            float(d["ci_high"]),
            control_mean=float(base.value[-1]),
            label=name,
        )
    )
    return rows


def _front_figure(analysis: Any) -> go.Figure | None:
    front = analysis.front
    if front is None or len(front.reward_names) < 2:
        return None
    x_name, y_name = front.reward_names[1], front.reward_names[0]
    value = front.value
    fig = go.Figure()
    agents = ~front.baseline
    for mask, name, symbol, color in (
        (agents & front.on_front, "on the front", "circle", "#1f77b4"),
        (agents & ~front.on_front, "dominated", "circle-open", "#1f77b4"),
        (front.baseline, "simple policies", "diamond", "#888888"),
    ):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        text = []
        for i in idx:
            w = ", ".join(f"{k} {v:.3g}" for k, v in front.weights[i].items())
            text.append(f"{front.labels[i]}" + (f" (weights: {w})" if w else ""))
        fig.add_trace(
            go.Scatter(
                x=value[idx, 1],
                y=value[idx, 0],
                mode="markers+text" if name == "simple policies" else "markers",
                name=name,
                text=[front.labels[i] for i in idx] if name == "simple policies" else text,
                hovertext=text,
                hoverinfo="text+x+y",
                textposition="top center",
                marker={"symbol": symbol, "size": 11, "color": color},
            )
        )
    cand = np.flatnonzero(front.candidate)
    if cand.size:
        fig.add_trace(
            go.Scatter(
                x=value[cand, 1],
                y=value[cand, 0],
                mode="markers",
                name="candidates",
                marker={"symbol": "star", "size": 16, "color": "#ff7f0e"},
                hovertext=[front.labels[i] for i in cand],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        xaxis_title=f"{x_name} (discounted, per episode)",
        yaxis_title=f"{y_name} (discounted, per episode)",
        height=480,
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 20},
    )
    return fig


def render_sequential_report(analysis: Any) -> str:
    """The report's HTML (self-contained: Plotly inlined)."""
    from pexkit import __version__

    log, spec = analysis.log, analysis.log.spec
    s = analysis.summary
    agent_rows = _rows(analysis, "agent")
    others = [name for name in analysis.values if name not in ("logging",)]
    comparison = [row for name in others for row in _rows(analysis, name)]
    headers = ("Logging policy", "Policy", "Change", "95% CI", "Relative change", "Verdict")
    fig = _front_figure(analysis)
    front_html = (
        ""
        if fig is None
        else str(
            fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        )
    )
    front_table = ""
    if analysis.front is not None:
        f = analysis.front
        cells = []
        for i, lab in enumerate(f.labels):
            v = f.values[lab]
            vals = "".join(
                f"<td>{html.escape(' '.join(fmt_interval(v.value[j], v.ci_low[j], v.ci_high[j], signed=False)))}</td>"
                for j in range(len(v.names))
            )
            w = ", ".join(f"{k} {x:.3g}" for k, x in f.weights[i].items()) or "-"
            mark = "candidate" if f.candidate[i] else ("on front" if f.on_front[i] else "")
            cells.append(
                f"<tr><td class='sc-l'>{html.escape(lab)}</td><td class='sc-l'>{html.escape(w)}</td>"
                f"{vals}<td class='sc-l'>{mark}</td></tr>"
            )
        head = "".join(f"<th>{html.escape(n)}</th>" for n in f.values[f.labels[0]].names)
        front_table = (
            f"<table id='front-table'><thead><tr><th class='sc-l'>Point</th><th class='sc-l'>Weights</th>"
            f"{head}<th class='sc-l'></th></tr></thead><tbody>{''.join(cells)}</tbody></table>"
            f"<p class='muted'>Hypervolume {f.hypervolume():.4g} above the worst simple policy.</p>"
        )
    selection_html = ""
    if analysis.selection is not None:
        t = analysis.selection.table
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(round(x, 4) if isinstance(x, float) else x))}</td>"
                for x in row
            )
            + "</tr>"
            for row in t.itertuples(index=False)
        )
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
        selection_html = (
            "<h2 id='selection'>Hyperparameters chosen by held-out estimates</h2>"
            "<p class='muted'>Each configuration was trained on half of the units and "
            "estimated on the other half; the chosen one (best CI lower bound) was refitted "
            f"on all units.</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    agent_value = analysis.values["agent"]
    notes = [
        f"Effective number of episodes behind the agent's estimate: {agent_value.ess:,.0f} of "
        f"{log.n_episodes:,} (importance weights; low means the agent strays far from the logging policy).",
        f"Propensities: {html.escape(str(log.propensity_info.get('method')))}.",
        "Off-policy estimates need every action the agent takes to have been logged with a known "
        "probability in similar states; serve the agent with exploration so that the next round can "
        "be evaluated too.",
    ]
    return _PAGE.format(
        title=html.escape(spec.name),
        plotly_js=get_plotlyjs(),
        scorecard_css=CSS,
        decisions=f"{log.n_decisions:,}",
        episodes=f"{log.n_episodes:,}",
        units=f"{s.get('units', 0):,}",
        trained=f"{s.get('trained_on_units', 0):,}", held_out=f"{s.get('estimated_on_units', 0):,}",
        actions=html.escape(", ".join(spec.actions)),
        rewards=html.escape(
            ", ".join(f"{r.name} ({r.goal}, weight {r.weight:g})" for r in spec.rewards)
        ),
        gamma=spec.gamma,
        estimator=html.escape(str(s.get("estimator"))),
        epsilon_pct=f"{100 * float(s.get('epsilon', 0)):g}%",
        headline=headline_html("agent", "logging policy", agent_rows),
        agent_table=html_table(
            agent_rows, label_column="Policy", headers=headers, table_id="agent-table"
        ),
        comparison_table=html_table(
            comparison, label_column="Policy", headers=headers, table_id="comparison-table"
        ),
        front_html=front_html,
        front_table=front_table,
        selection_html=selection_html,
        notes="".join(f"<li>{n}</li>" for n in notes),
        version=__version__,
    )


def write_sequential_report(analysis: Any, path: str | Path) -> Path:
    """Write the report to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_sequential_report(analysis), encoding="utf-8")
    return path
