"""Loader for the Hillstrom MineThatData e-mail experiment (64,000 customers, 3 arms)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pexkit.data import LoggedData
from pexkit.exceptions import InvalidDataError
from pexkit.spec import ExperimentSpec

__all__ = ["HILLSTROM_COLUMNS", "hillstrom_spec", "load_hillstrom"]

HILLSTROM_COLUMNS = (
    "recency", "history_segment", "history", "mens", "womens", "zip_code",
    "newbie", "channel", "segment", "visit", "conversion", "spend",
)


def hillstrom_spec(weights: dict[str, float] | None = None) -> ExperimentSpec:
    """The spec of the Hillstrom log: arms No / Mens / Womens E-Mail; visit, conversion, spend."""
    w = weights or {"visit": 1.0, "conversion": 0.0, "spend": 0.05}
    return ExperimentSpec(
        name="hillstrom-email",
        treatment={"column": "segment", "arms": ["No E-Mail", "Mens E-Mail", "Womens E-Mail"]},
        outcomes=[
            {"name": "visit", "goal": "maximize", "weight": w.get("visit", 0.0)},
            {"name": "conversion", "goal": "maximize", "weight": w.get("conversion", 0.0)},
            {"name": "spend", "goal": "maximize", "weight": w.get("spend", 0.0)},
        ],
        numeric=["recency", "history", "mens", "womens", "newbie"],
        categorical=["zip_code", "channel"],
    )


def load_hillstrom(path: str | Path, spec: ExperimentSpec | None = None) -> LoggedData:
    """Read ``hillstrom.csv`` (or the folder holding it) as LoggedData.

    Parameters
    ----------
    path : str or Path
        The CSV file, or a folder that contains ``hillstrom.csv``.
    spec : ExperimentSpec, optional
        Default :func:`hillstrom_spec`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "hillstrom.csv"
    if not path.exists():
        raise InvalidDataError(
            f"Hillstrom file {str(path)!r} does not exist; pass the path of "
            "hillstrom.csv (e.g. ../shared/data/hillstrom). pexkit never downloads data."
        )
    frame = pd.read_csv(path)
    missing = [c for c in HILLSTROM_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidDataError(
            f"{str(path)!r} lacks the Hillstrom columns {missing}; found "
            f"{list(frame.columns)}. Pass the original MineThatData file."
        )
    return LoggedData.from_frame(frame, spec or hillstrom_spec())
