"""Scorecards: metric-by-metric readouts in the conventions of experimentation consoles.

One row per (arm or policy, metric) against control: the control mean, the
treatment mean, the change with its 95% CI, the relative change, and a verdict
from the metric's goal: **good** (green) when the CI excludes 0 on the side the
goal wants, **bad** (red) when it excludes 0 on the other side, **inconclusive**
(grey) otherwise or without a CI. A guardrail metric is flagged, and breached
when its change is significantly bad or exceeds its allowed share of the control
mean.

Formatting rules (one set, used by the CLI, the report and the dashboard):

* numbers get 3 significant figures (``0.01143`` -> ``0.0114``; ``1234.6`` ->
  ``1,235``: integer digits are never rounded away); changes carry a sign,
  means do not; below 1e-4 in magnitude, scientific notation (``1.20e-05``);
* a CI is printed with the decimals of its estimate (``+0.0114 [+0.0013,
  +0.0216]``), or of a tenth of its half-width when the estimate is much
  smaller than the interval;
* words for what is not a number: a missing CI is ``no CI (n too small)``, an
  infinite one ``unbounded`` (one infinite end: ``at least x`` / ``at most x``),
  an infinite value ``infinite``, a relative change against a control mean of
  0 ``n/a (control mean 0)``, a missing value ``–``.

The module is pure: numbers in, strings out. :func:`html_table` renders plain
HTML (classes ``sc-good``, ``sc-bad``, ``sc-inconclusive``; :data:`CSS` styles
them); the CLI maps :data:`RICH_STYLES` onto its rich tables.

Examples
--------
>>> fmt_interval(0.01143, 0.001285, 0.02157)
('+0.0114', '[+0.0013, +0.0216]')
>>> verdict(0.3, 0.1, 0.5, "minimize")
'bad'
>>> fmt_relative(0.5, 0.0)
'n/a (control mean 0)'
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "BAD",
    "COLORS",
    "COLUMNS",
    "CSS",
    "GOOD",
    "INCONCLUSIVE",
    "NO_CI",
    "RICH_STYLES",
    "Cell",
    "Limit",
    "ScoreRow",
    "fmt_interval",
    "fmt_number",
    "fmt_relative",
    "guardrail_limits",
    "headline_html",
    "html_table",
    "verdict",
]

GOOD, BAD, INCONCLUSIVE = "good", "bad", "inconclusive"
COLORS = {GOOD: "#137333", BAD: "#b3261e", INCONCLUSIVE: "#5f6368"}
RICH_STYLES = {GOOD: "green", BAD: "red", INCONCLUSIVE: "grey50"}
COLUMNS = ("Control mean", "Treatment mean", "Change", "95% CI", "Relative change", "Verdict")
DIGITS = 3
NO_CI = "no CI (n too small)"
UNBOUNDED = "unbounded"
MISSING = "–"
CSS = (
    f".sc-good {{ color: {COLORS[GOOD]}; font-weight: 600; }} "
    f".sc-bad {{ color: {COLORS[BAD]}; font-weight: 600; }} "
    f".sc-inconclusive {{ color: {COLORS[INCONCLUSIVE]}; }} "
    ".sc-flag { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 8px; "
    f"font-size: 0.75em; font-weight: 600; background: #fdecea; color: {COLORS[BAD]}; }} "
    ".sc-flag.sc-held { background: #eef0f3; color: #3c4043; } "
    "table.scorecard th.sc-l, table.scorecard td.sc-metric, table.scorecard td.sc-label, "
    "table.scorecard td.sc-verdict { text-align: left; } "
    "table.scorecard td.sc-ci, table.scorecard td.sc-extra { white-space: nowrap; } "
    ".sc-scroll { overflow-x: auto; max-width: 100%; }"
)
_VERDICT_WORDS = {GOOD: "better", BAD: "worse", INCONCLUSIVE: "inconclusive"}
_SCI_BELOW = 1e-4


def _value(x: Any) -> float | None:
    """A float, or None for None/NaN/non-numbers (infinities are kept)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _decimals(x: float, digits: int = DIGITS) -> int:
    """Decimals that show ``|x|`` with ``digits`` significant figures (0 for large numbers)."""
    a = abs(x)
    if a == 0 or not math.isfinite(a):
        return digits - 1
    d = max(0, digits - 1 - math.floor(math.log10(a)))
    r = round(a, d)  # 0.09996 -> 0.1000: one decimal fewer keeps 3 figures
    if d > 0 and r > 0 and math.floor(math.log10(r)) > math.floor(math.log10(a)):
        d -= 1
    return d


