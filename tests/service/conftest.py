"""Fixtures: a real PostgreSQL server and real `pexkit serve` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pexkit.store.localpg import create_database, local_postgres

ADMIN = "test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`pexkit serve` in a child process."""

    def __init__(
        self, db: str, tmp: Path, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.db, self.tmp, self.env = db, tmp, dict(env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {**os.environ, "PEXKIT_ADMIN_KEY": ADMIN, **self.env}
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
    with local_postgres() as prefix:
        yield prefix


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    prefix = request.getfixturevalue("postgres")
    return create_database(prefix)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: start servers over a store; all are stopped at the end."""
    started: list[Server] = []

    def make(db: str, port: int | None = None, env: dict[str, str] | None = None) -> Server:
        srv = Server(db, tmp_path, port, env).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.kill(signal.SIGTERM)
