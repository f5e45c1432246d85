"""Scorecards: one formatting rule set, goal-aware verdicts, guardrail flags, plain HTML."""

import math
import re

import pytest

from pexkit.report.scorecard import (
    BAD,
    COLUMNS,
    GOOD,
    INCONCLUSIVE,
    NO_CI,
    Limit,
    ScoreRow,
    fmt_interval,
    fmt_number,
    fmt_relative,
    guardrail_limits,
    headline_html,
    html_table,
    verdict,
)

INF = math.inf


@pytest.mark.parametrize(("x", "signed", "text"), [
    (0.011432, True, "+0.0114"),
    (0.011432, False, "0.0114"),
    (-0.5, False, "-0.500"),
    (3.3217, False, "3.32"),
    (123.456, True, "+123"),
    (1234.6, False, "1,235"),  # integer digits are never rounded away
    (0.09996, False, "0.100"),  # rounding up keeps 3 figures, not 4
    (0.0000123, True, "+1.23e-05"),
    (0.0, True, "0.00"),  # zero has no sign
    (-0.0000001, False, "-1.00e-07"),
])
def test_numbers_have_three_significant_figures(x, signed, text):
    assert fmt_number(x, signed=signed) == text


def test_words_for_what_is_not_a_number():
    assert fmt_number(INF) == "infinite" and fmt_number(-INF) == "minus infinite"
    assert fmt_number(None) == fmt_number(float("nan")) == "–"
    assert fmt_interval(0.5, -INF, INF) == ("+0.500", "unbounded")
    assert fmt_interval(0.5, 0.1, INF) == ("+0.500", "at least +0.100")
    assert fmt_interval(0.5, -INF, 0.9) == ("+0.500", "at most +0.900")
    # a missing or empty CI is said, not printed as [nan, nan] or [+0, +0]
    assert fmt_interval(0.5, None, None)[1] == NO_CI
    assert fmt_interval(0.5, float("nan"), 0.7)[1] == NO_CI
    assert fmt_interval(0.5, 0.7, 0.3)[1] == NO_CI
    assert fmt_relative(0.5, 0.0) == "n/a (control mean 0)"
    assert fmt_relative(0.5, None) == "n/a"


def test_ci_takes_the_estimates_decimals():
    # the ragged example
    assert fmt_interval(0.01143, 0.001285, 0.02157) == ("+0.0114", "[+0.0013, +0.0216]")
    est, ci = fmt_interval(0.0811, 0.05644, 0.10577)
    assert (est, ci) == ("+0.0811", "[+0.0564, +0.1058]")
    # an estimate near 0 in a wide CI: the interval's precision, not 8 decimals of noise
    assert fmt_interval(1e-5, -0.02, 0.02) == ("+0.00001", "[-0.02000, +0.02000]")
    # means: no signs; relative changes in percent with the same rule
    assert fmt_interval(3.3217, 3.1, 3.52, signed=False) == ("3.32", "[3.10, 3.52]")
    assert fmt_interval(17.93, 15.12, 20.71, unit="%") == ("+17.9%", "[+15.1%, +20.7%]")
    assert fmt_relative(0.0811, 0.0453) == "+179%"
    assert fmt_relative(-3.0, -12.0) == "-25.0%"  # relative to the control mean's magnitude


def test_verdicts_follow_the_goal():
    assert verdict(0.2, 0.1, 0.3, "maximize") == GOOD
    assert verdict(-0.2, -0.3, -0.1, "maximize") == BAD
    # a minimized metric (unsubscribes) that rises significantly is bad, one that falls is good
    assert verdict(0.08, 0.056, 0.106, "minimize") == BAD
    assert verdict(-0.08, -0.106, -0.056, "minimize") == GOOD
    # significant only when the 95% CI excludes 0
    assert verdict(0.2, -0.01, 0.41, "maximize") == INCONCLUSIVE
    assert verdict(0.2, 0.0, 0.4, "maximize") == INCONCLUSIVE
    assert verdict(0.2, None, None, "minimize") == INCONCLUSIVE
    assert verdict(0.2, -INF, INF, "maximize") == INCONCLUSIVE
    with pytest.raises(ValueError, match="goal"):
        verdict(0.2, 0.1, 0.3, "up")


