"""A unit's outcome values from its logged events: each outcome's window and aggregation.

Per outcome the spec says how the service turns the events of one unit into one
value (``aggregate``, default ``sum``) and which events count (``window`` after
the unit's first exposure, default all). The first exposure of a unit is the
``created_at`` of its assignment in the epoch the events were logged to (its
first decision there; later decisions in the same phase return that one).

An event's time is the ``time`` the client logged with it, else when the
service received it. An event counts when ``exposure <= time < exposure +
window``; an event logged without a time was logged after its unit's decision
(logging needs one), so it never counts as before the exposure, whatever the
clocks of several servers say. Over the counted events:

- ``sum``: the sum of their values; ``count``: how many there are;
- ``any``: 1 when there is at least one, else 0; ``max``: the largest value;
- ``last``: the value of the latest one (events at the same time: the last by
  ``event_id``).

A unit with no counted event gets 0 for every aggregation. Tracked outcomes
(``tracking``) are sums over every event. This module is the one place that
computes these values: training logs, tuning metrics, the backtest and the
dashboard all read them through :func:`pexkit.service.training.unit_frame`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pexkit.spec.spec import ExperimentSpec
from pexkit.store.db import EventStore

__all__ = ["EVENT_COLUMNS", "Rule", "aggregate_events", "outcome_values", "rules"]

Rule = tuple[str, float | None]  # (aggregate, window in seconds or None)
EVENT_COLUMNS = ["epoch", "unit", "outcome", "value", "time", "timed", "event_id"]
_KEY = ["epoch", "unit"]


def rules(spec: ExperimentSpec, tracking: Iterable[dict[str, Any]] = ()) -> dict[str, Rule]:
    """Outcome -> ``(aggregate, window seconds)``; tracked outcomes are plain sums."""
    out: dict[str, Rule] = {o.name: (o.aggregate, o.window_seconds) for o in spec.outcomes}
    for t in tracking:
        out.setdefault(t["name"], ("sum", None))
    return out


def _utc(values: Any) -> np.ndarray:
    """UTC times as ``datetime64[ns]`` (naive stored times are UTC: SQLite drops the zone)."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).tz_convert(None).to_numpy()


def aggregate_events(
    events: pd.DataFrame, exposures: pd.DataFrame, rules: dict[str, Rule]
) -> pd.DataFrame:
    """Per (epoch, unit, outcome) with a counted event: the aggregated ``value``.

    ``events``: :data:`EVENT_COLUMNS`; ``exposures``: ``epoch, unit, exposed_at``
    (one row per unit and epoch). Events of units and epochs not in
    ``exposures`` and of outcomes not in ``rules`` are left out.
    """
    cols = [*_KEY, "outcome", "value"]
    if events.empty or exposures.empty:
        return pd.DataFrame(columns=cols)
    ev = events[events["outcome"].isin(list(rules))].merge(
        exposures[[*_KEY, "exposed_at"]], on=_KEY, how="inner"
    )
    if ev.empty:
        return pd.DataFrame(columns=cols)
    exposed = _utc(ev["exposed_at"])
    when = _utc(ev["time"])
    # untimed events came after their decision: never before the exposure
    when = np.where(ev["timed"].astype(bool).to_numpy(), when, np.maximum(when, exposed))
    after = (when - exposed) / np.timedelta64(1, "s")
    window = ev["outcome"].map({o: np.inf if w is None else w for o, (_, w) in rules.items()})
    ev = ev.assign(when=when)[(after >= 0) & (after < window.to_numpy(float))]
    by_aggregate: dict[str, list[str]] = {}
    for o, (agg, _) in rules.items():
        by_aggregate.setdefault(agg, []).append(o)
    parts = []
    for agg, outs in by_aggregate.items():
        sel = ev[ev["outcome"].isin(outs)]
        if sel.empty:
            continue
        grouped = sel.groupby([*_KEY, "outcome"], sort=False)["value"]
        if agg == "sum":
            val = grouped.sum()
        elif agg == "count":
            val = grouped.size().astype(float)
        elif agg == "any":
            val = grouped.size().clip(upper=1).astype(float)
        elif agg == "max":
            val = grouped.max()
        else:  # last
            ordered = sel.sort_values(["when", "event_id"], kind="stable")
            val = ordered.groupby([*_KEY, "outcome"], sort=False)["value"].last()
        parts.append(val.rename("value").reset_index())
    if not parts:
        return pd.DataFrame(columns=cols)
    out: pd.DataFrame = pd.concat(parts, ignore_index=True)[cols]
    return out


def outcome_values(
    store: EventStore, name: str, exposures: pd.DataFrame, rules: dict[str, Rule],
    epochs: Sequence[int],
) -> pd.DataFrame:
    """Wide frame: ``epoch, unit`` and one column per outcome with a counted event.

    Events of plain sums (no window) logged without a time always count, so
    the store sums them in SQL (exactly the sums of before windows existed);
    every other event is read one by one and aggregated by
    :func:`aggregate_events`.
    """
    plain = [o for o, (agg, w) in rules.items() if agg == "sum" and w is None]
    ruled = [o for o in rules if o not in plain]
    epochs = list(epochs)
    longs = []
    if plain:
        totals = store.outcome_totals(name, epochs, plain, timed=False)
        if totals:
            longs.append(pd.DataFrame(totals, columns=[*_KEY, "outcome", "value"]))
    rows: list[Any] = []
    if ruled:
        rows += store.outcome_events(name, epochs, ruled)
    if plain:
        rows += store.outcome_events(name, epochs, plain, timed=True)
    if rows:
        longs.append(aggregate_events(pd.DataFrame(rows, columns=EVENT_COLUMNS), exposures,
                                      rules))
    longs = [frame for frame in longs if not frame.empty]
    if not longs:
        return pd.DataFrame(columns=_KEY)
    tall = pd.concat(longs, ignore_index=True) if len(longs) > 1 else longs[0]
    return tall.pivot_table(
        index=_KEY, columns="outcome", values="value", aggfunc="sum"
    ).reset_index()
