"""Fitted Q evaluation: pexkit's FQE (and DR) against d3rlpy's DiscreteFQE and the truth.

One log of the notification-volume simulator (default 5000 users x 30 days,
gamma 0.9, push cost 0.05) and one fixed policy, the threshold rule "send when
fatigue <= 1, at least 3 days since the last visit and activity <= 0.3"
(``threshold_rule(1.0, 3, max_activity=0.3)``, the policy of
sequential_ope.py). Its value is estimated by

- pexkit: ``evaluate_sequential(rule, log, "fqe")`` (LightGBM FQE with the
  time left in the log as a feature: the discounted value over the log's
  window), ``"dr"`` and ``"wpdis"``;
- d3rlpy 2.x ``DiscreteFQE`` on the same transitions (the standardized encoded
  states ``log.encoder.transform(states, scaled=True)``, the utility
  ``rewards @ spec.utility_weights = sessions - push_cost * pushes`` as reward,
  the spec's gamma, terminals = unsubscribes, timeouts = the censored window
  ends). The rule is given to d3rlpy as a policy: a DQN whose
  ``predict_best_action`` is replaced by the rule computed in torch from the
  scaled observations (each rule column is recovered from its standardized
  column by a linear map fitted on the log; the script checks that the torch
  rule reproduces ``threshold_rule`` on every logged state). The value is the
  mean over episodes of ``Q(s_0, pi(s_0))``;

and compared with the rollout truth ``sim.true_value(rule)`` over the 30-day
window and with the truth over a 100-day window (0.9^100 ~ 3e-5: the
infinite-horizon value). What differs: d3rlpy's FQE is a neural network, and
is infinite-horizon (a timeout is not a terminal, so it bootstraps past the end
of the window: it estimates the infinite-horizon value); pexkit's FQE is
boosted trees and stops at the window's end (the quantity the importance
sampling estimators and the 30-day truth measure).

    python benchmarks/sequential_fqe_d3rlpy.py --d3rlpy-python /tmp/d3venv/bin/python

Writes benchmarks/results/sequential-fqe-d3rlpy-latest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RULE = {"max_fatigue": 1.0, "min_days_since_visit": 3, "max_activity": 0.3}


# ------------------------------------------------------------------ d3rlpy side
def worker(args: argparse.Namespace) -> None:
    """Fit d3rlpy's DiscreteFQE of the rule (runs in the d3rlpy virtual environment)."""
    import d3rlpy
    import torch

    torch.set_num_threads(args.threads)
    cfg = json.loads(args.config)
    data = np.load(args.npz)
    n_actions = int(data["n_actions"])
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"],
        actions=data["actions"],
        rewards=data["rewards"],
        terminals=data["terminals"],
        timeouts=data["timeouts"],
        action_space=d3rlpy.ActionSpace.DISCRETE,
        action_size=n_actions,
    )
    # the rule on scaled observations: raw_c = a_c * x[:, j_c] + b_c
    rule = cfg["rule"]
    cols = {k: (int(j), float(a), float(b)) for k, (j, a, b) in cfg["columns"].items()}

    def raw(x: torch.Tensor, name: str) -> torch.Tensor:
        j, a, b = cols[name]
        return a * x[:, j] + b

    def rule_actions(x: torch.Tensor) -> torch.Tensor:
        eps = 1e-6  # the linear map's rounding
        ok = (
            (raw(x, "fatigue") <= rule["max_fatigue"] + eps)
            & (raw(x, "days_since_visit") >= rule["min_days_since_visit"] - eps)
            & (raw(x, "activity") <= rule["max_activity"] + eps)
        )
        return ok.long()

    d3rlpy.seed(cfg["seed"])
    policy = d3rlpy.algos.DQNConfig().create(device="cpu:0")
    policy.build_with_dataset(dataset)
    policy.impl.predict_best_action = rule_actions  # type: ignore[union-attr,method-assign]
    obs = data["observations"]
    check = policy.predict(obs)
    out: dict[str, Any] = {
        "d3rlpy": d3rlpy.__version__,
        "torch": torch.__version__,
        "transitions": int(dataset.transition_count),
        "rule_agreement_with_pexkit": float((check == data["rule_actions"]).mean()),
    }
    fqe = d3rlpy.ope.DiscreteFQE(
        algo=policy,
        config=d3rlpy.ope.FQEConfig(
            learning_rate=cfg["learning_rate"],
            batch_size=cfg["batch_size"],
            gamma=cfg["gamma"],
            target_update_interval=cfg["target_update"],
            encoder_factory=d3rlpy.models.VectorEncoderFactory(
                hidden_units=list(cfg["hidden"]), activation="relu"
            ),
        ),
        device="cpu:0",
    )
    first = data["first"]
    s0 = obs[first]
    a0 = check[first]
    trace = []
    start = time.perf_counter()
    done = 0
    for _ in range(cfg["checkpoints"]):
        n = cfg["steps"] // cfg["checkpoints"]
        fqe.fit(
            dataset,
            n_steps=n,
            n_steps_per_epoch=n,
            show_progress=False,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
            save_interval=10**9,
        )
        done += n
        trace.append([done, float(fqe.predict_value(s0, a0).mean())])
        print(f"d3rlpy FQE {done} steps: {trace[-1][1]:.4f}", file=sys.stderr, flush=True)
    out["fit_seconds"] = time.perf_counter() - start
    out["value"] = trace[-1][1]
    out["trace"] = trace
    Path(args.report).write_text(json.dumps(out))


