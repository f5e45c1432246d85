"""Fixtures: a real PostgreSQL server and real `pexkit serve` processes on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN = "test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`pexkit serve` in a child process."""

    def __init__(self, db: str, tmp: Path, port: int | None = None) -> None:
        self.db, self.tmp = db, tmp
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {**os.environ, "PEXKIT_ADMIN_KEY": ADMIN}
        with open(self.tmp / f"server-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pexkit.cli.main", "serve", "--db", self.db,
                 "--port", str(self.port)],
                env=env, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.tmp / f"server-{self.port}.log").read_text())
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None


_CLIENTS: list[Any] = []


def client(url: str, key: str = ADMIN, **kw: Any) -> Any:
    """A px.Client closed at the end of the test."""
    import pexkit as px

    c = px.Client(url, key, **kw)
    _CLIENTS.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields a server URL prefix."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail("PostgreSQL is not installed: run `make test` (it installs it) "
                    "or `bash scripts/install-system.sh`.")
    bindir = bins[-1]
    # not under pytest's tmp dir: that is private to root, and the server runs as postgres
    base = Path(tempfile.mkdtemp(prefix="pexkit-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    port = free_port()
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        subprocess.run(full, check=True, capture_output=True)

    run(f"{bindir}/initdb", "-A", "trust", "-U", "postgres", "-D", str(data))
    run(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(base / "pg.log"), "-w", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=on", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        run(f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _new_pg_db(prefix: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{prefix}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{prefix}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    prefix = request.getfixturevalue("postgres")
    return _new_pg_db(prefix)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: start servers over a store; all are stopped at the end."""
    started: list[Server] = []

    def make(db: str, port: int | None = None) -> Server:
        srv = Server(db, tmp_path, port).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.kill(signal.SIGTERM)
