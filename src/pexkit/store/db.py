"""EventStore: experiments, keys, policies, blobs, assignments, outcomes and jobs in SQL.

SQLite (WAL, ``synchronous=FULL``) is the embedded default; PostgreSQL is the
production store. Every write commits before the call returns, so whatever the
service acknowledged survives a ``kill -9`` of the server. Writes that may race
(two workers deciding for the same unit, a client retrying an event) are
``INSERT ... ON CONFLICT DO NOTHING`` followed by a read, so the first write
wins everywhere. An experiment's state is changed only by compare-and-swap on
its ``version`` (:meth:`EventStore.swap_state`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pexkit.exceptions import InvalidParameterError, PexkitError
from pexkit.store import schema as t

__all__ = [
    "EventStore",
    "KeyInfo",
    "StaleStateError",
    "StoreUnavailableError",
    "hash_key",
    "normalize_url",
    "now",
]

SCOPES = ("admin", "decide", "log", "read")
_CHUNK = 500  # units per IN (...) list: far below SQLite's variable limit


class StoreUnavailableError(PexkitError):
    """The store cannot be reached, or its file disappeared: writes would be lost."""


class StaleStateError(PexkitError):
    """Decisions were computed from an experiment state that changed before commit."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(f"experiment state changed under the request: {sorted(names)}")
        self.names = names


