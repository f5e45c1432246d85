"""Every progress bar of a fit ends at its total (the effect-model bar once read 90/63)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import pexkit as px
from pexkit.effects import model as model_mod
from pexkit.effects import nuisance as nuisance_mod


class _Bar:
    def __init__(self, total: int, description: str) -> None:
        self.total, self.description, self.done = total, description, 0

    def advance(self, step: int = 1, description: str | None = None) -> None:
        self.done += step


@pytest.mark.parametrize(("learner", "n_folds", "selection_rows"),
                         [("auto", 3, None), ("auto", 3, 1000), ("auto", 2, None), ("dr", 4, None)])
def test_bars_end_at_their_totals(monkeypatch: pytest.MonkeyPatch, learner: str, n_folds: int,
                                  selection_rows: int | None) -> None:
    bars: list[_Bar] = []

    @contextmanager
    def recording(total: int, description: str, enabled: bool | None = None) -> Iterator[_Bar]:
        bar = _Bar(total, description)
        bars.append(bar)
        yield bar

    monkeypatch.setattr(model_mod, "progress_bar", recording)
    monkeypatch.setattr(nuisance_mod, "progress_bar", recording)
    sim = px.simulate("notifications", n_units=1500, seed=4)
    frame = sim.frame.copy()
    frame.loc[np.random.default_rng(0).random(len(frame)) < 0.3, "revenue"] = np.nan
    raw = sim.spec.to_dict()
    raw["outcomes"] = [{**o, "missing": "drop"} if o["name"] == "revenue" else o
                       for o in raw["outcomes"]]
    data = px.LoggedData.from_frame(frame, px.ExperimentSpec.from_dict(raw))
    fitted: Any = px.EffectModel(
        learner=learner, n_folds=n_folds, random_state=0, progress=True,
        selection_rows=selection_rows, base_params={"n_estimators": 8},
    ).fit(data)
    assert [b.description for b in bars] == ["outcome models", "effect models"] * (
        2 if selection_rows else 1)
    for bar in bars:
        assert bar.done == bar.total, (bar.description, bar.done, bar.total)
    if selection_rows:
        assert fitted.selection_probe_ is not None
