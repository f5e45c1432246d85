"""Every ```python and ```bash block of README.md runs as written.

The blocks run in README order in one temporary folder, the Python blocks of each ``## ``
section in one namespace (a later block uses the names of an earlier one), each bash block in
``bash -euo pipefail`` with ``.venv`` linked to this interpreter's environment. Markers in an
HTML comment on the line before a fence:

- ``<!-- not-run: REASON -->``: the block is skipped (kept for the few that need a remote
  cluster or take minutes); a marker without a reason fails the test.
- ``<!-- background: REASON -->``: a bash block that starts a long-running server; it runs in
  the background until the end of its section, and the next block waits for its
  ``/v1/health``.
- ``<!-- file: NAME -->``: the block (any language) is written to NAME, e.g. the spec.

Substitutions, the only ones: the port 8000 becomes a free port (tests run side by side), and
``$(openssl rand -hex 24)`` a fixed key that the test's environment also holds (the README's
Python reads ``PEXKIT_ADMIN_KEY`` from the shell that started the server). ``hillstrom.csv`` is
a 3,000-row sample of the MineThatData file in ``shared/data`` when present, else a simulated
log with its columns.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KEY = "readme-admin-key-0123456789abcdef"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|background|file):\s*(?P<arg>.*?)\s*-->\s*$")


@dataclass
class Block:
    section: str
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    marker: str | None = None
    arg: str = ""


def blocks(text: str) -> list[Block]:
    """The fenced blocks, dedented, with their ``## `` section and the marker before them."""
    lines = text.splitlines()
    out: list[Block] = []
    section, i = "", 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = m["indent"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        block = Block(section, m["lang"], "\n".join(body) + "\n", start + 1)
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        mk = MARKER.match(lines[j]) if j >= 0 else None
        if mk:
            block.marker, block.arg = mk["kind"], mk["arg"]
        out.append(block)
        i += 1
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hillstrom_sample(path: Path, n: int = 3000) -> None:
    shared = Path(os.environ.get("PEXKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
    source = shared / "hillstrom" / "hillstrom.csv"
    if source.exists():
        pd.read_csv(source, nrows=n).to_csv(path, index=False)
        return
    rng = np.random.default_rng(0)  # the same columns, simulated
    arms = np.array(["No E-Mail", "Mens E-Mail", "Womens E-Mail"])
    seg = arms[rng.integers(0, 3, n)]
    history = rng.exponential(240.0, n).round(2)
    visit = (rng.random(n) < 0.1 + 0.05 * (seg != "No E-Mail")).astype(int)
    conversion = visit * (rng.random(n) < 0.1).astype(int)
    pd.DataFrame({
        "recency": rng.integers(1, 13, n), "history_segment": "1) $0 - $100", "history": history,
        "mens": rng.integers(0, 2, n), "womens": rng.integers(0, 2, n),
        "zip_code": rng.choice(["Urban", "Surburban", "Rural"], n), "newbie": rng.integers(0, 2, n),
        "channel": rng.choice(["Phone", "Web", "Multichannel"], n), "segment": seg,
        "visit": visit, "conversion": conversion,
        "spend": conversion * rng.gamma(2.0, 50.0, n).round(2),
    }).to_csv(path, index=False)


class Runner:
    """Runs the blocks in order in ``tmp``; one namespace per section."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.namespaces: dict[str, dict[str, object]] = {}
        self.servers: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = {**os.environ, "PEXKIT_ADMIN_KEY": KEY}
        self.env.pop("COLUMNS", None)

    def adapt(self, code: str) -> str:
        code = code.replace("$(openssl rand -hex 24)", KEY)
        return re.sub(r"(127\.0\.0\.1:|--port )8000\b", rf"\g<1>{self.port}", code)

    def run(self, block: Block) -> None:
        self.stop_servers(keep=block.section)
        if block.marker == "file":
            (self.tmp / block.arg).write_text(block.code)
            return
        code = self.adapt(block.code)
        where = f"README.md line {block.line} ({block.section or 'top'}, {block.lang})"
        if block.lang == "bash" and block.marker == "background":
            self.start_server(block, code, where)
        elif block.lang == "bash":
            res = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=self.tmp,
                                 env=self.env, capture_output=True, text=True, timeout=600)
            assert res.returncode == 0, f"{where} failed:\n{code}\n{res.stdout}\n{res.stderr}"
        else:
            ns = self.namespaces.setdefault(block.section, {"__name__": "__readme__"})
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("default")  # shown to users, not errors
                    exec(compile(code, where, "exec"), ns)
            except Exception as exc:
                raise AssertionError(f"{where} failed:\n{code}") from exc

    def start_server(self, block: Block, code: str, where: str) -> None:
        with open(self.tmp / f"server-{block.line}.log", "wb") as log:
            proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", code], cwd=self.tmp,
                                    env=self.env, stdout=log, stderr=log, start_new_session=True)
        self.servers.append((block.section, proc))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"{where} exited: {(self.tmp / f'server-{block.line}.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/health", timeout=1).is_success:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{where}: the server did not answer in 60 s")

    def close_clients(self) -> None:
        import pexkit as px

        for ns in self.namespaces.values():
            for value in ns.values():
                if isinstance(value, px.Client):
                    value.close()

    def stop_servers(self, keep: str | None = None) -> None:
        for section, proc in list(self.servers):
            if section == keep:
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # bash and the server it started
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
            self.servers.remove((section, proc))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the README calls .venv/bin/pexkit
    hillstrom_sample(tmp_path / "hillstrom.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as a script next to evaluator.py
    monkeypatch.setenv("PEXKIT_ADMIN_KEY", KEY)
    yield tmp_path
    sys.modules.pop("evaluator", None)


def test_markers_are_few_and_say_why() -> None:
    found = blocks(README.read_text())
    runnable = [b for b in found if b.lang in ("python", "bash")]
    skipped = [b for b in runnable if b.marker == "not-run"]
    assert all(b.arg for b in found if b.marker), "every marker needs a reason or a file name"
    assert len(skipped) <= 4, [(b.line, b.arg) for b in skipped]
    assert len(runnable) - len(skipped) >= 6
    # the two commands stay at the top
    assert "make demo" in runnable[0].code and "make test" in runnable[0].code


def test_readme_snippets_run_as_written(workdir: Path) -> None:
    runner = Runner(workdir)
    ran = []
    try:
        for block in blocks(README.read_text()):
            if block.marker == "not-run":
                continue
            if block.lang in ("python", "bash") or block.marker == "file":
                runner.run(block)
                ran.append(block.line)
    finally:
        runner.close_clients()
        runner.stop_servers()
    assert ran
    # what the snippets promise exists
    assert (workdir / "out" / "report.html").exists()
    assert (workdir / "policy.json").exists() and (workdir / "evaluator.py").exists()
