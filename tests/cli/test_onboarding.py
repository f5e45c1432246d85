"""Onboarding: `--version`, help without type tags, and a next step after every command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from pexkit import __version__
from pexkit.cli.main import main

COMMANDS = ("analyze", "simulate", "demo", "serve", "export")


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*args, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pexkit {__version__}"
    assert "--version" in _help(capsys)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_type_tags(capsys: pytest.CaptureFixture[str], command: str) -> None:
    text = _help(capsys, *([command] if command else []))
    # typer's defaults read `{log}` in the usage line and `<bool>`, `<path>` per option
    assert not re.search(r"<(bool|str|int|float|path|list\[str\])>", text), text
    assert not re.search(r"\{[a-z_]+\}", text), text
    if command == "analyze":
        assert "Usage: pexkit analyze [OPTIONS] LOG" in text
        assert re.search(r"--spec\s+PATH", text) and re.search(r"--folds\s+INTEGER", text)
        assert re.search(r"--progress\s+--no-progress\s+Show", text)  # a flag: no type
    if command == "export":
        assert "EXPERIMENT VERSION" in text
    if command == "demo":
        assert "demo-out" in text  # what the README's `make demo` says it writes


def test_simulate_and_analyze_say_what_to_do_next(tmp_path: os.PathLike[str]) -> None:
    run = [sys.executable, "-m", "pexkit.cli.main"]
    log, spec, out = (os.path.join(tmp_path, p) for p in ("sim.csv", "sim.yaml", "out"))
    sim = subprocess.run([*run, "simulate", "--out", log, "--n", "900"],
                         capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    last = " ".join(sim.stdout.split()).split("next: ")[-1]
    assert last.startswith(f"pexkit analyze {log} --spec {spec}")
    res = subprocess.run([*run, "analyze", log, "--spec", spec, "--out", out, "--learner", "t",
                          "--folds", "2", "--budget", "60", "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"next: open {os.path.join(out, 'report.html')} in a browser")


def test_serve_prints_the_dashboard_url_with_key(tmp_path: os.PathLike[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PEXKIT_ADMIN_KEY": "onboarding-admin-key-0123"}
    with subprocess.Popen(
        [sys.executable, "-m", "pexkit.cli.main", "serve", "--db",
         f"sqlite:///{os.path.join(tmp_path, 'e.db')}", "--port", str(port)],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            deadline, seen = time.monotonic() + 60, ""
            while "next:" not in seen and time.monotonic() < deadline:
                seen += proc.stderr.readline()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert f"http://127.0.0.1:{port}/?key=$PEXKIT_ADMIN_KEY" in seen, seen
    assert "onboarding-admin-key-0123" not in seen  # the key itself is never printed
