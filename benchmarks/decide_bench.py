"""HTTP decide throughput against the web stack's own ceiling, measured with wrk.

In one run, on this machine: a bare FastAPI endpoint with the same request model
(benchmarks/bare_app.py) and ``pexkit serve`` (1 worker, SQLite), both on
uvicorn + uvloop + httptools; Debian's ``wrk`` with 32 connections, a unique
unit per request (so every request writes a new assignment), for the randomize
phase and for a launched linear policy (exact compiled LightGBM ensembles).
Then PostgreSQL with 1 and 2 workers. Every 2xx decision is durably stored
before its response; the run checks that the store holds exactly as many
assignments as wrk counted successful responses. Writes
benchmarks/results/decide-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import pexkit as px
from pexkit.simulate.scenarios import NotificationsScenario
from pexkit.store.localpg import create_database, local_postgres

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-admin-key-000000"
NAME = "bench"

LUA = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local body = '{"unit":"%(prefix)s-' .. tid .. '-' .. counter .. '","features":%(features)s}'
  return wrk.format("POST", "/v1/experiments/%(name)s/decide",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}, body)
end
"""


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"server at {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def serve(db: str, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PEXKIT_ADMIN_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pexkit.cli.main", "serve", "--db", db, "--port", str(port),
         "--workers", str(workers)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _wait(f"http://127.0.0.1:{port}/v1/health", proc)
    return proc


def bare(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(ROOT / "benchmarks"),
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--log-level",
         "warning", "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _wait(f"http://127.0.0.1:{port}/docs", proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def wrk(url: str, prefix: str, features: dict[str, Any], seconds: int,
        connections: int = 32) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA % {"prefix": prefix, "features": json.dumps(features).replace("'", ""),
                        "name": NAME, "key": KEY})
        script = fh.name
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout
    finally:
        os.unlink(script)

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "requests": total,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None}


def paired(api: px.Client, phase: str, url: str, bare_url: str, prefix: str,
           features: dict[str, Any], seconds: int, rounds: int) -> dict[str, Any]:
    """``rounds`` alternated runs of the bare ceiling and pexkit; the median pair's figures.

    On a shared machine the ceiling itself moves 20-30% between runs, so each
    pexkit run is compared with the bare run just before it.
    """
    pairs = []
    for i in range(rounds):
        b = wrk(bare_url, f"bare{prefix}{i}", features, seconds)
        before = stored(api, phase)
        r = wrk(url, f"{prefix}{i}", features, seconds)
        r["stored_assignments"] = stored(api, phase) - before
        r["bare_req_per_s"], r["bare_p99_ms"] = b["req_per_s"], b["p99_ms"]
        r["ratio_to_bare"] = r["req_per_s"] / b["req_per_s"]
        pairs.append(r)
    pairs.sort(key=lambda r: r["ratio_to_bare"])
    out = dict(pairs[len(pairs) // 2])
    out["ratios_to_bare"] = [round(r["ratio_to_bare"], 3) for r in pairs]
    out["p99s_ms"] = [r["p99_ms"] for r in pairs]
    out["all_stored"] = all(r["stored_assignments"] >= r["requests"] - r["non_2xx"]
                            for r in pairs)
    return out


def stored(api: px.Client, phase: str) -> int:
    """Assignments in the store (each 2xx decision was committed before its answer)."""
    time.sleep(0.5)  # requests still in flight when wrk stopped finish first
    return int(api.experiment(NAME)["assignments"].get(phase, 0))


def launch_policy(api: px.Client, n_units: int) -> int:
    """Randomize, log simulated outcomes, train, optimize; launch the utility policy."""
    sim = px.simulate("notifications", n_units=n_units, seed=5)
    frame = sim.frame
    spec = sim.spec
    feats = frame[list(spec.features)].to_dict("records")
    reqs = [(f"train-{i}", f) for i, f in enumerate(feats)]
    ds = []
    for j in range(0, len(reqs), 2000):
        ds += api.decide_batch(NAME, reqs[j:j + 2000])
    t = np.array([d.treatment_index for d in ds])
    cols = [sim.all_outcomes.index(o) for o in spec.outcome_names]
    mu = sim.true_means[:, :, cols]
    rng = np.random.default_rng(0)
    events = []
    for i, d in enumerate(ds):
        for m, o in enumerate(spec.outcome_names):
            y = float(mu[i, t[i], m] + rng.normal(scale=0.5))
            events.append({"unit": d.unit, "outcome": o, "value": y, "event_id": f"{d.unit}-{o}"})
    for j in range(0, len(events), 5000):
        api.log_batch(NAME, events[j:j + 5000])
    api.run_job(NAME, "train", learner="auto", base_params={"n_estimators": 100})
    api.run_job(NAME, "optimize", budget=100)
    version = next(p["version"] for p in api.policies(NAME) if p["label"].startswith("utility"))
    api.launch(NAME, version)
    return int(version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="bare/pexkit pairs per phase, alternated (this machine is noisy)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk (make bench installs it)")
    features = NotificationsScenario().features(1, np.random.default_rng(2)).to_dict("records")[0]
    spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
    spec["name"] = NAME
    res: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "connections": 32,
                           "seconds": args.seconds}
    bare_url = "http://127.0.0.1:8801"
    bare_proc = bare(8801)
    try:
        wrk(bare_url, "warm", features, 2)
        res["bare_fastapi"] = wrk(bare_url, "bare", features, args.seconds)
        print("bare", res["bare_fastapi"])
        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{tmp}/bench.db"
            url = "http://127.0.0.1:8802"
            proc = serve(db, 8802)
            try:
                api = px.Client(url, KEY, timeout=600)
                api.create_experiment(spec)
                wrk(url, "warm", features, 2)
                res["sqlite_randomize"] = paired(api, "randomize", url, bare_url, "rand",
                                                 features, args.seconds, args.rounds)
                print("sqlite randomize", res["sqlite_randomize"])
                version = launch_policy(api, args.n_train)
                wrk(url, "warm2", features, 2)
                r = paired(api, "launched", url, bare_url, "launch", features, args.seconds,
                           args.rounds)
                r["policy_version"] = version
                res["sqlite_launched"] = r
                print("sqlite launched", r)
                api.close()
            finally:
                stop(proc)
    finally:
        stop(bare_proc)
    bare_rate = res["bare_fastapi"]["req_per_s"]
    with local_postgres() as prefix:
        for workers in (1, 2):
            db = create_database(prefix)
            proc = serve(db, 8803, workers)
            try:
                api = px.Client("http://127.0.0.1:8803", KEY)
                api.create_experiment(spec)
                wrk("http://127.0.0.1:8803", "warm", features, 2)
                before = stored(api, "randomize")
                r = wrk("http://127.0.0.1:8803", f"pg{workers}", features, args.seconds)
                r["stored_assignments"] = stored(api, "randomize") - before
                r["ratio_to_bare"] = r["req_per_s"] / bare_rate
                res[f"postgresql_randomize_{workers}_workers"] = r
                print(f"postgresql {workers} workers", r)
                api.close()
            finally:
                stop(proc)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decide-latest.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({k: {kk: v[kk] for kk in ("req_per_s", "p99_ms", "ratio_to_bare")
                          if kk in v} for k, v in res.items() if isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
