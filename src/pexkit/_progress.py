"""Progress bars for long work (rich), off when not attached to a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["progress_bar"]


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, step: int = 1, description: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            kwargs = {} if description is None else {"description": description}
            self._progress.update(self._task, advance=step, **kwargs)  # type: ignore[arg-type]


@contextmanager
def progress_bar(total: int, description: str, enabled: bool | None = None) -> Iterator[_Bar]:
    """Yield an object with ``advance()``; shows a bar when ``enabled``.

    ``enabled=None`` shows it only when stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _Bar(None, None)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task(description, total=total)
        yield _Bar(progress, task)
