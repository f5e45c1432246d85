"""Sequential decisions at scale: ~1M logged decisions from simulate to evaluation.

On the notification-volume simulator (default 36,000 users x 30 days, about
1M decisions): the time to simulate the log, to build its TransitionLog, to
fit pexkit's ``fqi``, ``ddqn`` and ``cql`` agents (defaults) and the myopic
``fqi`` (gamma 0), and to evaluate each agent off-policy with ``wpdis``,
``smis`` and ``dr`` (and ``fqe`` once, on the ``fqi`` agent); then each
policy's TRUE discounted utility from the simulator's rollouts of fresh users
(``true_value``, common random numbers), next to the logging policy,
always-send, never-send, the simulator's true myopic rule and the best
threshold rule (brute force over a small grid, chosen on one rollout seed and
reported on another), and each policy's share of the best rule's utility.
Peak RSS of the process is recorded.

    python benchmarks/sequential_bench.py --out benchmarks/results
    python benchmarks/sequential_bench.py --users 2000   # smoke test

Writes benchmarks/results/sequential-bench-latest.json and a dated copy
(sequential-bench-<UTC stamp>.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pexkit as px
from pexkit.sequential.agents import OfflineAgent
from pexkit.simulate.sequential import threshold_rule

ROOT = Path(__file__).resolve().parents[1]
GRID = list(itertools.product([0.5, 1.0, 2.0], [0, 3, 5], [0.3, 1.0]))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=36_000, help="users in the log")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-users", type=int, default=20_000, help="rollout users per true value")
    ap.add_argument("--eval-seed", type=int, default=12345, help="rollout seed of reported values")
    ap.add_argument("--search-users", type=int, default=10_000, help="rollout users, grid search")
    ap.add_argument("--search-seed", type=int, default=7, help="rollout seed of the grid search")
    ap.add_argument(
        "--dr-decisions",
        type=int,
        default=200_000,
        help="evaluate dr (and fqe) on the first users covering at most this many decisions "
        "(0: the whole log; at 1M decisions the whole log takes too long on 2 cores)",
    )
    ap.add_argument("--n-bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the neural agents")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    sim = px.simulate("notification-volume", n_units=args.users, seed=args.seed)
    times["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log = sim.log
    times["transition_log"] = time.perf_counter() - t0
    say(
        f"log: {log.n_decisions:,} decisions, {log.n_episodes:,} episodes "
        f"(simulate {times['simulate']:.1f} s, TransitionLog {times['transition_log']:.1f} s)"
    )
    results["simulator"] = {
        "name": "notification-volume",
        "users": args.users,
        "seed": args.seed,
        "horizon": sim.horizon,
        "gamma": sim.gamma,
        "push_cost": sim.push_cost,
        "exploration": sim.exploration,
    }
    results["decisions"] = int(log.n_decisions)
    results["episodes"] = int(log.n_episodes)

    # ------------------------------------------------------------------ agents
    agents: dict[str, Any] = {}
    for name, kwargs in (
        ("fqi", {"algorithm": "fqi"}),
        ("ddqn", {"algorithm": "ddqn"}),
        ("cql", {"algorithm": "cql"}),
        ("fqi_gamma0", {"algorithm": "fqi", "gamma": 0}),
    ):
        t0 = time.perf_counter()
        agents[name] = OfflineAgent(random_state=args.seed, **kwargs).fit(log)
        times[f"fit_{name}"] = time.perf_counter() - t0
        say(f"fit {name}: {times[f'fit_{name}']:.1f} s")
    results["agent_summaries"] = {
        name: {
            k: v
            for k, v in agent.summary_.items()
            if isinstance(v, int | float | str | bool) or v is None
        }
        for name, agent in agents.items()
    }

    # ------------------------------------------------------- off-policy estimates
    if args.dr_decisions and args.dr_decisions < log.n_decisions:
        counts = sim.frame.groupby("user", sort=True).size()
        keep = counts.index[counts.cumsum().to_numpy() <= args.dr_decisions]
        sub = sim.frame[sim.frame["user"].isin(keep)]
        t0 = time.perf_counter()
        dr_log = px.TransitionLog.from_frame(sub, sim.spec)
        say(f"dr subset: {dr_log.n_decisions:,} decisions of {len(keep):,} users")
        results["dr_subset"] = {
            "note": "dr and fqe are evaluated on the log's first users only (time)",
            "users": len(keep),
            "decisions": int(dr_log.n_decisions),
            "transition_log_seconds": time.perf_counter() - t0,
        }
    else:
        dr_log = log
        results["dr_subset"] = None
    estimates: dict[str, dict[str, Any]] = {}
    runs = [(est, name) for est in ("wpdis", "smis", "dr") for name in ("fqi", "ddqn", "cql")]
    runs.append(("fqe", "fqi"))
    for est, name in runs:
        on = dr_log if est in ("dr", "fqe") else log
        t0 = time.perf_counter()
        v = px.evaluate_sequential(
            agents[name],
            on,
            est,
            random_state=args.seed,
            n_bootstrap=args.n_bootstrap,
            progress=False,
        )
        secs = time.perf_counter() - t0
        times[f"eval_{est}_{name}"] = secs
        estimates.setdefault(name, {})[est] = {
            "utility": float(v["utility"]),
            "ci": [float(v.ci_low[-1]), float(v.ci_high[-1])],
            "ess": float(v.ess),
            "decisions": int(on.n_decisions),
            "seconds": round(secs, 2),
        }
        say(f"{est} {name}: {float(v['utility']):.4f} ({secs:.1f} s)")

    # ------------------------------------------------------------- ground truth
    t0 = time.perf_counter()
    search = {
        g: float(
            sim.true_value(
                threshold_rule(g[0], g[1], max_activity=g[2]),
                n_units=args.search_users,
                seed=args.search_seed,
            ).loc["utility", "value"]
        )
        for g in GRID
    }
    best = max(search, key=search.__getitem__)
    times["threshold_grid_search"] = time.perf_counter() - t0
    say(f"best threshold rule {best}: {search[best]:.4f} ({times['threshold_grid_search']:.1f} s)")
    results["threshold_search"] = {
        "grid": "max_fatigue x min_days_since_visit x max_activity",
        "users": args.search_users,
        "seed": args.search_seed,
        "values": {f"{g[0]}/{g[1]}/{g[2]}": v for g, v in search.items()},
        "best": {"max_fatigue": best[0], "min_days_since_visit": best[1], "max_activity": best[2]},
    }
    policies: dict[str, Any] = {
        "best_threshold_rule": threshold_rule(best[0], best[1], max_activity=best[2]),
        "logging": sim.logging_policy,
        "always_send": sim.always(1),
        "never_send": sim.never(),
        "true_myopic": sim.true_myopic_policy(),
        **{f"agent_{k}": a for k, a in agents.items()},
    }
    truth: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for name, policy in policies.items():
        value = sim.true_value(policy, n_units=args.eval_users, seed=args.eval_seed)
        truth[name] = {k: float(value.loc[k, "value"]) for k in value.index}
        truth[name]["utility_se"] = float(value.loc["utility", "se"])
    times["true_values"] = time.perf_counter() - t0
    ref = truth["best_threshold_rule"]["utility"]
    for row in truth.values():
        row["share_of_best_rule"] = row["utility"] / ref
    for name in ("fqi", "ddqn", "cql"):
        for est in estimates[name].values():
            est["error_vs_truth"] = est["utility"] - truth[f"agent_{name}"]["utility"]
    results["true_values"] = {
        "users": args.eval_users,
        "seed": args.eval_seed,
        "value": "mean over fresh users of sum_t gamma^t (sessions - push_cost * pushes)",
        "policies": truth,
    }
    results["estimates"] = estimates
    results["seconds"] = {k: round(v, 2) for k, v in times.items()}
    results["peak_rss_gb"] = round(peak_rss_gb(), 3)

    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    (args.out / "sequential-bench-latest.json").write_text(text)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    (args.out / f"sequential-bench-{stamp}.json").write_text(text)

    print(f"{log.n_decisions:,} decisions ({args.users:,} users); peak RSS {peak_rss_gb():.2f} GB")
    print("\nseconds:")
    for k, v in times.items():
        print(f"  {k:<28}{v:>8.1f}")
    print(f"\n{'policy':<22}{'utility':>9}{'se':>7}{'pushes':>8}{'share':>7}")
    for name, row in truth.items():
        print(
            f"{name:<22}{row['utility']:>9.4f}{row['utility_se']:>7.4f}"
            f"{row['pushes']:>8.3f}{row['share_of_best_rule']:>7.3f}"
        )
    print(f"\n{'agent':<8}{'estimator':>10}{'estimate':>10}{'truth':>9}{'s':>8}")
    for name, ests in estimates.items():
        for est, row in ests.items():
            print(
                f"{name:<8}{est:>10}{row['utility']:>10.4f}"
                f"{truth[f'agent_{name}']['utility']:>9.4f}{row['seconds']:>8.1f}"
            )
    print(f"wrote {args.out / 'sequential-bench-latest.json'}")


if __name__ == "__main__":
    main()