def _fixed(x: float, decimals: int, signed: bool) -> str:
    text = f"{abs(x):,.{decimals}f}"
    if not any(c in "123456789" for c in text):  # rounds to zero: no sign
        return text
    if x < 0:
        return "-" + text
    return ("+" if signed else "") + text


def _sci(x: float, digits: int, signed: bool) -> str:
    text = f"{x:{'+' if signed else ''}.{digits - 1}e}"
    return text


def fmt_number(x: Any, *, signed: bool = False, digits: int = DIGITS,
               decimals: int | None = None) -> str:
    """One number with ``digits`` significant figures (or ``decimals`` given).

    >>> fmt_number(0.011432, signed=True), fmt_number(1234.6), fmt_number(-0.5)
    ('+0.0114', '1,235', '-0.500')
    >>> fmt_number(float("inf")), fmt_number(None), fmt_number(0.0000123)
    ('infinite', '–', '1.23e-05')
    """
    v = _value(x)
    if v is None:
        return MISSING
    if math.isinf(v):
        return "infinite" if v > 0 else "minus infinite"
    if decimals is None:
        if v != 0 and abs(v) < _SCI_BELOW:
            return _sci(v, digits, signed)
        decimals = _decimals(v, digits)
    return _fixed(v, decimals, signed)


def fmt_interval(estimate: Any, low: Any, high: Any, *, signed: bool = True,
                 digits: int = DIGITS, unit: str = "") -> tuple[str, str]:
    """``(estimate, CI)`` texts: the CI with the estimate's decimals, or words.

    ``unit`` follows every number (``"%"``: ``+17.9% [+15.1%, +20.7%]``).

    >>> fmt_interval(0.5, None, None)
    ('+0.500', 'no CI (n too small)')
    >>> fmt_interval(0.5, float("-inf"), float("inf"))
    ('+0.500', 'unbounded')
    >>> fmt_interval(2.0, 1.5, float("inf"), signed=False)
    ('2.00', 'at least 1.50')
    """
    est, lo, hi = _value(estimate), _value(low), _value(high)
    if est is None:
        return MISSING, NO_CI if lo is None or hi is None else MISSING
    if math.isinf(est):
        return fmt_number(est), UNBOUNDED
    if lo is None or hi is None or lo > hi:
        return fmt_number(est, signed=signed, digits=digits) + unit, NO_CI
    if math.isinf(lo) and math.isinf(hi):
        return fmt_number(est, signed=signed, digits=digits) + unit, UNBOUNDED
    ends = [b for b in (lo, hi) if math.isfinite(b)]
    half = max(abs(b - est) for b in ends)
    ref = max(abs(est), half / 10)
    if ref == 0:
        ref = 1.0
    if ref < _SCI_BELOW:
        def one(b: float) -> str:
            return _sci(b, digits, signed) + unit
    else:
        dec = _decimals(ref, digits)

        def one(b: float) -> str:
            return _fixed(b, dec, signed) + unit
    if math.isinf(lo):
        ci = f"at most {one(hi)}"
    elif math.isinf(hi):
        ci = f"at least {one(lo)}"
    else:
        ci = f"[{one(lo)}, {one(hi)}]"
    return one(est), ci


def fmt_relative(change: Any, control_mean: Any, *, digits: int = DIGITS) -> str:
    """The change as a share of the control mean's magnitude, in percent.

    >>> fmt_relative(0.0114, 0.2), fmt_relative(-3.0, -12.0), fmt_relative(1.0, None)
    ('+5.70%', '-25.0%', 'n/a')
    """
    c, m = _value(change), _value(control_mean)
    if c is None or m is None or math.isinf(m) or math.isinf(c):
        return "n/a"
    if abs(m) < 1e-12:
        return "n/a (control mean 0)"
    return fmt_number(100.0 * c / abs(m), signed=True, digits=digits) + "%"


def _sign(goal: str) -> int:
    if goal not in ("maximize", "minimize"):
        raise ValueError(f"goal must be 'maximize' or 'minimize'; got {goal!r}.")
    return 1 if goal == "maximize" else -1


