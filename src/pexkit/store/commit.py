"""Group commit for decisions: concurrent requests share one transaction.

Each commit costs an fsync (SQLite ``synchronous=FULL``, PostgreSQL's WAL
flush), which caps one-at-a-time commits at a few hundred per second. A single
writer thread takes every request waiting in its queue, turns them into rows
in one call (``prepare``: the service evaluates the policies of all waiting
requests together there, off the event loop), writes them in one transaction,
and only then answers each one: nothing is acknowledged before its commit, and
throughput grows with concurrency. A request whose experiment state changed
since it was planned is answered with :class:`~pexkit.store.db.StaleStateError`
(the caller plans again); a request that fails on its own does not fail the
others in its batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from pexkit.store.db import EventStore, StaleStateError

__all__ = ["GroupCommitter"]

_Result = dict[str, dict[str, Any]]
_Rows = list[dict[str, Any]]
_Item = tuple[Any, str, int, "Future[_Result]", int]
Prepare = Callable[[Sequence[Any]], list["_Rows | BaseException"]]


def _identity(payloads: Sequence[Any]) -> list[_Rows | BaseException]:
    return [list(p) for p in payloads]


class GroupCommitter:
    """One writer thread that prepares and commits waiting decision requests together.

    Parameters
    ----------
    store : EventStore
    prepare : callable, optional
        ``payloads -> [rows or exception]``, called once per batch in the writer
        thread; by default a payload is its list of assignment rows.
    max_rows : int
        Requests are added to a batch until it holds this many payload items.
    """

    def __init__(
        self, store: EventStore, prepare: Prepare | None = None, max_rows: int = 4096
    ) -> None:
        self.store = store
        self.prepare = prepare or _identity
        self.max_rows = max_rows
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pexkit-commit", daemon=True)
        self._thread.start()

    def submit(self, payload: Any, experiment: str, version: int, size: int = 1) -> Future[_Result]:
        """Queue one request; the future resolves with its stored rows after the commit."""
        fut: Future[_Result] = Future()
        self._queue.put((payload, experiment, version, fut, size))
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
            n_rows = item[4]
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
                n_rows += nxt[4]
            self._prepare_and_commit(batch)
            if stop:
                return

    def _prepare_and_commit(self, batch: list[_Item]) -> None:
        try:
            prepared = self.prepare([item[0] for item in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for item in batch:
                item[3].set_exception(exc)
            return
        ready = []
        for item, rows in zip(batch, prepared, strict=True):
            if isinstance(rows, BaseException):
                item[3].set_exception(rows)
            else:
                ready.append((rows, item[1], item[2], item[3]))
        self._commit(ready)

    def _commit(self, batch: list[tuple[_Rows, str, int, Future[_Result]]]) -> None:
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
