"""In-process latency of one sequential decision: ServedAgent.decide(unit, time, state).

A CQL agent (the default network, 64 x 64 ReLU) and an FQI agent (the default final
booster: 100 trees of 31 leaves) are trained on the notification-volume simulator
(--units users x 30 days), then each serves --decisions single decisions, one call
each, on states cycled from the log (a state dict in, the epsilon-greedy action with
its propensity out: check, encode without pandas, the numpy network or the booster,
the exploration hash). Reported per agent: p50, p90, p99, p99.9, max and mean of the
per-call latency (after --warmup calls), the same decisions as one batch call
(decisions/s), the agent's own q_values on a one-row DataFrame (the pandas path,
--pandas-calls calls) for comparison, and whether the served greedy actions equal
agent.choose. Latency is wall-clock on a shared machine: other processes add to the
tail.

Writes DIR/sequential-serving-latest.json and prints a table. Quick run:
    python benchmarks/sequential_serving.py --units 500 --cql-steps 500
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

import pexkit as px
from pexkit.sequential.agents import OfflineAgent
from pexkit.sequential.serving import ServedAgent

ROOT = Path(__file__).resolve().parents[1]


def percentiles(seconds: list[float]) -> dict[str, float]:
    us = np.asarray(seconds) * 1e6
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
        "p999_us": float(np.percentile(us, 99.9)),
        "max_us": float(us.max()),
        "mean_us": float(us.mean()),
    }


def bench_agent(
    name: str, agent: OfflineAgent, fit_seconds: float, sim: Any, args: argparse.Namespace
) -> dict[str, Any]:
    cols = list(sim.spec.state_columns)
    states = sim.frame[cols]
    records = states.to_dict("records")
    units = sim.frame["user"].tolist()
    times = sim.frame["t"].tolist()
    start = time.perf_counter()
    served = ServedAgent(agent.to_dict(), epsilon=args.epsilon, salt="bench")
    load_seconds = time.perf_counter() - start
    n, m = args.decisions, len(records)
    for i in range(args.warmup):
        served.decide(units[i % m], times[i % m], records[i % m])
    clock = time.perf_counter
    lat: list[float] = []
    picks: list[int] = []
    for i in range(n):
        k = i % m
        t0 = clock()
        _, a, _ = served.decide(units[k], times[k], records[k])
        lat.append(clock() - t0)
        picks.append(a)
    rows = [i % m for i in range(n)]
    start = time.perf_counter()
    batch = served.decisions(
        [units[k] for k in rows], [times[k] for k in rows], [records[k] for k in rows]
    )
    batch_seconds = time.perf_counter() - start
    pandas_lat = []
    for i in range(args.pandas_calls):
        one = states.iloc[[i % m]]
        t0 = clock()
        agent.q_values(one)
        pandas_lat.append(clock() - t0)
    explored = np.array([d.explored for d in batch])
    greedy = agent.choose(states.iloc[rows])
    same = bool(
        (np.array(picks)[~explored] == greedy[~explored]).all()
        and picks == [d.action_index for d in batch]
    )
    return {
        "agent": name,
        "algorithm": agent.algorithm,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in agent.options.items()},
        "fit_seconds": fit_seconds,
        "load_seconds": load_seconds,
        "decisions": n,
        "single": percentiles(lat),
        "single_decisions_per_second": n / float(np.sum(lat)),
        "batch_seconds": batch_seconds,
        "batch_decisions_per_second": n / batch_seconds,
        "pandas_q_values_one_row": percentiles(pandas_lat),
        "explored_share": float(explored.mean()),
        "greedy_actions_equal_agent_choose": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--pandas-calls", type=int, default=1000)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--cql-steps", type=int, default=2000)
    parser.add_argument("--fqi-iterations", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    sim = px.simulate("notification-volume", n_units=args.units, seed=0)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "load_average": list(os.getloadavg()),
        },
        "log": {
            "units": args.units,
            "decisions": len(sim.frame),
            "state_columns": list(sim.spec.state_columns),
        },
        "epsilon": args.epsilon,
        "agents": [],
    }
    specs = [
        ("cql", OfflineAgent("cql", steps=args.cql_steps, random_state=0)),
        ("fqi", OfflineAgent("fqi", iterations=args.fqi_iterations, random_state=0)),
    ]
    for name, agent in specs:
        start = time.perf_counter()
        agent.fit(sim.log, progress=False)
        fit_seconds = time.perf_counter() - start
        print(f"{name}: fitted in {fit_seconds:.1f} s", flush=True)
        results["agents"].append(bench_agent(name, agent, fit_seconds, sim, args))
    results["machine"]["load_average_after"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "sequential-serving-latest.json"
    path.write_text(json.dumps(results, indent=2))

    print()
    print(
        f"{'ServedAgent.decide, one call':<32}{'p50 us':>9}{'p90 us':>9}{'p99 us':>9}"
        f"{'p99.9 us':>10}{'max us':>9}{'batch/s':>11}{'pandas p50 us':>15}"
    )
    for r in results["agents"]:
        s = r["single"]
        print(
            f"{r['agent'] + ' (' + str(r['decisions']) + ' decisions)':<32}{s['p50_us']:>9.1f}"
            f"{s['p90_us']:>9.1f}{s['p99_us']:>9.1f}{s['p999_us']:>10.1f}{s['max_us']:>9.0f}"
            f"{r['batch_decisions_per_second']:>11,.0f}"
            f"{r['pandas_q_values_one_row']['p50_us']:>15.0f}"
        )
        print(f"{'  greedy = agent.choose':<32}{str(r['greedy_actions_equal_agent_choose']):>9}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