def verdict(change: Any, low: Any, high: Any, goal: str) -> str:
    """``good``, ``bad`` or ``inconclusive``: significant when the CI excludes 0.

    The CI decides the direction (an Agresti-Caffo interval is centred away from
    the raw difference); the change only matters through it.

    >>> verdict(0.2, 0.1, 0.3, "maximize"), verdict(0.2, -0.1, 0.5, "maximize")
    ('good', 'inconclusive')
    """
    sign = _sign(goal)
    lo, hi = _value(low), _value(high)
    if lo is None or hi is None or lo > hi or _value(change) is None:
        return INCONCLUSIVE
    if lo > 0:
        return GOOD if sign > 0 else BAD
    if hi < 0:
        return BAD if sign > 0 else GOOD
    return INCONCLUSIVE


@dataclass(frozen=True)
class Limit:
    """A guardrail on one metric: it may move the wrong way by at most ``max_change`` of
    the control mean's magnitude (the estimate, or the pessimistic CI end with ``bound='ci'``);
    ``max_change=None``: only "significantly worse" breaches it."""

    max_change: float | None = None
    bound: str = "estimate"


def guardrail_limits(items: Iterable[Any] | None) -> dict[str, Limit]:
    """Metric -> :class:`Limit` from ``pexkit.optimize.Guardrail`` objects or their dicts
    (``{"outcome", "max_change", "bound"}``, as in a front's ``meta["guardrails"]``)."""
    out: dict[str, Limit] = {}
    for g in items or ():
        d = g if isinstance(g, Mapping) else vars(g)
        mc = _value(d.get("max_change"))
        out[str(d["outcome"])] = Limit(mc, str(d.get("bound") or "estimate"))
    return out


class Cell(NamedTuple):
    """One rendered cell: its text, its tone (good/bad/inconclusive or None) and its kind
    (label, metric, control, treatment, change, ci, relative, verdict, extra)."""

    text: str
    tone: str | None
    kind: str


@dataclass(frozen=True)
class ScoreRow:
    """One metric of one arm (or policy) against control.

    ``treatment_mean`` defaults to ``control_mean + change``; ``label`` is the arm or
    policy (None in a one-comparison table); ``extra`` are trailing cells (learner, units).
    """

    metric: str
    goal: str
    change: float | None
    ci_low: float | None
    ci_high: float | None
    control_mean: float | None = None
    treatment_mean: float | None = None
    label: str | None = None
    guardrail: Limit | None = None
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _sign(self.goal)
        if self.treatment_mean is None:
            c, m = _value(self.change), _value(self.control_mean)
            if c is not None and m is not None:
                object.__setattr__(self, "treatment_mean", m + c)

    @property
    def verdict(self) -> str:
        """``good``, ``bad`` or ``inconclusive`` (see :func:`verdict`)."""
        return verdict(self.change, self.ci_low, self.ci_high, self.goal)

    @property
    def significant(self) -> bool:
        return self.verdict != INCONCLUSIVE

    @property
    def breach(self) -> str | None:
        """Why the guardrail is breached (None when it holds or there is none)."""
        g = self.guardrail
        if g is None:
            return None
        if self.verdict == BAD:
            return "guardrail breached: significantly worse"
        c, m = _value(self.change), _value(self.control_mean)
        if g.max_change is None or c is None or m is None or abs(m) < 1e-12:
            return None
        sign = _sign(self.goal)
        harm = -sign * c
        if g.bound == "ci":
            lo, hi = _value(self.ci_low), _value(self.ci_high)
            end = hi if sign < 0 else lo
            if end is None:
                return None
            harm = -sign * end
        if harm > g.max_change * abs(m):
            way = "rose" if sign < 0 else "fell"
            where = "" if g.bound == "estimate" else " (CI end)"
            return (f"guardrail breached: {way} {fmt_number(100 * harm / abs(m))}%{where}, "
                    f"more than the {fmt_number(100 * g.max_change)}% allowed")
        return None

    @property
    def tone(self) -> str:
        """The verdict cell's tone: ``bad`` when a guardrail is breached, else the verdict."""
        return BAD if self.breach else self.verdict

    def verdict_text(self) -> str:
        v = self.verdict
        ci = fmt_interval(self.change, self.ci_low, self.ci_high)[1]
        text = "no CI" if ci == NO_CI else _VERDICT_WORDS[v]
        if self.guardrail is not None:
            text = self.breach or f"{text} (guardrail held)"
        return text

    def cells(self) -> list[Cell]:
        """The row's cells: [label], metric, the :data:`COLUMNS`, then ``extra``."""
        change, ci = fmt_interval(self.change, self.ci_low, self.ci_high)
        v = self.verdict
        metric = self.metric + (" (guardrail)" if self.guardrail is not None else "")
        out = [] if self.label is None else [Cell(self.label, None, "label")]
        out += [
            Cell(metric, None, "metric"),
            Cell(fmt_number(self.control_mean), None, "control"),
            Cell(fmt_number(self.treatment_mean), None, "treatment"),
            Cell(change, v, "change"),
            Cell(ci, v, "ci"),
            Cell(fmt_relative(self.change, self.control_mean), v, "relative"),
            Cell(self.verdict_text(), self.tone, "verdict"),
        ]
        out += [Cell(e, None, "extra") for e in self.extra]
        return out

    def phrase(self) -> str:
        """``metric +4.12% (+0.0114 [+0.0013, +0.0216])``: for sentences."""
        change, ci = fmt_interval(self.change, self.ci_low, self.ci_high)
        rel = fmt_relative(self.change, self.control_mean)
        return (f"{self.metric} {rel} ({change} {ci})" if not rel.startswith("n/a")
                else f"{self.metric} {change} {ci}")


