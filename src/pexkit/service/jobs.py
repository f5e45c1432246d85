"""Background jobs: a bounded queue per server, heartbeats, and orphans failed.

Each server runs its jobs on ``job_workers`` threads. At most
``PEXKIT_MAX_QUEUED_JOBS`` may wait; one more is refused (429) rather than
queued without bound. A heartbeat thread marks this server's unfinished jobs
alive every few seconds; any server fails the unfinished jobs of a peer whose
heartbeat stopped (killed, or cut off from the store), and, on start, the jobs
of a dead process on its own host. On shutdown, queued jobs that never started
are failed with a clear message instead of delaying the exit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from pexkit.exceptions import PexkitError
from pexkit.service.errors import NotFoundError, TooManyRequestsError
from pexkit.service.validation import LIMITS
from pexkit.store.db import EventStore, now

__all__ = ["JobRunner"]

HEARTBEAT_S = float(os.environ.get("PEXKIT_JOB_HEARTBEAT_S", "5"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """Runs job bodies in threads and keeps their status in the store."""

    def __init__(self, store: EventStore, job_workers: int = 1) -> None:
        self.store = store
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._pool = ThreadPoolExecutor(max_workers=job_workers, thread_name_prefix="pexkit-job")
        self._pending: dict[int, Future[None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fail_dead_local_jobs()
        self._beat = threading.Thread(target=self._heartbeat, name="pexkit-heartbeat",
                                      daemon=True)
        self._beat.start()

    def _fail_dead_local_jobs(self) -> None:
        host = socket.gethostname()
        for job in self.store.unfinished_jobs():
            owner = job.get("owner") or ""
            owner_host, _, pid = owner.rpartition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
            self.store.update_job(
                int(job["id"]), status="failed", finished_at=now(),
                error=f"the server process that ran this job ({owner}) ended before it "
                "finished; submit the job again.",
            )

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.store.heartbeat(self.owner)
                self.store.fail_silent_jobs(timedelta(seconds=4 * HEARTBEAT_S), self.owner)
            except Exception:  # noqa: BLE001, S112 - the store may be briefly away; retry
                continue

    def submit(self, experiment: str, kind: str, params: dict[str, Any],
               body: Callable[[], dict[str, Any]]) -> int:
        with self._lock:
            waiting = sum(1 for f in self._pending.values() if not f.running())
            if waiting >= LIMITS.max_queued_jobs:
                raise TooManyRequestsError(
                    f"this server already has {waiting} queued jobs (limit "
                    f"{LIMITS.max_queued_jobs}); wait for them (GET /v1/experiments/"
                    f"{experiment}/jobs) and submit again."
                )
            job_id = self.store.add_job(experiment, kind, params, owner=self.owner)
            fut = self._pool.submit(self._run, job_id, body)
            self._pending[job_id] = fut
        fut.add_done_callback(lambda _f: self._forget(job_id))
        return job_id

    def _forget(self, job_id: int) -> None:
        with self._lock:
            self._pending.pop(job_id, None)

    def _run(self, job_id: int, body: Callable[[], dict[str, Any]]) -> None:
        if self._stop.is_set():  # picked up while the server stops: do not start it
            self._fail_unstarted(job_id)
            return
        self.store.update_job(job_id, status="running", heartbeat_at=now())
        try:
            result = body()
        except Exception as exc:  # noqa: BLE001 - reported through the job's status
            msg = str(exc) if isinstance(exc, PexkitError) else traceback.format_exc(limit=5)
            self.store.update_job(job_id, status="failed", error=msg, finished_at=now())
            return
        self.store.update_job(job_id, status="succeeded", result=result, finished_at=now())

    def job(self, job_id: int) -> dict[str, Any]:
        row = self.store.job(job_id) if 0 < job_id < 2**31 else None  # an INTEGER column
        if row is None:
            raise NotFoundError(f"job {job_id} not found.")
        for key in ("created_at", "finished_at", "heartbeat_at"):
            row[key] = row[key].isoformat() if row[key] else None
        return row

    def close(self) -> None:
        """Stop: fail queued jobs that never started; wait for the running ones."""
        self._stop.set()
        with self._lock:
            pending = list(self._pending.items())
        # outside the lock: cancel() runs the done callback (_forget), which takes it
        for jid, fut in pending:
            if fut.cancel():
                self._fail_unstarted(jid)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _fail_unstarted(self, job_id: int) -> None:
        with contextlib.suppress(Exception):  # a store gone: peers fail it by its heartbeat
            self.store.update_job(
                job_id, status="failed", finished_at=now(),
                error="the server stopped before this job started; submit it again.",
            )
