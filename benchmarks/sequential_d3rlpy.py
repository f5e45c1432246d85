"""Offline RL on the notification-volume simulator: pexkit's OfflineAgent against d3rlpy.

One log of daily send / no-send decisions (``simulate_notification_volume``,
default settings: N users, 30 days, gamma 0.9, push cost 0.05, exploration
0.1) trains pexkit's ``fqi``, ``ddqn`` and ``cql`` agents (gamma from the
spec) and the myopic ``fqi`` with gamma 0, and d3rlpy 2.x's ``DoubleDQN`` and
``DiscreteCQL`` on the same transitions: the same standardized encoded states
(``log.encoder.transform(states, scaled=True)``), utilities, terminals (an
unsubscribe) and timeouts (the censored end of a user's window, which neither
library trains on), with the same network (ReLU MLP 64-64), gamma, gradient
steps, batch size, Adam learning rate and its cosine annealing, hard
target-copy interval and CQL alpha.
Every policy's true discounted utility comes from the simulator's rollouts of
fresh users (common random numbers), next to the logging policy, always-send,
never-send and the true myopic rule.

d3rlpy runs in its own virtual environment (``--d3rlpy-python``; it is not a
pexkit dependency): this script re-runs itself there in ``--worker`` mode,
which imports only numpy, torch and d3rlpy, reads the transitions from an
.npz file, trains, checks its numpy export of each Q-network against
d3rlpy's ``predict_value`` and writes the weights back. Both sides train with
one torch thread.

    python benchmarks/sequential_d3rlpy.py --d3rlpy-python /tmp/d3venv/bin/python

Writes benchmarks/results/sequential-d3rlpy-latest.json (with ``--schedule
constant``: sequential-d3rlpy-constant-latest.json) and prints a table.
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


def forward(layers: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray) -> np.ndarray:
    h = X
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


# ------------------------------------------------------------------ d3rlpy side
def worker(args: argparse.Namespace) -> None:
    """Train d3rlpy's DiscreteCQL and DoubleDQN (runs in the d3rlpy virtual environment)."""
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
    out: dict[str, Any] = {
        "d3rlpy": d3rlpy.__version__,
        "torch": torch.__version__,
        "transitions": int(dataset.transition_count),
    }
    arrays: dict[str, np.ndarray] = {}
    for name in ("ddqn", "cql"):
        common = {
            "batch_size": cfg["batch_size"],
            "gamma": cfg["gamma"],
            "learning_rate": cfg["learning_rate"],
            "target_update_interval": cfg["target_update"],
            "encoder_factory": d3rlpy.models.VectorEncoderFactory(
                hidden_units=list(cfg["hidden"]), activation="relu"
            ),
        }
        if cfg["schedule"] == "cosine":  # the step size anneals to 0, as pexkit's does
            common["optim_factory"] = d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=cfg["steps"])
            )
        config = (
            d3rlpy.algos.DiscreteCQLConfig(alpha=cfg["alpha"], **common)
            if name == "cql"
            else d3rlpy.algos.DoubleDQNConfig(**common)
        )
        d3rlpy.seed(cfg["seed"])
        algo = config.create(device="cpu:0")
        start = time.perf_counter()
        algo.fit(
            dataset,
            n_steps=cfg["steps"],
            n_steps_per_epoch=cfg["steps"],
            show_progress=False,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
            save_interval=10**9,
        )
        seconds = time.perf_counter() - start
        q_func = algo.impl.modules.q_funcs[0]  # type: ignore[union-attr]
        linears = [m for m in q_func.modules() if isinstance(m, torch.nn.Linear)]
        layers = [
            (m.weight.detach().double().numpy().T.copy(), m.bias.detach().double().numpy().copy())
            for m in linears
        ]
        obs = data["observations"][:5000]
        mine = forward(layers, obs.astype(np.float64))
        theirs = np.column_stack(
            [
                algo.predict_value(obs, np.full(len(obs), a, dtype=np.int64))
                for a in range(n_actions)
            ]
        )
        out[name] = {
            "fit_seconds": seconds,
            "export_max_abs_diff": float(np.abs(mine - theirs).max()),
        }
        for i, (W, b) in enumerate(layers):
            arrays[f"{name}_W{i}"] = W
            arrays[f"{name}_b{i}"] = b
        print(f"d3rlpy {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    np.savez(args.weights, **arrays)
    Path(args.report).write_text(json.dumps(out))


# ------------------------------------------------------------------ pexkit side
class NumpyQPolicy:
    """Greedy policy of an exported Q-network, on the log's scaled state encoding."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], encoder: Any) -> None:
        self.layers = layers
        self.encoder = encoder

    def choose(self, states: Any) -> np.ndarray:
        q = forward(self.layers, self.encoder.transform(states, scaled=True))
        return np.asarray(np.argmax(q, axis=1), dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--d3rlpy-python", help="python of a virtual environment with d3rlpy")
    parser.add_argument("--units", type=int, default=20_000, help="users in the log")
    parser.add_argument("--eval-units", type=int, default=20_000, help="users per true value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="gradient steps (default: pexkit's choice for the log's size)",
    )
    parser.add_argument(
        "--schedule",
        choices=["cosine", "constant"],
        default="cosine",
        help="learning-rate schedule of the networks, both sides",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    # worker mode (inside the d3rlpy environment)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    from pexkit.sequential.agents import OfflineAgent
    from pexkit.simulate.sequential import simulate_notification_volume

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    sim = simulate_notification_volume(n_units=args.units, seed=args.seed)
    log = sim.log
    print(
        f"log: {log.n_decisions} decisions of {args.units} users "
        f"({time.perf_counter() - start:.1f} s)",
        flush=True,
    )

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": args.threads,
        },
        "simulator": {
            "name": "notification-volume",
            "units": args.units,
            "seed": args.seed,
            "horizon": sim.horizon,
            "gamma": sim.gamma,
            "push_cost": sim.push_cost,
            "exploration": sim.exploration,
        },
        "decisions": log.n_decisions,
        "eval": {
            "units": args.eval_units,
            "seed": 12345,
            "value": "mean over fresh users of the discounted utility sum_t gamma^t u_t",
        },
        "policies": {},
    }
    policies: dict[str, Any] = {
        "logging": sim.logging_policy,
        "always_send": sim.always(1),
        "never_send": sim.never(),
        "true_myopic": sim.true_myopic_policy(),
    }
    fit_seconds: dict[str, float] = {}

    # pexkit: the neural agents with their defaults for this log's size; d3rlpy gets the same
    neural: dict[str, Any] = {"schedule": args.schedule}
    if args.steps:
        neural["steps"] = args.steps
    for name, kwargs in (
        ("pexkit_ddqn", {"algorithm": "ddqn", **neural}),
        ("pexkit_cql", {"algorithm": "cql", **neural}),
        ("pexkit_fqi", {"algorithm": "fqi"}),
        ("pexkit_fqi_gamma0", {"algorithm": "fqi", "gamma": 0}),
    ):
        t0 = time.perf_counter()
        agent = OfflineAgent(random_state=args.seed, **kwargs).fit(log)
        fit_seconds[name] = time.perf_counter() - t0
        policies[name] = agent
        print(f"{name}: {fit_seconds[name]:.1f} s", flush=True)
    summary = policies["pexkit_cql"].summary_
    settings = {
        "hidden": list(policies["pexkit_cql"].options["hidden"]),
        "steps": summary["steps"],
        "batch_size": policies["pexkit_cql"].options["batch_size"],
        "learning_rate": policies["pexkit_cql"].options["learning_rate"],
        "schedule": policies["pexkit_cql"].options["schedule"],
        "target_update": summary["target_update"],
        "alpha": policies["pexkit_cql"].options["alpha"],
        "gamma": log.spec.gamma,
        "seed": args.seed,
    }
    results["settings"] = settings
    results["transitions"] = summary["transitions"]
    results["fqi"] = {k: policies["pexkit_fqi"].summary_[k] for k in ("iterations", "trees")}

    if args.d3rlpy_python:
        X = log.encoder.transform(log.frame, scaled=True).astype(np.float32)
        last = log.next_index < 0
        with tempfile.TemporaryDirectory() as tmp:
            npz, weights, report = (Path(tmp) / f for f in ("log.npz", "w.npz", "r.json"))
            np.savez(
                npz,
                observations=X,
                actions=log.actions.astype(np.int64),
                rewards=log.utility.astype(np.float32),
                terminals=log.done.astype(np.float32),
                timeouts=(last & ~log.done).astype(np.float32),
                n_actions=np.int64(log.n_actions),
            )
            cmd = [
                args.d3rlpy_python,
                str(Path(__file__).resolve()),
                "--worker",
                "--npz",
                str(npz),
                "--weights",
                str(weights),
                "--report",
                str(report),
                "--threads",
                str(args.threads),
                "--config",
                json.dumps(settings),
            ]
            # d3rlpy logs every epoch's metrics on stdout; errors stay on stderr
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            d3 = json.loads(report.read_text())
            stored = np.load(weights)
            for name in ("ddqn", "cql"):
                n_layers = len([k for k in stored.files if k.startswith(f"{name}_W")])
                layers = [(stored[f"{name}_W{i}"], stored[f"{name}_b{i}"]) for i in range(n_layers)]
                policies[f"d3rlpy_{name}"] = NumpyQPolicy(layers, log.encoder)
                fit_seconds[f"d3rlpy_{name}"] = d3[name]["fit_seconds"]
        results["d3rlpy"] = d3
        if d3["transitions"] != summary["transitions"]:
            raise RuntimeError(
                f"d3rlpy trained on {d3['transitions']} transitions, pexkit on "
                f"{summary['transitions']}"
            )

    for name, policy in policies.items():
        value = sim.true_value(policy, n_units=args.eval_units, seed=12345)
        row = {k: float(value.loc[k, "value"]) for k in value.index}
        row["utility_se"] = float(value.loc["utility", "se"])
        if name in fit_seconds:
            row["fit_seconds"] = round(fit_seconds[name], 2)
        results["policies"][name] = row

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.schedule == "cosine" else f"-{args.schedule}"
    path = args.out / f"sequential-d3rlpy{suffix}-latest.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\n{'policy':<20}{'utility':>9}{'se':>7}{'sessions':>10}{'pushes':>8}{'fit s':>8}")
    for name, row in results["policies"].items():
        fit = f"{row['fit_seconds']:.1f}" if "fit_seconds" in row else ""
        print(
            f"{name:<20}{row['utility']:>9.4f}{row['utility_se']:>7.4f}"
            f"{row['sessions']:>10.3f}{row['pushes']:>8.3f}{fit:>8}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
