"""The report's analysis staples: effect distributions, uplift with AUUC, balance, importance.

Each function returns what the report's template shows (a Plotly figure or
table rows); the numbers come from :mod:`pexkit.effects.diagnostics`,
:func:`pexkit.data.balance` and :func:`pexkit.explain.feature_importance`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pexkit.data import LoggedData, balance
from pexkit.effects.diagnostics import auuc, uplift_curve
from pexkit.effects.model import EffectModel

__all__ = [
    "balance_rows",
    "effect_distributions",
    "importance_heatmap",
    "noise_split_warning",
    "uplift_figure",
]

#: a tree's first split on a feature below this share of the effects' explained
#: variance (and under a quarter of the top feature's) is flagged: the effect models
#: found (almost) no heterogeneity along it (a pure-noise feature beside one real
#: driver gets ~3%: mean-decrease-in-impurity favours continuous features a little)
NOISE_IMPORTANCE = 0.05


def _cells(model: EffectModel) -> list[tuple[int, int]]:
    spec = model.spec_
    return [(k, m) for k in range(1, spec.n_treatments) for m in range(spec.n_outcomes)]


def effect_distributions(model: EffectModel) -> go.Figure:
    """Histogram of the per-unit effect estimates per (treatment, outcome), with the ATE."""
    spec = model.spec_
    cells = _cells(model)
    M = spec.n_outcomes
    titles = [f"{spec.arms[k]} · {spec.outcome_names[m]}" for k, m in cells]
    fig = make_subplots(rows=spec.n_treatments - 1, cols=M, subplot_titles=titles,
                        horizontal_spacing=0.07)
    for k, m in cells:
        tau = model.effects_[:, k, m]
        ate = float((model.scores_[:, k, m] - model.scores_[:, 0, m]).mean())
        fig.add_trace(go.Histogram(
            x=tau, nbinsx=40, marker={"color": "#1a73e8"}, showlegend=False,
            hovertemplate="effect %{x}<br>%{y} units<extra></extra>",
        ), row=k, col=m + 1)
        fig.add_vline(x=ate, line={"dash": "dash", "color": "#b3261e"}, row=k, col=m + 1)
        fig.add_vline(x=0.0, line={"color": "#9aa0a6"}, row=k, col=m + 1)
        fig.update_xaxes(title_text="effect", row=k, col=m + 1)
        fig.update_yaxes(title_text="units" if m == 0 else None, row=k, col=m + 1)
    fig.update_layout(
        height=260 * (spec.n_treatments - 1) + 80, bargap=0.02,
        title="Per-unit effect estimates (out of fold; dashed red: the average effect)",
        margin={"l": 50, "r": 20, "t": 80, "b": 50},
    )
    return fig


def uplift_figure(model: EffectModel) -> tuple[go.Figure, list[dict[str, Any]]]:
    """Labelled uplift curves per (treatment, outcome) with each AUUC and its 95% CI.

    Also returns the AUUC rows for a table.
    """
    spec = model.spec_
    cells = _cells(model)
    results = {c: auuc(model, *c) for c in cells}
    titles = [f"{spec.arms[k]} · {spec.outcome_names[m]}" for k, m in cells]  # AUUC: the table
    fig = make_subplots(rows=spec.n_treatments - 1, cols=spec.n_outcomes, subplot_titles=titles,
                        horizontal_spacing=0.07)
    for k, m in cells:
        up = uplift_curve(model, k, m)
        first = (k, m) == cells[0]
        fig.add_trace(go.Scatter(
            x=up.fraction, y=up.gain, mode="lines", line={"color": "#1a73e8"},
            name="treat in order of predicted benefit", showlegend=first,
            hovertemplate="treat top %{x:.0%}<br>gain %{y:.3g}<extra></extra>",
        ), row=k, col=m + 1)
        fig.add_trace(go.Scatter(
            x=up.fraction, y=up.random, mode="lines", line={"dash": "dash", "color": "#9aa0a6"},
            name="treat at random", showlegend=first, hoverinfo="skip",
        ), row=k, col=m + 1)
        fig.update_xaxes(title_text="share treated, best first", tickformat=".0%",
                         row=k, col=m + 1)
        fig.update_yaxes(title_text="gain per unit" if m == 0 else None, row=k, col=m + 1)
    fig.update_layout(
        height=300 * (spec.n_treatments - 1) + 110,
        title="Uplift curves: DR gain per unit (goal-signed) of treating units in the model's "
              "order",
        margin={"l": 60, "r": 20, "t": 80, "b": 90},
        legend={"orientation": "h", "y": -0.25, "x": 0},
    )
    rows = []
    for (k, m), r in results.items():
        verdict = ("ranks better than chance" if r["ci_low"] > 0
                   else "no usable heterogeneity found" if r["ci_high"] >= 0
                   else "ranks worse than chance")
        rows.append({"treatment": spec.arms[k], "outcome": spec.outcome_names[m],
                     "auuc": f"{r['auuc']:.3g}",
                     "ci": f"[{r['ci_low']:.3g}, {r['ci_high']:.3g}]", "verdict": verdict})
    return fig, rows


def balance_rows(data: LoggedData, top: int = 12) -> dict[str, Any]:
    """The largest standardized differences, and how many features exceed 0.1."""
    table = balance(data)
    shown = table.head(top)
    rows = [
        {"feature": r["feature"] if r["level"] is None else f"{r['feature']} = {r['level']}",
         "treatment": r["treatment"], "control_mean": f"{r['control_mean']:.3g}",
         "treatment_mean": f"{r['treatment_mean']:.3g}", "smd": f"{r['smd']:+.3f}",
         "imbalanced": bool(r["imbalanced"])}
        for r in shown.to_dict("records")
    ]
    flagged = table[table["imbalanced"]]
    if flagged.empty:
        sentence = ("Every feature is balanced between the arms (all standardized differences "
                    "within ±0.1).")
    else:
        names = sorted(set(flagged["feature"]))
        sentence = (f"{len(names)} feature(s) differ between the arms by more than 0.1 "
                    f"standard deviations: {', '.join(names[:6])}. With randomized assignment "
                    "that is rare; check the assignment, or use propensity: estimate.")
    return {"rows": rows, "sentence": sentence, "flagged": int(len(flagged))}


def importance_heatmap(importance: pd.DataFrame, top: int = 12) -> go.Figure | None:
    """Share of each effect's explained variance per feature (one column per effect)."""
    cols = [c for c in importance.columns if c.startswith("importance[")]
    if not cols:
        return None
    shown = importance.head(top)
    labels = [c[len("importance["):].replace("][", " · ").rstrip("]") for c in cols]
    z = shown[cols].to_numpy(dtype=np.float64)
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=list(shown["feature"]), colorscale="Blues", zmin=0, zmax=1,
        colorbar={"title": "share", "tickformat": ".0%"},
        hovertemplate="%{y} explains %{z:.1%} of %{x}<extra></extra>",
    ))
    fig.update_layout(
        height=max(240, 26 * len(shown) + 120), title="What drives each effect",
        yaxis={"autorange": "reversed"}, margin={"l": 40, "r": 20, "t": 50, "b": 80},
    )
    return fig


def noise_split_warning(feature: str | None, importance: pd.DataFrame) -> str | None:
    """A warning when a tree's first split is on a feature with no estimated heterogeneity."""
    if feature is None:
        return None
    shares = importance.set_index("feature")["importance"]
    share = shares.get(feature)
    if share is None or share >= NOISE_IMPORTANCE or share >= 0.25 * float(shares.max()):
        return None
    return (f"The tree's first split is on {feature!r}, which explains only {share:.1%} of the "
            "effects' variance: the effect models find (almost) no heterogeneity along it, so "
            "this split may be noise. Check it on new data (distill's fidelity and value "
            "kept), or grow the tree without that feature.")