def test_row_cells_tones_and_treatment_mean():
    row = ScoreRow("unsubscribe", "minimize", 0.0811, 0.0564, 0.1058, control_mean=0.0453,
                   label="heavy", extra=("t",))
    cells = row.cells()
    assert [c.text for c in cells] == ["heavy", "unsubscribe", "0.0453", "0.126", "+0.0811",
                                       "[+0.0564, +0.1058]", "+179%", "worse", "t"]
    tones = {c.kind: c.tone for c in cells}
    assert tones["change"] == tones["ci"] == tones["relative"] == tones["verdict"] == BAD
    assert tones["metric"] is None and tones["control"] is None
    up = ScoreRow("engagement", "maximize", 0.598, 0.504, 0.692, control_mean=3.32)
    assert up.verdict == GOOD and [c.text for c in up.cells()][-2] == "+18.0%"
    flat = ScoreRow("revenue", "maximize", 0.01, -0.2, 0.22, control_mean=1.75)
    assert flat.verdict == INCONCLUSIVE and flat.cells()[-1].text == "inconclusive"
    small = ScoreRow("revenue", "maximize", 0.3, None, None, control_mean=0.0)
    assert [c.text for c in small.cells()][-3:] == [NO_CI, "n/a (control mean 0)", "no CI"]


def test_guardrails_breach_when_significantly_worse_or_over_the_limit():
    guards = guardrail_limits([{"outcome": "unsubscribe", "max_change": 0.02, "bound": "ci"}])
    assert guards == {"unsubscribe": Limit(0.02, "ci")}
    bad = ScoreRow("unsubscribe", "minimize", 0.0811, 0.0564, 0.1058, control_mean=0.0453,
                   guardrail=Limit(0.5))
    assert bad.breach == "guardrail breached: significantly worse"
    # not significant, but the estimate rose 36% of the control mean where 20% is allowed
    over = ScoreRow("unsubscribe", "minimize", 0.0164, -0.0039, 0.0367, control_mean=0.0453,
                    guardrail=Limit(0.2))
    assert over.verdict == INCONCLUSIVE and over.tone == BAD
    assert over.breach is not None and "rose 36.2%" in over.breach and "20.0%" in over.breach
    held = ScoreRow("unsubscribe", "minimize", 0.0164, -0.0039, 0.0367, control_mean=0.0453,
                    guardrail=Limit(0.5))
    assert held.breach is None and held.cells()[-1].text == "inconclusive (guardrail held)"
    # bound "ci": the pessimistic end (upper, for a minimized metric) must stay under
    ci = ScoreRow("unsubscribe", "minimize", 0.0164, -0.0039, 0.0367, control_mean=0.0453,
                  guardrail=Limit(0.5, "ci"))
    assert ci.breach is not None and "(CI end)" in ci.breach
    # a maximized guardrail that falls
    fell = ScoreRow("revenue", "maximize", -0.2, -0.5, 0.1, control_mean=1.0,
                    guardrail=Limit(0.1))
    assert fell.breach is not None and "fell 20.0%" in fell.breach
    from pexkit.optimize import Guardrail

    assert guardrail_limits([Guardrail("unsubscribe", 0.02)]) == {"unsubscribe": Limit(0.02)}


def test_html_table_escapes_and_marks_each_cell():
    rows = [
        ScoreRow("<b>clicks</b>", "maximize", 0.2, 0.1, 0.3, control_mean=1.0, label="a&b"),
        ScoreRow("unsub", "minimize", 0.2, 0.1, 0.3, control_mean=1.0, label="a&b",
                 guardrail=Limit(0.05)),
        ScoreRow("rev", "maximize", 0.2, -0.1, 0.3, control_mean=1.0, label="a&b"),
    ]
    text = html_table(rows, label_column="Treatment", table_id="t")
    assert "<b>clicks" not in text and "&lt;b&gt;clicks&lt;/b&gt;" in text and "a&amp;b" in text
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", text)
    assert heads == ["Treatment", "Metric", *COLUMNS]
    assert heads[2:7] == ["Control mean", "Treatment mean", "Change", "95% CI", "Relative change"]
    verdicts = re.findall(r"data-verdict='(\w+)'", text)
    assert verdicts == [GOOD, BAD, INCONCLUSIVE]
    assert text.count("sc-change sc-good") == 1 and text.count("sc-change sc-bad") == 1
    assert text.count("sc-change sc-inconclusive") == 1
    assert "<span class='sc-flag'>guardrail</span>" in text
    with pytest.raises(ValueError, match="headers"):
        html_table(rows, headers=("a", "b"))


def test_headline_says_what_got_worse_first_in_red():
    rows = [
        ScoreRow("engagement", "maximize", 0.8, 0.7, 0.9, control_mean=3.3),
        ScoreRow("unsubscribe", "minimize", 0.076, 0.05, 0.1, control_mean=0.0453,
                 guardrail=Limit(0.25)),
        ScoreRow("revenue", "maximize", 0.01, -0.1, 0.12, control_mean=1.75),
    ]
    text = headline_html("policy 3", "all-control", rows)
    assert text.startswith("<b>policy 3</b> vs all-control: <b class='sc-bad'>worse</b>")
    worse, better = text.index("sc-bad'>unsubscribe +168%"), text.index("sc-good'>engagement")
    assert worse < better < text.index("sc-inconclusive'>revenue")
    assert "guardrail breached: significantly worse" in text