@dataclass(frozen=True)
class KeyInfo:
    """What an API key may do: scopes, and the experiments it is limited to (None: all)."""

    id: int
    scopes: frozenset[str]
    experiments: frozenset[str] | None
    label: str


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


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EventStore:
    """Thin, typed access to the event store.

    Parameters
    ----------
    url : str
        ``sqlite:///path.db`` (default form; a bare path works too) or
        ``postgresql://user@host:port/db``.
    """

    def __init__(self, url: str, background_checkpoint: bool = False) -> None:
        self.url = normalize_url(url)
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        self._file: str | None = None
        self._identity: tuple[int, int] | None = None
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
                if background_checkpoint:  # no checkpoint stalls inside a decision's commit
                    cur.execute("PRAGMA wal_autocheckpoint=0")
                cur.close()

            database = self.engine.url.database
            if database and database != ":memory:":
                self._file = os.path.abspath(database)

            @sa.event.listens_for(self.engine, "commit")
            def _file_still_there(_conn: Any) -> None:
                # a deleted or replaced file swallows writes: refuse to commit them
                if self._identity is not None:
                    self.check_alive()
        else:
            self.engine = sa.create_engine(self.url, pool_size=10, max_overflow=20)
        try:
            self._migrate()
        except sa.exc.OperationalError as exc:
            raise InvalidParameterError(
                f"database URL {url!r}: cannot connect or create the tables "
                f"({str(exc.orig).strip().splitlines()[0] if exc.orig else exc}). Check that the "
                "server is running and the database exists (createdb NAME), or use "
                "sqlite:///PATH."
            ) from exc
        if self._file is not None:
            st = os.stat(self._file)
            self._identity = (st.st_dev, st.st_ino)
            if background_checkpoint:
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="pexkit-checkpoint", daemon=True
                )
                self._checkpointer.start()

    def _checkpoint_loop(self, every_s: float = 1.0) -> None:
        """Copy the WAL into the database file in the background (PASSIVE: writers go on)."""
        while not self._closing.wait(every_s):
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # noqa: BLE001, S112 - a busy or vanished store: try again later
                continue

    def _migrate(self) -> None:
        inspector = sa.inspect(self.engine)
        tables = set(inspector.get_table_names())
        if "experiments" in tables and "pexkit_meta" not in tables:
            raise InvalidParameterError(
                f"database {self.url!r}: it holds tables of an older pexkit event store (schema "
                f"1); this pexkit reads schema {t.SCHEMA_VERSION}. Point --db at a new database "
                "(the old one stays readable by the pexkit that wrote it)."
            )
        t.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(t.meta).values(key="schema", value=str(t.SCHEMA_VERSION))
                .on_conflict_do_nothing()
            )
            found = conn.execute(
                sa.select(t.meta.c.value).where(t.meta.c.key == "schema")
            ).scalar_one()
        if found != str(t.SCHEMA_VERSION):
            raise InvalidParameterError(
                f"database {self.url!r}: event store schema {found}; this pexkit reads schema "
                f"{t.SCHEMA_VERSION}. Upgrade pexkit, or use a new database."
            )
        self._add_columns()

    def _add_columns(self) -> None:
        """Add the nullable columns schema 2 gained later (``outcomes.occurred_at``).

        Older pexkit versions go on reading and writing a store with them (they
        leave them null). Several servers starting at once may race: a column a
        peer added meanwhile is fine.
        """
        for column in (t.outcomes.c.occurred_at,):
            table = column.table.name  # type: ignore[attr-defined]

            def present(name: str = table, col: str = column.name) -> bool:
                return col in {c["name"] for c in sa.inspect(self.engine).get_columns(name)}

            if present():
                continue
            kind = column.type.compile(dialect=self.engine.dialect)
            guard = " IF NOT EXISTS" if self.dialect == "postgresql" else ""
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(
                        f"ALTER TABLE {table} ADD COLUMN{guard} {column.name} {kind}"
                    )
            except sa.exc.DBAPIError as exc:
                if not present():
                    raise InvalidParameterError(
                        f"database {self.url!r}: cannot add the column {table}.{column.name} "
                        f"that this pexkit needs ({str(exc.orig).strip().splitlines()[0]}). Run "
                        f"'ALTER TABLE {table} ADD COLUMN {column.name} {kind}' as the tables' "
                        "owner, or use a new database."
                    ) from exc

    # ------------------------------------------------------------ helpers
    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def close(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
        self.engine.dispose()

    def check_alive(self) -> None:
        """Raise :class:`StoreUnavailableError` when the store is gone or unreachable.

        For SQLite, the database file must still be the one opened at start (a
        deleted or replaced file would silently swallow every later write).
        """
        if self._file is not None:
            try:
                st = os.stat(self._file)
            except OSError:
                raise StoreUnavailableError(
                    f"the SQLite store {self._file} no longer exists; writes would be lost. "
                    "Restore the file and restart the server."
                ) from None
            if (st.st_dev, st.st_ino) != self._identity:
                raise StoreUnavailableError(
                    f"the SQLite store {self._file} was replaced while the server ran; writes "
                    "would go to the old file. Restart the server."
                )
            return
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailableError(f"the store is unreachable: {exc.__class__.__name__}") from exc

    # ------------------------------------------------------------ keys
    def add_key(
        self, scopes: Sequence[str], label: str = "", key: str | None = None,
        experiments: Sequence[str] | None = None,
    ) -> tuple[int, str]:
        """Register a key (only its hash is kept); return ``(id, key)``."""
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise InvalidParameterError(
                f"scopes {list(scopes)}: expected a non-empty subset of {list(SCOPES)}."
            )
        given = key is not None
        key = key or "pk_" + secrets.token_urlsafe(24)
        values = {"scopes": ",".join(sorted(set(scopes))), "label": label,
                  "experiments": None if experiments is None else sorted(set(experiments))}
        stmt = self._insert(t.api_keys).values(
            key_hash=hash_key(key), **values, created_at=now(), revoked_at=None,
        ).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            conn.execute(stmt)
            if given:  # a key chosen by the operator (PEXKIT_ADMIN_KEY) is live again as given
                conn.execute(t.api_keys.update()
                             .where(t.api_keys.c.key_hash == hash_key(key))
                             .values(**values, revoked_at=None))
            kid = conn.execute(
                sa.select(t.api_keys.c.id).where(t.api_keys.c.key_hash == hash_key(key))
            ).scalar_one()
        return int(kid), key

    def key_info(self, key: str) -> KeyInfo | None:
        """The key's rights, or None when it is unknown or revoked."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.api_keys).where(
                    (t.api_keys.c.key_hash == hash_key(key)) & t.api_keys.c.revoked_at.is_(None)
                )
            ).mappings().first()
        if row is None:
            return None
        exps = row["experiments"]
        return KeyInfo(int(row["id"]), frozenset(row["scopes"].split(",")),
                       None if exps is None else frozenset(exps), str(row["label"]))

    def key_scopes(self, key: str) -> set[str] | None:
        """Scopes of a live key (any experiment), or None."""
        info = self.key_info(key)
        return None if info is None else set(info.scopes)

    def api_keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.api_keys.c.id, t.api_keys.c.scopes, t.api_keys.c.experiments,
                          t.api_keys.c.label, t.api_keys.c.created_at, t.api_keys.c.revoked_at)
                .order_by(t.api_keys.c.id)
            ).mappings()
            return [dict(r) for r in rows]

    def revoke_key(self, key_id: int) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                t.api_keys.update()
                .where((t.api_keys.c.id == key_id) & t.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        return bool(res.rowcount)

    def revoke_other_keys(self, label: str, keep: str) -> int:
        """Revoke every live key labelled ``label`` except ``keep`` (a key, not a hash)."""
        with self.engine.begin() as conn:
            res = conn.execute(
                t.api_keys.update()
                .where((t.api_keys.c.label == label) & (t.api_keys.c.key_hash != hash_key(keep))
                       & t.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        return int(res.rowcount)

    # ------------------------------------------------------------ experiments
    def create_experiment(self, row: dict[str, Any]) -> bool:
        """Insert (with policy version 1, uniform random); False when the name exists.

        The state version starts at a random number, not 1: a name deleted and
        created again must not reuse the versions of its earlier incarnation, or a
        peer server holding that incarnation in its cache (checked by version only)
        would go on serving its spec, arms and salt.
        """
        row = {**row, "version": 1 + secrets.randbelow(2**30)}
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

    def experiment(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.experiments).where(t.experiments.c.name == name)
            ).mappings().first()
        return None if row is None else dict(row)

    def experiment_version(self, name: str) -> int | None:
        with self.engine.connect() as conn:
            v = conn.execute(
                sa.select(t.experiments.c.version).where(t.experiments.c.name == name)
            ).scalar()
        return None if v is None else int(v)

    def experiments(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.experiments).order_by(t.experiments.c.created_at))
            return [dict(r) for r in rows.mappings()]

    def experiment_names(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.experiments.c.name).order_by(t.experiments.c.created_at)
            )
            return [r[0] for r in rows]

    def swap_state(self, name: str, expected_version: int, state: dict[str, Any]) -> bool:
        """Compare-and-swap: write ``state`` only if the version is still ``expected_version``."""
        with self.engine.begin() as conn:
            res = conn.execute(
                t.experiments.update()
                .where((t.experiments.c.name == name)
                       & (t.experiments.c.version == expected_version))
                .values(state=state, version=expected_version + 1)
            )
        return res.rowcount == 1

    def delete_experiment(self, name: str) -> bool:
        """Delete an experiment and everything logged for it."""
        with self.engine.begin() as conn:
            for table in (t.assignments, t.outcomes, t.arm_history, t.jobs, t.policies, t.models):
                conn.execute(table.delete().where(table.c.experiment == name))
            res = conn.execute(t.experiments.delete().where(t.experiments.c.name == name))
        return bool(res.rowcount)

    # ------------------------------------------------------------ policies / blobs
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

    def add_blob(self, experiment: str, kind: str, blob: bytes, summary: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(
                t.models.insert()
                .values(experiment=experiment, kind=kind, blob=blob, summary=summary,
                        created_at=now())
                .returning(t.models.c.id)
            )
            return int(res.scalar_one())

    def blob(self, blob_id: int) -> tuple[str, bytes]:
        """``(kind, bytes)`` of a stored blob."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.models.c.kind, t.models.c.blob).where(t.models.c.id == blob_id)
            ).first()
        if row is None:
            raise InvalidParameterError(f"blob {blob_id}: not found in the store.")
        return str(row[0]), bytes(row[1])

    def add_model(
        self, experiment: str, blob: bytes, summary: dict[str, Any], kind: str = "effect-model"
    ) -> int:
        return self.add_blob(experiment, kind, blob, summary)

    def model_blob(self, model_id: int) -> bytes:
        return self.blob(model_id)[1]

    # ------------------------------------------------------------ assignments
    def commit_decisions(
        self, groups: list[list[dict[str, Any]]], versions: dict[str, int]
    ) -> list[dict[str, dict[str, Any]]]:
        """Insert first assignments of several requests in one transaction (one fsync).

        ``versions`` maps each experiment to the state version the decisions were
        computed from; if any changed before the commit, nothing is written and
        :class:`StaleStateError` names the experiments (the caller recomputes).
        Returns, per group, the stored assignment of each unit (first write wins).

        This is the hot path of every decision: one ``executemany`` through the
        driver (no per-row ORM work); only units that were already assigned
        (a conflict) are read back.
        """
        rows = [r for g in groups for r in g]
        ac = t.assignments.c
        found: dict[tuple[str, int, str], dict[str, Any]] = {}
        with self.engine.begin() as conn:
            inserted_all = True
            if rows:
                params = self._assignment_params(rows)
                res = conn.exec_driver_sql(self._insert_assignment_sql, params)
                inserted_all = res.rowcount == len(rows)
            self._check_versions(conn, versions)
            if inserted_all:
                for r in rows:
                    found[(r["experiment"], int(r["epoch"]), r["unit"])] = r
            else:  # some units were assigned before (or twice in this batch): read back
                keys: dict[tuple[str, int], set[str]] = {}
                for r in rows:
                    keys.setdefault((r["experiment"], int(r["epoch"])), set()).add(r["unit"])
                for (experiment, epoch), units in keys.items():
                    for chunk in _chunks(sorted(units)):
                        stored = conn.execute(
                            sa.select(t.assignments).where(
                                (ac.experiment == experiment) & (ac.epoch == epoch)
                                & ac.unit.in_(chunk)
                            )
                        ).mappings()
                        for m in stored:
                            found[(experiment, epoch, m["unit"])] = dict(m)
        self.check_alive()
        return [
            {r["unit"]: found[(r["experiment"], int(r["epoch"]), r["unit"])] for r in g}
            for g in groups
        ]

    @property
    def _insert_assignment_sql(self) -> str:
        cols = ("experiment, epoch, unit, phase, treatment, propensity, policy_version, arm, "
                "holdout, features, created_at")
        if self.dialect == "postgresql":
            values = "%s, %s, %s, %s, %s, %s, %s, %s, %s, CAST(%s AS JSON), %s"
        else:
            values = ", ".join(["?"] * 11)
        return (f"INSERT INTO assignments ({cols}) VALUES ({values}) "  # noqa: S608 - constants
                "ON CONFLICT DO NOTHING")

    def _assignment_params(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        import orjson

        stamp: Any = now()
        if self.dialect == "sqlite":  # the text sqlite3 writes for a datetime, once per batch
            stamp = stamp.isoformat(sep=" ")
        return [
            (r["experiment"], int(r["epoch"]), r["unit"], r["phase"], int(r["treatment"]),
             float(r["propensity"]), int(r["policy_version"]), r["arm"], bool(r["holdout"]),
             orjson.dumps(r["features"]).decode(), stamp)
            for r in rows
        ]

    def _check_versions(self, conn: Connection, versions: dict[str, int]) -> None:
        if not versions:
            return
        names = list(versions)
        if self.dialect == "postgresql":  # a concurrent state change waits for this commit
            marks = ", ".join(["%s"] * len(names))
            sql = f"SELECT name, version FROM experiments WHERE name IN ({marks}) FOR SHARE"
        else:
            marks = ", ".join(["?"] * len(names))
            sql = f"SELECT name, version FROM experiments WHERE name IN ({marks})"
        current = {n: int(v) for n, v in conn.exec_driver_sql(sql, tuple(names)).all()}
        stale = {n for n, v in versions.items() if current.get(n) != v}
        if stale:
            raise StaleStateError(stale)

    def latest_epochs(self, experiment: str, units: Iterable[str]) -> dict[str, int]:
        ulist = sorted(set(units))
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ulist):
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
        rows = [{"occurred_at": None, **e, "experiment": experiment, "created_at": stamp}
                for e in events]
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
        self.check_alive()
        return accepted, dup

    def _outcome_filter(
        self, q: Any, experiment: str, epochs: Sequence[int] | None,
        outcomes: Sequence[str] | None, timed: bool | None,
    ) -> Any:
        oc = t.outcomes.c
        q = q.where(oc.experiment == experiment)
        if epochs is not None:
            q = q.where(oc.epoch.in_(list(epochs)))
        if outcomes is not None:
            q = q.where(oc.outcome.in_(list(outcomes)))
        if timed is not None:
            q = q.where(oc.occurred_at.is_not(None) if timed else oc.occurred_at.is_(None))
        return q

    def outcome_totals(
        self, experiment: str, epochs: Sequence[int] | None = None,
        outcomes: Sequence[str] | None = None, timed: bool | None = None,
    ) -> list[Any]:
        """Per (epoch, unit, outcome): the sum of logged values.

        ``outcomes``: only these; ``timed``: only events logged with (True) or
        without (False) an event time; None: all.
        """
        oc = t.outcomes.c
        q = sa.select(oc.epoch, oc.unit, oc.outcome, sa.func.sum(oc.value)).group_by(
            oc.epoch, oc.unit, oc.outcome
        )
        q = self._outcome_filter(q, experiment, epochs, outcomes, timed)
        with self.engine.connect() as conn:
            return list(conn.execute(q).all())

    def outcome_events(
        self, experiment: str, epochs: Sequence[int] | None = None,
        outcomes: Sequence[str] | None = None, timed: bool | None = None,
    ) -> list[Any]:
        """Every event: ``(epoch, unit, outcome, value, time, timed, event_id)``.

        ``time`` is the event time the client gave, else when it was received
        (``timed`` says which); filters as in :meth:`outcome_totals`.
        """
        oc = t.outcomes.c
        q = sa.select(
            oc.epoch, oc.unit, oc.outcome, oc.value,
            sa.func.coalesce(oc.occurred_at, oc.created_at).label("time"),
            oc.occurred_at.is_not(None).label("timed"), oc.event_id,
        )
        q = self._outcome_filter(q, experiment, epochs, outcomes, timed)
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q)]

    def exposures(self, experiment: str, units: Iterable[str]) -> dict[str, list[Any]]:
        """Per unit: ``(epoch, first exposure time)`` of each of its epochs, oldest first."""
        ac = t.assignments.c
        out: dict[str, list[Any]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(units))):
                rows = conn.execute(
                    sa.select(ac.unit, ac.epoch, ac.created_at)
                    .where((ac.experiment == experiment) & ac.unit.in_(chunk))
                    .order_by(ac.unit, ac.epoch)
                )
                for unit, epoch, at in rows:
                    out.setdefault(unit, []).append((int(epoch), at))
        return out

    def count_events(self, experiment: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(t.outcomes.c.experiment == experiment)
                ).scalar_one()
            )

    def event_arrivals(self, experiment: str, epoch: int) -> list[Any]:
        """``(unit, received at)`` of every outcome event of ``epoch`` (for monitoring)."""
        oc = t.outcomes.c
        q = sa.select(oc.unit, oc.created_at).where(
            (oc.experiment == experiment) & (oc.epoch == epoch))
        with self.engine.connect() as conn:
            return list(conn.execute(q).all())

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
                    owner=owner, created_at=now(), heartbeat_at=now(),
                )
                .returning(t.jobs.c.id)
            )
            return int(res.scalar_one())

    def update_job(self, job_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.jobs.update().where(t.jobs.c.id == job_id).values(**values))

    def heartbeat(self, owner: str) -> None:
        """Mark every unfinished job of ``owner`` as still alive."""
        with self.engine.begin() as conn:
            conn.execute(
                t.jobs.update()
                .where((t.jobs.c.owner == owner) & t.jobs.c.status.in_(["queued", "running"]))
                .values(heartbeat_at=now())
            )

    def fail_silent_jobs(self, older_than: timedelta, exclude_owner: str) -> int:
        """Fail unfinished jobs of other servers whose heartbeat stopped ``older_than`` ago."""
        cutoff = now() - older_than
        with self.engine.begin() as conn:
            res = conn.execute(
                t.jobs.update()
                .where(t.jobs.c.status.in_(["queued", "running"])
                       & (t.jobs.c.owner != exclude_owner)
                       & (t.jobs.c.heartbeat_at < cutoff))
                .values(status="failed", finished_at=now(),
                        error="the server process that ran this job stopped sending heartbeats "
                        "(it was killed or lost the store) before the job finished; submit "
                        "the job again.")
            )
        return int(res.rowcount)

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
                self._insert(t.arm_history).on_conflict_do_nothing(),
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

    # ------------------------------------------------------------ sequential experiments
    def create_sequential(self, row: dict[str, Any]) -> bool:
        """Insert a sequential experiment and its version 1 (uniform random); False if it exists."""
        stmt = (
            self._insert(t.sequential_experiments).values(**row, live_version=1)
            .on_conflict_do_nothing().returning(t.sequential_experiments.c.name)
        )
        with self.engine.begin() as conn:
            created = conn.execute(stmt).first() is not None
            if created:
                conn.execute(t.sequential_agents.insert().values(
                    experiment=row["name"], version=1, kind="uniform", agent=None, epsilon=1.0,
                    summary={"label": "uniform random"}, created_at=row["created_at"],
                ))
        return created

    def sequential(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.sequential_experiments).where(t.sequential_experiments.c.name == name)
            ).mappings().first()
        return None if row is None else dict(row)

    def sequential_names(self) -> list[str]:
        se = t.sequential_experiments.c
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(se.name).order_by(se.created_at))]

    def sequential_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a sequential experiment, without the agents themselves."""
        sa_ = t.sequential_agents.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sa_.version, sa_.kind, sa_.epsilon, sa_.summary, sa_.created_at)
                .where(sa_.experiment == name).order_by(sa_.version)
            ).mappings()
            return [dict(r) for r in rows]

    def sequential_agent(self, name: str, version: int) -> dict[str, Any] | None:
        """One version with its agent (JSON; None for the uniform version)."""
        sa_ = t.sequential_agents.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.sequential_agents)
                .where((sa_.experiment == name) & (sa_.version == version))
            ).mappings().first()
        return None if row is None else dict(row)

    def launch_sequential(
        self, name: str, agent: dict[str, Any], epsilon: float, summary: dict[str, Any]
    ) -> int:
        """Store ``agent`` as the next version and make it live, atomically; returns the version."""
        se, sa_ = t.sequential_experiments.c, t.sequential_agents.c
        with self.engine.begin() as conn:
            lock = sa.select(se.name).where(se.name == name)
            if self.dialect == "postgresql":  # serialize version numbers per experiment
                lock = lock.with_for_update()
            conn.execute(lock)
            version = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(sa_.version), 0))
                .where(sa_.experiment == name)
            ).scalar_one() + 1
            conn.execute(t.sequential_agents.insert().values(
                experiment=name, version=version, kind="agent", agent=agent, epsilon=epsilon,
                summary=summary, created_at=now(),
            ))
            conn.execute(t.sequential_experiments.update().where(se.name == name)
                         .values(live_version=version))
        return int(version)

    def sequential_decisions(
        self, name: str, keys: Iterable[tuple[str, str]], conn: Connection | None = None
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The stored decisions at these (unit, time) keys (missing keys are left out)."""
        wanted = set(keys)
        dc = t.sequential_decisions.c
        out: dict[tuple[str, str], dict[str, Any]] = {}

        def read(c: Connection) -> None:
            for chunk in _chunks(sorted({u for u, _ in wanted})):
                rows = c.execute(
                    sa.select(t.sequential_decisions)
                    .where((dc.experiment == name) & dc.unit.in_(chunk))
                ).mappings()
                for m in rows:
                    if (m["unit"], m["time"]) in wanted:
                        out[(m["unit"], m["time"])] = dict(m)

        if conn is not None:
            read(conn)
        else:
            with self.engine.connect() as c:
                read(c)
        return out

    def commit_sequential_decisions(
        self, name: str, rows: list[dict[str, Any]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Insert decisions (first write of a (unit, time) wins); return the stored ones.

        Every row's (unit, time) maps to the decision in the store after the
        commit: the row itself when it was new, else the one stored before.
        """
        dc = t.sequential_decisions.c
        stamp = now()
        params = [{**r, "experiment": name, "done": False, "created_at": stamp} for r in rows]
        found: dict[tuple[str, str], dict[str, Any]] = {}
        with self.engine.begin() as conn:
            inserted: set[tuple[str, str]] = set()
            if params:
                res = conn.execute(
                    self._insert(t.sequential_decisions).on_conflict_do_nothing()
                    .returning(dc.unit, dc.time), params,
                )
                inserted = {(u, tm) for u, tm in res.all()}
            for p in params:
                if (p["unit"], p["time"]) in inserted:
                    found[(p["unit"], p["time"])] = p
            rest = [(p["unit"], p["time"]) for p in params if (p["unit"], p["time"]) not in found]
            if rest:
                found.update(self.sequential_decisions(name, rest, conn))
        self.check_alive()
        return found

    def log_sequential_rewards(
        self, name: str, events: list[dict[str, Any]], seen_twice: int = 0
    ) -> tuple[int, int]:
        """Insert reward events (idempotent on event_id) and mark ``done`` decisions terminal.

        Returns (accepted, duplicates); ``seen_twice`` counts duplicates the
        caller already dropped from the batch.
        """
        rc, dc = t.sequential_rewards.c, t.sequential_decisions.c
        stamp = now()
        rows = [{**e, "experiment": name, "created_at": stamp} for e in events]
        with self.engine.begin() as conn:
            accepted: list[Any] = []
            if rows:
                res = conn.execute(
                    self._insert(t.sequential_rewards).on_conflict_do_nothing()
                    .returning(rc.unit, rc.time, rc.done), rows,
                )
                accepted = list(res.all())
            for unit, time, done in accepted:
                if done:
                    conn.execute(
                        t.sequential_decisions.update()
                        .where((dc.experiment == name) & (dc.unit == unit) & (dc.time == time))
                        .values(done=True)
                    )
        self.check_alive()
        return len(accepted), len(rows) - len(accepted) + seen_twice

    def sequential_log(self, name: str) -> tuple[list[dict[str, Any]], list[Any]]:
        """Every decision (by unit, then time) and the sums of each reward per decision.

        Returns ``(decisions, totals)``: totals are ``(unit, time, reward, sum)``.
        """
        dc, rc = t.sequential_decisions.c, t.sequential_rewards.c
        with self.engine.connect() as conn:
            decisions = [dict(r) for r in conn.execute(
                sa.select(dc.unit, dc.time, dc.time_value, dc.action, dc.propensity, dc.version,
                          dc.explored, dc.state, dc.done)
                .where(dc.experiment == name).order_by(dc.unit, dc.time_value)
            ).mappings()]
            totals = list(conn.execute(
                sa.select(rc.unit, rc.time, rc.reward, sa.func.sum(rc.value))
                .where((rc.experiment == name) & rc.reward.is_not(None))
                .group_by(rc.unit, rc.time, rc.reward)
            ).all())
        return decisions, totals

    def sequential_times(
        self, name: str, units: Iterable[str]
    ) -> dict[str, list[tuple[float, bool]]]:
        """Per unit, its stored decisions' ``(time_value, done)``, in time order."""
        dc = t.sequential_decisions.c
        out: dict[str, list[tuple[float, bool]]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(units))):
                for unit, value, done in conn.execute(
                    sa.select(dc.unit, dc.time_value, dc.done)
                    .where((dc.experiment == name) & dc.unit.in_(chunk))
                    .order_by(dc.unit, dc.time_value)
                ).all():
                    out.setdefault(str(unit), []).append((float(value), bool(done)))
        return out

    def count_sequential(self, name: str) -> tuple[int, int]:
        """(decisions, reward events) of a sequential experiment."""
        with self.engine.connect() as conn:
            n_dec = conn.execute(sa.select(sa.func.count()).where(
                t.sequential_decisions.c.experiment == name)).scalar_one()
            n_rew = conn.execute(sa.select(sa.func.count()).where(
                t.sequential_rewards.c.experiment == name)).scalar_one()
        return int(n_dec), int(n_rew)