def _e(x: Any) -> str:
    return html.escape(str(x))


def html_table(
    rows: Sequence[ScoreRow], *, label_column: str | None = None, metric_column: str = "Metric",
    headers: Sequence[str] = COLUMNS, extra_columns: Sequence[str] = (), table_id: str = "",
) -> str:
    """A scorecard as a plain HTML table (every text escaped).

    Cells carry ``sc-<kind>`` and, where coloured, ``sc-good``/``sc-bad``/``sc-inconclusive``;
    rows carry ``data-metric`` and ``data-verdict``. ``headers`` renames the six
    standard columns (e.g. "Holdout mean", "Policy mean" for a backtest).
    """
    if len(headers) != len(COLUMNS):
        raise ValueError(f"headers: expected {len(COLUMNS)} names; got {len(headers)}.")
    cols = ([label_column] if label_column is not None else []) + [metric_column, *headers,
                                                                   *extra_columns]
    left = {label_column, metric_column, headers[-1]}  # text columns: left-aligned
    head = "".join(f"<th class='sc-l'>{_e(c)}</th>" if c in left else f"<th>{_e(c)}</th>"
                   for c in cols)
    body = []
    for r in rows:
        tds = []
        for c in r.cells():
            cls = f"sc-{c.kind}" + (f" sc-{c.tone}" if c.tone else "")
            text = _e(c.text)
            if c.kind == "metric" and r.guardrail is not None:
                held = "" if r.breach else " sc-held"
                text = f"{_e(r.metric)}<span class='sc-flag{held}'>guardrail</span>"
            tds.append(f"<td class='{cls}'>{text}</td>")
        body.append(f"<tr data-metric='{_e(r.metric)}' data-verdict='{r.verdict}'>"
                    + "".join(tds) + "</tr>")
    ident = f" id='{_e(table_id)}'" if table_id else ""
    return (f"<div class='sc-scroll'><table class='scorecard'{ident}><thead><tr>{head}</tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table></div>")


def headline_html(label: str, versus: str, rows: Sequence[ScoreRow]) -> str:
    """A coloured sentence: what ``label`` changes vs ``versus``, worse metrics said first.

    Significantly worse metrics and breached guardrails come first, in red; then
    the better ones in green; the inconclusive ones last, in grey.
    """
    groups: dict[str, list[str]] = {BAD: [], GOOD: [], INCONCLUSIVE: []}
    for r in rows:
        text = _e(r.phrase())
        if r.breach:
            text += f" <span class='sc-flag'>{_e(r.breach)}</span>"
        groups[r.tone].append(f"<span class='sc-{r.tone}'>{text}</span>")
    parts = []
    if groups[BAD]:
        parts.append("<b class='sc-bad'>worse</b>: " + ", ".join(groups[BAD]))
    if groups[GOOD]:
        parts.append("<b class='sc-good'>better</b>: " + ", ".join(groups[GOOD]))
    if groups[INCONCLUSIVE]:
        parts.append("<b class='sc-inconclusive'>no significant change</b>: "
                     + ", ".join(groups[INCONCLUSIVE]))
    return f"<b>{_e(label)}</b> vs {_e(versus)}: " + "; ".join(parts) + "."
