"""Live monitoring of a running experiment: pure computations, no store and no HTTP.

:func:`health` turns what the store holds about the current epoch (its
decisions with their features and times, its outcome events' times, the jobs)
and the training log of the model in use into one report: traffic rates, a
sample-ratio test of live assignment, feature drift (population stability
index), outcome arrival, failed jobs, and a list of flags, each
``{name, status: ok|warn|alert, reason, fix}`` in plain words.

Population stability index of a live sample ``a`` against a reference ``e``
over the same bins: ``PSI = sum_b (a_b - e_b) * ln(a_b / e_b)`` with bin
shares floored at :data:`PSI_FLOOR` (an empty bin would be infinite). Numeric
features use the reference's deciles as cut points (``(-inf, q1], (q1, q2],
..., (q9, inf)``; ties merge bins), categorical features their levels (levels
the reference never saw share one bin, missing values another). Read it as:
below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 a shift the model was
not trained for.

Examples
--------
>>> round(psi_from_counts([50, 50], [80, 20]), 4)
0.4159
>>> psi_status(0.05), psi_status(0.2), psi_status(0.4)
('ok', 'warn', 'alert')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from pexkit.data.logged import SRM_ALPHA, SampleRatioTest

__all__ = [
    "PSI_ALERT", "PSI_FLOOR", "PSI_MODERATE", "Flag", "Settings", "categorical_psi",
    "feature_drift", "health", "numeric_psi", "psi_from_counts", "psi_status", "ratio_test",
    "worst",
]

Status = Literal["ok", "warn", "alert"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}

PSI_MODERATE = 0.1
PSI_ALERT = 0.25
PSI_FLOOR = 1e-4
MISSING, UNSEEN = "(missing)", "(unseen level)"


@dataclass(frozen=True)
class Flag:
    """One check's verdict: ``status`` ok, warn or alert, why, and what to do."""

    name: str
    status: Status
    reason: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "fix": self.fix}


@dataclass(frozen=True)
class Settings:
    """The monitor's windows and thresholds.

    Attributes
    ----------
    window_minutes : float
        The recent window of the traffic rates.
    grace_minutes : float
        A unit counts as "without outcome events" only once it was decided this long ago.
    stale_minutes : float
        Outcomes have stopped when none arrived in this many minutes while decisions did.
    live_units : int
        Drift compares the latest this many decisions of the epoch with the training log.
    min_drift_units : int
        Fewer live decisions than this: PSI is shown but not flagged (it is noisy).
    """

    window_minutes: float = 15.0
    grace_minutes: float = 60.0
    stale_minutes: float = 30.0
    live_units: int = 2000
    min_drift_units: int = 500


def worst(statuses: Iterable[str]) -> Status:
    """The most severe status (``ok`` for none)."""
    top = max((_RANK[s] for s in statuses), default=0)
    return ("ok", "warn", "alert")[top]  # type: ignore[return-value]