# ------------------------------------------------------------------ pexkit side
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--d3rlpy-python", help="python of a virtual environment with d3rlpy")
    parser.add_argument("--units", type=int, default=5000, help="users in the log")
    parser.add_argument("--eval-units", type=int, default=50_000, help="users per true value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20_000, help="d3rlpy FQE gradient steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (d3rlpy)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import pexkit as px
    from pexkit.simulate.sequential import simulate_notification_volume, threshold_rule

    rule = threshold_rule(
        RULE["max_fatigue"], RULE["min_days_since_visit"], max_activity=RULE["max_activity"]
    )
    sim = simulate_notification_volume(n_units=args.units, seed=args.seed)
    log = sim.log
    weights = np.asarray(log.spec.utility_weights, dtype=np.float64)
    print(f"log: {log.n_decisions} decisions of {args.units} users", flush=True)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "simulator": {
            "name": "notification-volume",
            "units": args.units,
            "seed": args.seed,
            "horizon": sim.horizon,
            "gamma": sim.gamma,
            "push_cost": sim.push_cost,
        },
        "decisions": int(log.n_decisions),
        "episodes": int(log.n_episodes),
        "policy": {"threshold_rule": RULE, "send_share_in_log": None},
        "reward": f"utility = rewards @ {weights.tolist()} (sessions - push_cost * pushes)",
        "gamma": float(log.spec.gamma),
    }

    # truth: the 30-day window (what the log shows) and ~infinite horizon (100 days)
    truth: dict[str, Any] = {}
    t30 = sim.true_value(rule, n_units=args.eval_units, seed=12345)
    truth["window_30d"] = {
        "utility": float(t30.loc["utility", "value"]),
        "se": float(t30.loc["utility", "se"]),
    }
    long_sim = simulate_notification_volume(n_units=10, seed=args.seed, horizon=100)
    t100 = long_sim.true_value(rule, n_units=args.eval_units, seed=12345)
    truth["window_100d_about_infinite"] = {
        "utility": float(t100.loc["utility", "value"]),
        "se": float(t100.loc["utility", "se"]),
    }
    truth["users"] = args.eval_units
    results["truth"] = truth
    print(f"truth: {truth}", flush=True)

    ours: dict[str, Any] = {}
    for est in ("fqe", "dr", "wpdis"):
        t0 = time.perf_counter()
        v = px.evaluate_sequential(rule, log, est, random_state=args.seed, progress=False)
        ours[est] = {
            "utility": float(v["utility"]),
            "ci": [float(v.ci_low[-1]), float(v.ci_high[-1])],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        print(f"pexkit {est}: {ours[est]}", flush=True)
    results["pexkit"] = ours

    if args.d3rlpy_python:
        X = log.encoder.transform(log.frame, scaled=True).astype(np.float64)
        actions_rule = rule(log.frame)
        results["policy"]["send_share_in_log"] = float(actions_rule.mean())
        # each rule column as a linear function of one standardized column
        columns: dict[str, list[float]] = {}
        for name in ("fatigue", "days_since_visit", "activity"):
            y = log.frame[name].to_numpy(dtype=np.float64)
            corr = [
                abs(np.corrcoef(X[:, j], y)[0, 1]) if X[:, j].std() > 0 else 0.0
                for j in range(X.shape[1])
            ]
            j = int(np.argmax(corr))
            a, b = np.polyfit(X[:, j], y, 1)
            err = float(np.abs(a * X[:, j] + b - y).max())
            if err > 1e-4:
                raise RuntimeError(f"{name} is not a linear map of scaled column {j} ({err})")
            columns[name] = [j, float(a), float(b)]
        last = log.next_index < 0
        settings = {
            "hidden": [64, 64],
            "steps": args.steps,
            "checkpoints": 4,
            "batch_size": 256,
            "learning_rate": 3e-4,
            "target_update": 100,
            "gamma": float(log.spec.gamma),
            "seed": args.seed,
            "rule": RULE,
            "columns": columns,
        }
        with tempfile.TemporaryDirectory() as tmp:
            npz, report = Path(tmp) / "log.npz", Path(tmp) / "r.json"
            np.savez(
                npz,
                observations=X.astype(np.float32),
                actions=log.actions.astype(np.int64),
                rewards=(log.rewards @ weights).astype(np.float32),
                terminals=log.done.astype(np.float32),
                timeouts=(last & ~log.done).astype(np.float32),
                n_actions=np.int64(log.n_actions),
                rule_actions=actions_rule.astype(np.int64),
                first=log.episode_starts.astype(np.int64),
            )
            cmd = [
                args.d3rlpy_python,
                str(Path(__file__).resolve()),
                "--worker",
                "--npz",
                str(npz),
                "--report",
                str(report),
                "--threads",
                str(args.threads),
                "--config",
                json.dumps(settings),
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            d3 = json.loads(report.read_text())
        d3["settings"] = {k: v for k, v in settings.items() if k not in ("rule",)}
        results["d3rlpy_fqe"] = d3
        if d3["rule_agreement_with_pexkit"] < 1.0:
            print(f"WARNING: rule agreement {d3['rule_agreement_with_pexkit']}", flush=True)

    rows = [("truth 30-day window", truth["window_30d"]["utility"])]
    rows.append(("truth 100-day (~inf)", truth["window_100d_about_infinite"]["utility"]))
    rows += [(f"pexkit {k}", v["utility"]) for k, v in ours.items()]
    if "d3rlpy_fqe" in results:
        rows.append(("d3rlpy DiscreteFQE", results["d3rlpy_fqe"]["value"]))
    results["differences"] = {
        "d3rlpy_fqe_minus_truth_30d": (
            results["d3rlpy_fqe"]["value"] - truth["window_30d"]["utility"]
            if "d3rlpy_fqe" in results
            else None
        ),
        "d3rlpy_fqe_minus_truth_100d": (
            results["d3rlpy_fqe"]["value"] - truth["window_100d_about_infinite"]["utility"]
            if "d3rlpy_fqe" in results
            else None
        ),
        "pexkit_fqe_minus_truth_30d": ours["fqe"]["utility"] - truth["window_30d"]["utility"],
        "pexkit_dr_minus_truth_30d": ours["dr"]["utility"] - truth["window_30d"]["utility"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "sequential-fqe-d3rlpy-latest.json"
    path.write_text(json.dumps(results, indent=2))
    for name, value in rows:
        print(f"{name:<24}{value:>9.4f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
