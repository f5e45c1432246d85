"""A throwaway local PostgreSQL cluster (for tests, benchmarks and trying things out).

Uses Debian's server binaries (``apt-get install postgresql``); listens on
127.0.0.1 only, trusts local connections, and is deleted when the context ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pexkit.exceptions import PexkitError

__all__ = ["create_database", "local_postgres"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_postgres() -> Iterator[str]:
    """Start a cluster; yield its URL prefix ``postgresql://postgres@127.0.0.1:PORT``."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        raise PexkitError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "install them with `bash scripts/install-system.sh` (apt-get install postgresql)."
        )
    bindir = bins[-1]
    # not under a private temp dir: the server runs as the postgres user when we are root
    base = Path(tempfile.mkdtemp(prefix="pexkit-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    port = _free_port()
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        subprocess.run(full, check=True, capture_output=True)

    try:
        run(f"{bindir}/initdb", "-A", "trust", "-U", "postgres", "-D", str(data))
        run(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(base / "pg.log"), "-w", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock}", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            run(f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def create_database(prefix: str) -> str:
    """Create an empty database on the cluster; return its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{prefix}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return f"{prefix}/{name}"