# ---------------------------------------------------------------- PSI
def psi_from_counts(
    expected: ArrayLike, actual: ArrayLike, floor: float = PSI_FLOOR
) -> float:
    """PSI of ``actual`` bin counts against ``expected`` bin counts (same bins)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi_from_counts: expected two non-empty count vectors of one shape.")
    pe = np.maximum(e / e.sum(), floor)
    pa = np.maximum(a / a.sum(), floor)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def psi_status(psi: float) -> Status:
    """``ok`` below 0.1, ``warn`` (moderate) up to 0.25, ``alert`` above."""
    if psi > PSI_ALERT:
        return "alert"
    return "warn" if psi > PSI_MODERATE else "ok"


def _bins(labels: Sequence[str], e: NDArray[Any], a: NDArray[Any]) -> list[dict[str, Any]]:
    ne, na = max(float(e.sum()), 1.0), max(float(a.sum()), 1.0)
    return [{"bin": lab, "training": float(x / ne), "live": float(y / na)}
            for lab, x, y in zip(labels, e, a, strict=True)]


def numeric_psi(reference: ArrayLike, live: ArrayLike, n_bins: int = 10) -> dict[str, Any]:
    """PSI over the reference's quantile bins (deciles by default); NaN is its own bin."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    finite = ref[np.isfinite(ref)]
    if finite.size == 0:
        edges = np.empty(0)
    else:
        edges = np.unique(np.quantile(finite, np.arange(1, n_bins) / n_bins))

    def count(x: NDArray[np.float64]) -> NDArray[np.int64]:
        ok = np.isfinite(x)
        idx = np.searchsorted(edges, x[ok], side="left")  # bin i: (edge[i-1], edge[i]]
        c = np.bincount(idx, minlength=edges.size + 1)
        return np.append(c, int((~ok).sum()))

    e, a = count(ref), count(cur)
    labels = ([f"<= {edges[0]:.4g}"] if edges.size else ["all"])
    labels += [f"({lo:.4g}, {hi:.4g}]" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    if edges.size:
        labels.append(f"> {edges[-1]:.4g}")
    labels.append(MISSING)
    if e[-1] == 0 and a[-1] == 0:  # no missing values on either side: no such bin
        e, a, labels = e[:-1], a[:-1], labels[:-1]
    return {"psi": psi_from_counts(e, a), "bins": _bins(labels, e, a)}


def _levels(values: Any) -> pd.Series:
    s = pd.Series(np.asarray(values, dtype=object))
    return s.where(s.isna(), s.astype(str))


def categorical_psi(reference: ArrayLike, live: ArrayLike) -> dict[str, Any]:
    """PSI over the reference's levels; unseen levels and missing values get a bin each."""
    ref, cur = _levels(reference), _levels(live)
    levels = sorted(ref.dropna().unique().tolist())
    known = set(levels)

    def count(s: pd.Series) -> NDArray[np.int64]:
        vc = s.dropna().value_counts()
        c = [int(vc.get(lv, 0)) for lv in levels]
        c.append(int(vc[[v not in known for v in vc.index]].sum()))
        c.append(int(s.isna().sum()))
        return np.asarray(c, dtype=np.int64)

    e, a = count(ref), count(cur)
    labels = [*levels, UNSEEN, MISSING]
    keep = (e + a) > 0
    return {"psi": psi_from_counts(e[keep], a[keep]),
            "bins": _bins([lab for lab, k in zip(labels, keep, strict=True) if k], e[keep],
                          a[keep])}


def feature_drift(
    reference: pd.DataFrame, live: pd.DataFrame, numeric: Sequence[str],
    categorical: Sequence[str], n_bins: int = 10,
) -> list[dict[str, Any]]:
    """Per feature: kind, PSI, its status and the bin shares, most drifted first."""
    out = []
    for kind, cols in (("numeric", numeric), ("categorical", categorical)):
        for f in cols:
            if f not in reference or f not in live:
                continue
            if kind == "numeric":
                res = numeric_psi(pd.to_numeric(reference[f], errors="coerce"),
                                  pd.to_numeric(live[f], errors="coerce"), n_bins)
            else:
                res = categorical_psi(reference[f].to_numpy(object), live[f].to_numpy(object))
            out.append({"feature": f, "kind": kind, "psi": res["psi"],
                        "status": psi_status(res["psi"]), "bins": res["bins"]})
    return sorted(out, key=lambda r: -r["psi"])


# ---------------------------------------------------------------- assignment
def ratio_test(counts: Mapping[str, int], shares: Mapping[str, float]) -> SampleRatioTest:
    """Pearson's chi-square of ``counts`` against ``shares`` (the data layer's SRM test).

    Examples
    --------
    >>> ratio_test({"a": 500, "b": 500}, {"a": 0.5, "b": 0.5}).mismatch
    False
    >>> ratio_test({"a": 600, "b": 400}, {"a": 0.5, "b": 0.5}).mismatch
    True
    """
    keys = list(shares)
    obs = np.array([counts.get(k, 0) for k in keys], dtype=np.float64)
    p = np.array([shares[k] for k in keys], dtype=np.float64)
    expected = obs.sum() * p / p.sum()
    chi2, p_value = stats.chisquare(obs, expected)
    return SampleRatioTest(
        counts={k: int(c) for k, c in zip(keys, obs, strict=True)},
        expected={k: float(x) for k, x in zip(keys, expected, strict=True)},
        chi2=float(chi2), p_value=float(p_value), mismatch=bool(p_value < SRM_ALPHA),
    )


def _test(label: str, counts: Mapping[str, int], shares: Mapping[str, float]) -> dict[str, Any]:
    n = sum(counts.get(k, 0) for k in shares)
    if n == 0 or min(shares.values()) * n / sum(shares.values()) < 5:
        return {"test": label, "counts": dict(counts), "n": n, "skipped":
                "fewer than 5 expected units in a cell"}
    return {"test": label, "n": n, **ratio_test(counts, shares).to_dict()}


def assignment_tests(
    decisions: pd.DataFrame, phase: str, arms: Sequence[str], tune_arms: Sequence[str],
    holdout: float, explore: float,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The randomized parts of the current epoch against the shares they were drawn with.

    Returns the arm tests (randomize: treatments, uniform; tune: tuning arms,
    uniform; launched: the holdout's treatments, uniform, and the explored share
    of served units) and the launched holdout-share test (None before a launch).
    """
    if decisions.empty:
        return [], None
    K = len(arms)
    uniform = dict.fromkeys(arms, 1.0 / K)

    def by_arm(rows: pd.DataFrame) -> dict[str, int]:
        vc = rows["treatment"].astype(int).value_counts()
        return {a: int(vc.get(k, 0)) for k, a in enumerate(arms)}

    tests: list[dict[str, Any]] = []
    hold_test = None
    if phase == "randomize":
        tests.append(_test("treatments of randomized units", by_arm(decisions), uniform))
    elif phase == "tune" and tune_arms:
        vc = decisions["arm"].value_counts()
        tests.append(_test("units per tuning arm", {a: int(vc.get(a, 0)) for a in tune_arms},
                           dict.fromkeys(tune_arms, 1.0 / len(tune_arms))))
    elif phase == "launched":
        hold = decisions["holdout"].astype(bool)
        tests.append(_test("treatments of holdout units", by_arm(decisions[hold]), uniform))
        served = decisions[~hold]
        if explore > 0:
            n_exp = int((served["arm"] == "explore").sum())
            tests.append(_test("explored share of served units",
                               {"explore": n_exp, "policy": len(served) - n_exp},
                               {"explore": explore, "policy": 1.0 - explore}))
        hold_test = _test("holdout share of launched units",
                          {"holdout": int(hold.sum()), "served": int((~hold).sum())},
                          {"holdout": holdout, "served": 1.0 - holdout})
    return tests, hold_test


# ---------------------------------------------------------------- traffic and outcomes
def _utc(times: Any) -> pd.Series:
    """Timestamps as tz-aware UTC (naive ones, as SQLite returns them, are UTC)."""
    s = pd.Series(pd.to_datetime(pd.Series(times, dtype=object), utc=True))
    return s.reset_index(drop=True)


def _iso(t: Any) -> str | None:
    return None if t is None or pd.isna(t) else pd.Timestamp(t).isoformat()


def rates(times: Any, now: datetime, window_minutes: float) -> dict[str, Any]:
    """Count, per-minute rate in the last window and since the first timestamp, first/last."""
    s = _utc(times)
    at = pd.Timestamp(now)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    recent = int((s > at - pd.Timedelta(minutes=window_minutes)).sum())
    first, last = (s.min(), s.max()) if len(s) else (None, None)
    span = max((at - first).total_seconds() / 60.0, 1.0) if first is not None else 1.0
    return {"total": int(len(s)), "last_window": recent,
            "per_minute_window": recent / window_minutes,
            "per_minute_since_start": len(s) / span if len(s) else 0.0,
            "first_at": _iso(first), "last_at": _iso(last)}


def outcome_arrival(
    decided: pd.DataFrame, event_units: Iterable[str], event_times: Any, now: datetime,
    settings: Settings,
) -> dict[str, Any]:
    """Units past the grace period without any event, and whether events stopped arriving.

    ``decided``: one row per unit with ``unit`` and ``created_at`` (its decision).
    The eligible units are split in two halves by decision time: a later half
    that misses far more events than the earlier one means events stopped
    reaching the store part-way (older units had time to collect theirs either way).
    """
    at = pd.Timestamp(now)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    with_events = set(map(str, event_units))
    t = _utc(decided["created_at"] if len(decided) else [])
    order = np.argsort(t.to_numpy(), kind="stable")
    eligible_mask = (t <= at - pd.Timedelta(minutes=settings.grace_minutes)).to_numpy()
    units = decided["unit"].astype(str).to_numpy() if len(decided) else np.empty(0, object)
    missing = np.array([u not in with_events for u in units], dtype=bool)
    idx = order[eligible_mask[order]]
    n = int(idx.size)
    half = n // 2
    share = float(missing[idx].mean()) if n else None
    early = float(missing[idx[:half]].mean()) if half else None
    late = float(missing[idx[half:]].mean()) if n - half and half else None
    ev = _utc(event_times)
    last_event = ev.max() if len(ev) else None
    stale = at - pd.Timedelta(minutes=settings.stale_minutes)
    decisions_recent = int((t > stale).sum())
    events_recent = int((ev > stale).sum())
    first_decision = t.min() if len(t) else None
    waited = (first_decision is not None
              and first_decision <= at - pd.Timedelta(minutes=settings.grace_minutes))
    stopped = bool(decisions_recent >= 10 and events_recent == 0
                   and (last_event is not None or waited))
    return {
        "grace_minutes": settings.grace_minutes, "eligible_units": n,
        "units_without_events": int(missing[idx].sum()) if n else 0,
        "share_without_events": share, "earlier_half_share": early, "later_half_share": late,
        "stale_minutes": settings.stale_minutes, "decisions_in_stale_window": decisions_recent,
        "events_in_stale_window": events_recent, "last_event_at": _iso(last_event),
        "minutes_since_last_event": (None if last_event is None
                                     else (at - last_event).total_seconds() / 60.0),
        "stopped": stopped,
    }


def job_summary(jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Failed jobs, and the kinds whose latest job failed (not retried successfully since)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for j in sorted(jobs, key=lambda j: int(j["id"])):
        latest[str(j["kind"])] = j
    failing = [{"id": int(j["id"]), "kind": k, "error": str(j.get("error") or "")[:500],
                "finished_at": _iso(j.get("finished_at"))}
               for k, j in sorted(latest.items()) if j["status"] == "failed"]
    return {"total": len(jobs), "failed": sum(1 for j in jobs if j["status"] == "failed"),
            "running": sum(1 for j in jobs if j["status"] in ("queued", "running")),
            "latest_failed": failing}


# ---------------------------------------------------------------- flags
def _fmt_test(t: Mapping[str, Any]) -> str:
    observed = ", ".join(f"{k}: {v:,}" for k, v in t["counts"].items())
    expected = ", ".join(f"{k}: {v:,.0f}" for k, v in t["expected"].items())
    return (f"{t['test']}: observed {observed}; expected {expected} "
            f"(chi-square {t['chi2']:.1f}, p = {t['p_value']:.2g})")


def assignment_flag(tests: Sequence[Mapping[str, Any]], phase: str) -> Flag:
    name = "assignment_ratio"
    bad = [t for t in tests if t.get("mismatch")]
    fix = ("Check the assignment path: decisions dropped or not logged for some arms (a "
           "client that calls decide only for some users, a cache in front of the service, "
           "bot filtering after assignment), or units decided twice under new ids. Effects "
           "estimated from this traffic may be biased until it is fixed.")
    if bad:
        return Flag(name, "alert", "Sample ratio mismatch: " + "; ".join(_fmt_test(t) for t in bad)
                    + f" (alert below p = {SRM_ALPHA:g}).", fix)
    done = [t for t in tests if "chi2" in t]
    if not done:
        why = ("no randomized decisions in the current phase yet" if not tests
               else "too few randomized decisions to test yet")
        return Flag(name, "ok", f"Nothing to test: {why} (phase {phase}).", "None needed.")
    return Flag(name, "ok", "Live assignment matches its design shares: " + "; ".join(
        f"{t['test']} p = {t['p_value']:.2g}" for t in done) + ".", "None needed.")


def holdout_flag(test: Mapping[str, Any] | None, holdout: float) -> Flag:
    name = "holdout_share"
    if test is None:
        return Flag(name, "ok", "Not launched: no holdout to check.", "None needed.")
    if "chi2" not in test:
        return Flag(name, "ok", "Too few launched decisions to test the holdout share yet.",
                    "None needed.")
    n = test["n"]
    share = test["counts"]["holdout"] / n if n else 0.0
    if test["mismatch"]:
        return Flag(
            name, "alert",
            f"The holdout gets {share:.1%} of {n:,} launched decisions; the launch configured "
            f"{holdout:.1%} (chi-square {test['chi2']:.1f}, p = {test['p_value']:.2g}).",
            "Find why holdout or served units are missing from the log (a client that skips "
            "decide for some users, or serves its own default to them); the backtest compares "
            "unlike groups until it is fixed.")
    return Flag(name, "ok", f"The holdout gets {share:.1%} of {n:,} launched decisions "
                f"(configured {holdout:.1%}; p = {test['p_value']:.2g}).", "None needed.")


def drift_flag(drift: Mapping[str, Any], settings: Settings) -> Flag:
    name = "feature_drift"
    if drift.get("model_id") is None:
        return Flag(name, "ok", "No trained model yet: no training log to compare with.",
                    "None needed.")
    if drift.get("error"):
        return Flag(name, "warn", f"The training log of model {drift['model_id']} could not be "
                    f"read, so drift is not checked: {drift['error'][:300]}",
                    "Retrain (POST .../jobs train): a model stored with its training log "
                    "makes drift checkable again.")
    feats = drift.get("features") or []
    n_live = int(drift.get("n_live", 0))
    if not feats:
        return Flag(name, "ok", "No live decisions in the current phase to compare yet.",
                    "None needed.")
    if n_live < settings.min_drift_units:
        return Flag(name, "ok", f"Only {n_live} live decisions; PSI is flagged from "
                    f"{settings.min_drift_units} on (below, it is mostly noise).",
                    "None needed.")
    high = [f for f in feats if f["status"] == "alert"]
    moderate = [f for f in feats if f["status"] == "warn"]

    def names(fs: Sequence[Mapping[str, Any]]) -> str:
        return ", ".join(f"{f['feature']} (PSI {f['psi']:.2f})" for f in fs)

    base = (f"the latest {n_live:,} decisions against the {drift['n_training']:,} training "
            f"units of model {drift['model_id']}")
    if high:
        return Flag(name, "alert", f"Features shifted beyond PSI {PSI_ALERT}: {names(high)}; "
                    f"{base}." + (f" Moderate: {names(moderate)}." if moderate else ""),
                    "Check the feature pipeline first (units, encodings, a changed default or "
                    "source); if the population really changed, retrain on recent randomized "
                    "traffic (POST .../jobs retrain with the holdout and explored units) "
                    "before trusting the policy's choices for these units.")
    if moderate:
        return Flag(name, "warn", f"Moderate shift (PSI {PSI_MODERATE}-{PSI_ALERT}): "
                    f"{names(moderate)}; {base}.",
                    "Watch it; if it keeps growing, check the feature pipeline and plan a "
                    "retrain on recent randomized traffic.")
    top = feats[0]
    return Flag(name, "ok", f"Every feature is stable (largest PSI {top['psi']:.3f}, "
                f"{top['feature']}; {base}).", "None needed.")


def missing_flag(arrival: Mapping[str, Any]) -> Flag:
    name = "missing_outcomes"
    n = arrival["eligible_units"]
    grace = arrival["grace_minutes"]
    if n < 20:
        return Flag(name, "ok", f"{n} units were decided more than {grace:g} minutes ago; "
                    "checked from 20 on.", "None needed.")
    share = arrival["share_without_events"]
    early, late = arrival["earlier_half_share"], arrival["later_half_share"]
    what = (f"{share:.1%} of the {n:,} units decided more than {grace:g} minutes ago have no "
            f"outcome event")
    fix = ("Check that every outcome source still logs (POST .../log with the unit ids the "
           "service decided for), and that the unit ids match. Units without events count "
           "as 0 for every outcome, which biases the effects and the backtest.")
    if share >= 0.95:
        return Flag(name, "alert", what + ".", fix)
    if early is not None and late is not None and late - early > 0.2:
        return Flag(name, "warn", what + f"; the later half misses {late:.1%}, the earlier "
                    f"{early:.1%}: events stopped reaching the store for recent units.", fix)
    return Flag(name, "ok", what + " (units with no event count as 0).", "None needed.")


def stopped_flag(arrival: Mapping[str, Any]) -> Flag:
    name = "outcomes_stopped"
    mins = arrival["stale_minutes"]
    nd = arrival["decisions_in_stale_window"]
    if arrival["stopped"]:
        last = arrival["last_event_at"]
        since = ("no event was ever logged in this phase" if last is None else
                 f"the last event arrived {arrival['minutes_since_last_event']:.0f} minutes "
                 f"ago ({last})")
        return Flag(name, "alert", f"No outcome events in the last {mins:g} minutes while "
                    f"{nd:,} units were decided; {since}.",
                    "Check the outcome logging job or client (errors, credentials, a key "
                    "without the log scope, a queue that stopped); events logged late with "
                    "their event_id are still counted once.")
    return Flag(name, "ok", f"{arrival['events_in_stale_window']:,} events and {nd:,} "
                f"decisions in the last {mins:g} minutes.", "None needed.")


def jobs_flag(jobs: Mapping[str, Any]) -> Flag:
    name = "failed_jobs"
    failing = jobs["latest_failed"]
    if failing:
        desc = "; ".join(f"{j['kind']} (job {j['id']}): {j['error'][:200].rstrip('.')}"
                         for j in failing)
        return Flag(name, "warn", f"The latest job of a kind failed: {desc}.",
                    "Read the error (GET /v1/jobs/ID), fix its cause, and run the job again; "
                    "until then the experiment keeps its previous model, front or round.")
    extra = f" ({jobs['failed']} earlier failures were retried successfully)" if jobs[
        "failed"] else ""
    return Flag(name, "ok", f"No failing job among {jobs['total']}{extra}.", "None needed.")


# ---------------------------------------------------------------- the report
def health(
    *, phase: str, epoch: int, arms: Sequence[str], tune_arms: Sequence[str], holdout: float,
    explore: float, numeric: Sequence[str], categorical: Sequence[str],
    decisions: pd.DataFrame, events: pd.DataFrame, jobs: Sequence[Mapping[str, Any]],
    reference: pd.DataFrame | None, model_id: int | None, now: datetime,
    settings: Settings | None = None, reference_error: str | None = None,
) -> dict[str, Any]:
    """The health report of an experiment's current epoch.

    Parameters
    ----------
    decisions : DataFrame
        The epoch's decisions: ``unit, treatment, arm, holdout, created_at`` and the
        feature columns (as logged at first exposure).
    events : DataFrame
        The epoch's outcome events: ``unit, created_at``.
    reference : DataFrame or None
        The features of the training log of the model in use (``model_id``).
    reference_error : str, optional
        Why the training log could not be read (drift is then a warning).
    """
    cfg = settings or Settings()
    if len(decisions):  # one dtype: SQLite hands back naive and aware times alike
        decisions = decisions.assign(created_at=_utc(decisions["created_at"]).to_numpy())
    tests, hold_test = assignment_tests(decisions, phase, arms, tune_arms, holdout, explore)
    live = (decisions.sort_values("created_at", kind="stable").tail(cfg.live_units)
            if len(decisions) else decisions)
    drift: dict[str, Any] = {"model_id": model_id, "n_live": int(len(live)),
                             "n_training": 0 if reference is None else int(len(reference)),
                             "thresholds": {"moderate": PSI_MODERATE, "alert": PSI_ALERT},
                             "features": [], "error": reference_error}
    if reference is not None and len(live):
        drift["features"] = feature_drift(reference, live, numeric, categorical)
    empty = pd.Series([], dtype=object)
    arrival = outcome_arrival(
        decisions[["unit", "created_at"]] if len(decisions) else pd.DataFrame(
            {"unit": empty, "created_at": empty}),
        events["unit"] if len(events) else [], events["created_at"] if len(events) else [],
        now, cfg)
    job_info = job_summary(jobs)
    flags = [assignment_flag(tests, phase), holdout_flag(hold_test, holdout),
             drift_flag(drift, cfg), missing_flag(arrival), stopped_flag(arrival),
             jobs_flag(job_info)]
    at = pd.Timestamp(now)
    return {
        "phase": phase, "epoch": epoch, "at": at.isoformat(), "status": worst(
            f.status for f in flags),
        "settings": {"window_minutes": cfg.window_minutes, "grace_minutes": cfg.grace_minutes,
                     "stale_minutes": cfg.stale_minutes, "live_units": cfg.live_units,
                     "min_drift_units": cfg.min_drift_units},
        "traffic": {
            "decisions": rates(decisions["created_at"] if len(decisions) else [], now,
                               cfg.window_minutes),
            "events": rates(events["created_at"] if len(events) else [], now,
                            cfg.window_minutes),
        },
        "assignment": {"tests": tests, "holdout": hold_test},
        "drift": drift, "outcomes": arrival, "jobs": job_info,
        "flags": [f.to_dict() for f in flags],
    }
