"""Group commit for decisions: concurrent requests share one transaction.

Each commit costs an fsync (SQLite ``synchronous=FULL``, PostgreSQL's WAL
flush), which caps one-at-a-time commits at a few hundred per second. A single
writer thread takes every request waiting in its queue, writes them in one
transaction, and only then answers each one: nothing is acknowledged before its
commit, and throughput grows with concurrency. A request whose experiment
state changed since its decisions were computed is answered with
:class:`~pexkit.store.db.StaleStateError` (the caller recomputes); a request
that fails on its own does not fail the others in its batch.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

from pexkit.store.db import EventStore, StaleStateError

__all__ = ["GroupCommitter"]

_Result = dict[str, dict[str, Any]]
_Item = tuple[list[dict[str, Any]], str, int, "Future[_Result]"]


class GroupCommitter:
    """One writer thread that commits waiting decision batches together.

    Parameters
    ----------
    store : EventStore
    max_rows : int
        Rows per transaction at most (a bigger single request still goes alone).
    """

    def __init__(self, store: EventStore, max_rows: int = 4096) -> None:
        self.store = store
        self.max_rows = max_rows
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pexkit-commit", daemon=True)
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]], experiment: str, version: int) -> Future[_Result]:
        """Queue one request's assignments; the future resolves after the commit."""
        fut: Future[_Result] = Future()
        self._queue.put((rows, experiment, version, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            n_rows = len(item[0])
            stop = False
            while n_rows < self.max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                n_rows += len(nxt[0])
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        while batch:
            versions = {exp: ver for _, exp, ver, _ in batch}
            try:
                results = self.store.commit_decisions([rows for rows, *_ in batch], versions)
            except StaleStateError as exc:
                keep = []
                for item in batch:
                    if item[1] in exc.names:
                        item[3].set_exception(StaleStateError({item[1]}))
                    else:
                        keep.append(item)
                batch = keep
                continue
            except Exception as exc:  # noqa: BLE001 - isolate the failing request
                if len(batch) == 1:
                    batch[0][3].set_exception(exc)
                    return
                for item in batch:  # retry one by one: only the culprit fails
                    self._commit([item])
                return
            for item, res in zip(batch, results, strict=True):
                item[3].set_result(res)
            return
