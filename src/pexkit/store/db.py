"""EventStore: experiments, policies, assignments and outcomes in SQL.

SQLite (WAL, ``synchronous=FULL``) is the embedded default; PostgreSQL is the
production store. Every write commits before the call returns, so whatever the
service acknowledged survives a ``kill -9`` of the server. Writes that may race
(two workers deciding for the same unit, a client retrying an event) are
``INSERT ... ON CONFLICT DO NOTHING`` followed by a read, so the first write
wins everywhere and nobody waits on a lock upgrade.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pexkit.exceptions import InvalidParameterError
from pexkit.store import schema as t

__all__ = ["EventStore", "GroupCommitter", "hash_key", "normalize_url"]

SCOPES = ("admin", "decide", "log", "read")


def now() -> datetime:
    return datetime.now(UTC)


def hash_key(key: str) -> str:
    """SHA-256 of an API key; only hashes are stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and plain paths; pick the psycopg 3 driver.

    Examples
    --------
    >>> normalize_url("postgresql://u@127.0.0.1:5432/db")
    'postgresql+psycopg://u@127.0.0.1:5432/db'
    >>> normalize_url("events.db")
    'sqlite:///events.db'
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


class EventStore:
    """Thin, typed access to the event store.

    Parameters
    ----------
    url : str
        ``sqlite:///path.db`` (default form; a bare path works too) or
        ``postgresql://user@host:port/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect not in ("sqlite", "postgresql"):
            raise InvalidParameterError(
                f"database URL {url!r}: expected sqlite:///PATH or postgresql://...; "
                f"got the scheme {self.dialect!r}."
            )
        if self.dialect == "sqlite":
            self.engine: Engine = sa.create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=8,
                max_overflow=8,
            )

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        else:
            self.engine = sa.create_engine(self.url, pool_size=10, max_overflow=20)
        try:
            t.metadata.create_all(self.engine)
        except sa.exc.OperationalError as exc:
            raise InvalidParameterError(
                f"database URL {url!r}: cannot connect or create the tables "
                f"({str(exc.orig).strip().splitlines()[0] if exc.orig else exc}). Check that the "
                "server is running and the database exists (createdb NAME), or use "
                "sqlite:///PATH."
            ) from exc

    # ------------------------------------------------------------ helpers
    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ keys
    def add_key(self, scopes: Sequence[str], label: str = "", key: str | None = None) -> str:
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise InvalidParameterError(
                f"scopes {list(scopes)}: expected a non-empty subset of {list(SCOPES)}."
            )
        key = key or "pk_" + secrets.token_urlsafe(24)
        stmt = self._insert(t.api_keys).values(
            key_hash=hash_key(key), scopes=",".join(sorted(set(scopes))), label=label,
            created_at=now(),
        ).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            conn.execute(stmt)
        return key

    def key_scopes(self, key: str) -> set[str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.api_keys.c.scopes).where(t.api_keys.c.key_hash == hash_key(key))
            ).first()
        return None if row is None else set(row[0].split(","))

    # ------------------------------------------------------------ experiments
    def create_experiment(self, row: dict[str, Any]) -> bool:
        """Insert; False when the name exists."""
        stmt = (
            self._insert(t.experiments).values(**row).on_conflict_do_nothing()
            .returning(t.experiments.c.name)
        )
        with self.engine.begin() as conn:
            created = conn.execute(stmt).first() is not None
            if created:
                conn.execute(
                    t.policies.insert().values(
                        experiment=row["name"], version=1, kind="uniform", params={},
                        model_id=None, label="uniform random", created_at=now(),
                    )
                )
        return created

    def experiment(self, name: str, with_state: bool = True) -> dict[str, Any] | None:
        """One experiment's row; ``with_state=False`` skips the state JSON (front, Ax
        state), which the decide and log paths never need."""
        cols = t.experiments.c if with_state else [
            c for c in t.experiments.c if c.name != "state"
        ]
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(*cols).where(t.experiments.c.name == name)
            ).mappings().first()
        return None if row is None else dict(row)

    def experiments(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.experiments).order_by(t.experiments.c.created_at))
            return [dict(r) for r in rows.mappings()]

    def update_experiment(self, name: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.experiments.update().where(t.experiments.c.name == name).values(**values))

    # ------------------------------------------------------------ policies / models
    def add_policy(
        self, experiment: str, kind: str, params: dict[str, Any], model_id: int | None, label: str
    ) -> int:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":  # serialize version numbers per experiment
                conn.execute(
                    sa.select(t.experiments.c.name)
                    .where(t.experiments.c.name == experiment)
                    .with_for_update()
                )
            version = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(t.policies.c.version), 0)).where(
                    t.policies.c.experiment == experiment
                )
            ).scalar_one() + 1
            conn.execute(
                t.policies.insert().values(
                    experiment=experiment, version=version, kind=kind, params=params,
                    model_id=model_id, label=label, created_at=now(),
                )
            )
        return int(version)

    def policy(self, experiment: str, version: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.policies).where(
                    (t.policies.c.experiment == experiment) & (t.policies.c.version == version)
                )
            ).mappings().first()
        return None if row is None else dict(row)

    def policies(self, experiment: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.policies)
                .where(t.policies.c.experiment == experiment)
                .order_by(t.policies.c.version)
            )
            return [dict(r) for r in rows.mappings()]

    def add_model(self, experiment: str, blob: bytes, summary: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(
                t.models.insert()
                .values(experiment=experiment, blob=blob, summary=summary, created_at=now())
                .returning(t.models.c.id)
            )
            return int(res.scalar_one())

    def model_blob(self, model_id: int) -> bytes:
        with self.engine.connect() as conn:
            return bytes(
                conn.execute(sa.select(t.models.c.blob).where(t.models.c.id == model_id)).scalar_one()
            )

    # ------------------------------------------------------------ assignments
    def assign(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Insert first assignments (first write wins); return the stored ones by unit."""
        if not rows:
            return {}
        experiment, epoch = rows[0]["experiment"], rows[0]["epoch"]
        stamp = now()
        for r in rows:
            r.setdefault("created_at", stamp)
        units = [r["unit"] for r in rows]
        with self.engine.begin() as conn:
            conn.execute(self._insert(t.assignments).on_conflict_do_nothing(), rows)
            stored = conn.execute(
                sa.select(t.assignments).where(
                    (t.assignments.c.experiment == experiment)
                    & (t.assignments.c.epoch == epoch)
                    & (t.assignments.c.unit.in_(units))
                )
            ).mappings()
            return {r["unit"]: dict(r) for r in stored}

    def assign_groups(self, groups: list[list[dict[str, Any]]]) -> list[dict[str, dict[str, Any]]]:
        """:meth:`assign` for several requests in one transaction (one commit, one fsync)."""
        stamp = now()
        rows = [r for g in groups for r in g]
        for r in rows:
            r.setdefault("created_at", stamp)
        keys: dict[tuple[str, int], set[str]] = {}
        for r in rows:
            keys.setdefault((r["experiment"], r["epoch"]), set()).add(r["unit"])
        found: dict[tuple[str, int, str], dict[str, Any]] = {}
        with self.engine.begin() as conn:
            if rows:
                conn.execute(self._insert(t.assignments).on_conflict_do_nothing(), rows)
            for (experiment, epoch), units in keys.items():
                stored = conn.execute(
                    sa.select(t.assignments).where(
                        (t.assignments.c.experiment == experiment)
                        & (t.assignments.c.epoch == epoch)
                        & (t.assignments.c.unit.in_(list(units)))
                    )
                ).mappings()
                for m in stored:
                    found[(experiment, epoch, m["unit"])] = dict(m)
        return [
            {r["unit"]: found[(r["experiment"], r["epoch"], r["unit"])] for r in g} for g in groups
        ]

    def latest_epochs(self, experiment: str, units: Iterable[str]) -> dict[str, int]:
        units = list(set(units))
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(units), 5000):
                chunk = units[start : start + 5000]
                rows = conn.execute(
                    sa.select(t.assignments.c.unit, sa.func.max(t.assignments.c.epoch))
                    .where(
                        (t.assignments.c.experiment == experiment)
                        & (t.assignments.c.unit.in_(chunk))
                    )
                    .group_by(t.assignments.c.unit)
                )
                out.update({u: int(e) for u, e in rows})
        return out

    def assignments(self, experiment: str, **where: Any) -> list[dict[str, Any]]:
        q = sa.select(t.assignments).where(t.assignments.c.experiment == experiment)
        for col, val in where.items():
            c = t.assignments.c[col]
            q = q.where(c.in_(val) if isinstance(val, list | tuple | set) else c == val)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def count_assignments(self, experiment: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.assignments.c.phase, sa.func.count())
                .where(t.assignments.c.experiment == experiment)
                .group_by(t.assignments.c.phase)
            )
            return {p: int(c) for p, c in rows}

    # ------------------------------------------------------------ outcomes
    def log_events(
        self, experiment: str, events: list[dict[str, Any]], seen_twice: int = 0
    ) -> tuple[int, int]:
        """Insert outcome events idempotently; return (accepted, duplicates).

        ``seen_twice`` counts duplicates the caller already dropped from the batch.
        """
        stamp = now()
        rows = [{**e, "experiment": experiment, "created_at": stamp} for e in events]
        with self.engine.begin() as conn:
            accepted = 0
            if rows:
                res = conn.execute(
                    self._insert(t.outcomes)
                    .on_conflict_do_nothing()
                    .returning(t.outcomes.c.event_id),
                    rows,
                )
                accepted = len(res.all())
            dup = len(rows) - accepted + seen_twice
            if dup:
                conn.execute(
                    t.experiments.update()
                    .where(t.experiments.c.name == experiment)
                    .values(duplicates=t.experiments.c.duplicates + dup)
                )
        return accepted, dup

    def outcome_totals(self, experiment: str, epochs: Sequence[int] | None = None) -> list[Any]:
        """Per (epoch, unit, outcome): the sum of logged values."""
        q = (
            sa.select(
                t.outcomes.c.epoch, t.outcomes.c.unit, t.outcomes.c.outcome,
                sa.func.sum(t.outcomes.c.value),
            )
            .where(t.outcomes.c.experiment == experiment)
            .group_by(t.outcomes.c.epoch, t.outcomes.c.unit, t.outcomes.c.outcome)
        )
        if epochs is not None:
            q = q.where(t.outcomes.c.epoch.in_(list(epochs)))
        with self.engine.connect() as conn:
            return list(conn.execute(q).all())

    def count_events(self, experiment: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(t.outcomes.c.experiment == experiment)
                ).scalar_one()
            )

    def event_ids(self, experiment: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.outcomes.c.event_id).where(t.outcomes.c.experiment == experiment)
            )
            return {r[0] for r in rows}

    # ------------------------------------------------------------ jobs
    def add_job(
        self, experiment: str, kind: str, params: dict[str, Any], owner: str | None = None
    ) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(
                t.jobs.insert()
                .values(
                    experiment=experiment, kind=kind, params=params, status="queued",
                    owner=owner, created_at=now(),
                )
                .returning(t.jobs.c.id)
            )
            return int(res.scalar_one())

    def update_job(self, job_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.jobs.update().where(t.jobs.c.id == job_id).values(**values))

    def unfinished_jobs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.jobs).where(t.jobs.c.status.in_(["queued", "running"]))
            )
            return [dict(r) for r in rows.mappings()]

    def job(self, job_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).mappings().first()
        return None if row is None else dict(row)

    def jobs(self, experiment: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.jobs).where(t.jobs.c.experiment == experiment).order_by(t.jobs.c.id)
            )
            return [dict(r) for r in rows.mappings()]

    # ------------------------------------------------------------ tuning arms
    def add_arms(self, experiment: str, epoch: int, arms: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.arm_history.insert(),
                [{"experiment": experiment, "epoch": epoch, **a} for a in arms],
            )

    def set_arm_metrics(self, experiment: str, epoch: int, arm: str, metrics: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.arm_history.update()
                .where(
                    (t.arm_history.c.experiment == experiment)
                    & (t.arm_history.c.epoch == epoch)
                    & (t.arm_history.c.arm == arm)
                )
                .values(metrics=metrics)
            )

    def arm_history(self, experiment: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.arm_history)
                .where(t.arm_history.c.experiment == experiment)
                .order_by(t.arm_history.c.epoch, t.arm_history.c.arm)
            )
            return [dict(r) for r in rows.mappings()]


class GroupCommitter:
    """Group commit for decisions: concurrent requests share one transaction.

    Each commit costs an fsync (SQLite ``synchronous=FULL``, PostgreSQL's WAL
    flush), which caps one-at-a-time commits at a few hundred per second. A
    single writer thread takes every request waiting in its queue, writes them
    in one transaction, and only then answers each one: the durability promise
    is unchanged (nothing is acknowledged before its commit) and throughput
    grows with concurrency.
    """

    def __init__(self, store: EventStore, max_batch: int = 512) -> None:
        import queue

        self.store = store
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pexkit-commit", daemon=True)
        self._thread.start()

    def assign(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        fut: Future[dict[str, dict[str, Any]]] = Future()
        self._queue.put((rows, fut))
        return fut.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import queue

        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            n_rows = len(item[0])
            while n_rows < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
                n_rows += len(nxt[0])
            try:
                results = self.store.assign_groups([rows for rows, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            for (_, fut), res in zip(batch, results, strict=True):
                fut.set_result(res)
