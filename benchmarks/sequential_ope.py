"""Off-policy evaluation of sequences against the simulator's truth: coverage, bias and RMSE.

For fixed policies (not learned on the evaluated log) on the notification-volume
simulator, over many seeded logs: each estimator's 95% CI coverage of the true
value (Monte Carlo rollouts), its bias and RMSE, as the logging policy moves
away from the evaluated one (the logging policy is a mixture: ``lam`` of the
simulator's own logging policy and ``1 - lam`` of the evaluated policy with
10% exploration). Writes benchmarks/results/sequential-ope-latest.json.

    python benchmarks/sequential_ope.py --seeds 30 --users 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import pexkit as px
from pexkit.sequential.policy import action_probabilities
from pexkit.simulate.sequential import threshold_rule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    ap.add_argument("--name", default="sequential-ope-latest.json", help="result file name")
    ap.add_argument(
        "--lams", default="0.25,1.0", help="mixture weights of the simulator's logging policy"
    )
    ap.add_argument("--estimators", default="pdis,wpdis,smis,dr,fqe")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    target = threshold_rule(1.0, 3, max_activity=0.3)
    base = px.simulate("notification-volume", n_units=10, seed=0)
    truth = base.true_value(target, n_units=200_000, seed=999)["value"]
    w = np.asarray(base.spec.utility_weights)
    names = [*base.spec.reward_names, "utility"]
    results: list[dict[str, Any]] = []
    for lam in (float(x) for x in args.lams.split(",")):

        def logging(states: pd.DataFrame, lam: float = lam) -> np.ndarray:
            own = base.logging_policy(states)
            tgt = action_probabilities(target, states, 2, epsilon=0.1)
            return lam * own + (1 - lam) * tgt

        for est in args.estimators.split(","):
            rows = []
            t0 = time.time()
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                sim = px.simulate(
                    "notification-volume", n_units=args.users, seed=seed, logging_policy=logging
                )
                v = px.evaluate_sequential(target, sim.log, est, random_state=seed, n_bootstrap=200)
                rows.append((v.value, v.ci_low, v.ci_high, v.ess))
            secs = (time.time() - t0) / args.seeds
            val = np.array([r[0] for r in rows])
            lo = np.array([r[1] for r in rows])
            hi = np.array([r[2] for r in rows])
            tv = truth.reindex(names).to_numpy()
            cover = ((lo <= tv) & (tv <= hi)).mean(axis=0)
            bias = (val - tv).mean(axis=0)
            rmse = np.sqrt(((val - tv) ** 2).mean(axis=0))
            rec = {
                "lam": lam,
                "estimator": est,
                "seeds": args.seeds,
                "first_seed": args.first_seed,
                "users": args.users,
                "seconds_per_estimate": secs,
                "ess": float(np.mean([r[3] for r in rows])),
                "truth": dict(zip(names, tv.tolist(), strict=True)),
                "coverage": dict(zip(names, cover.tolist(), strict=True)),
                "bias": dict(zip(names, bias.tolist(), strict=True)),
                "rmse": dict(zip(names, rmse.tolist(), strict=True)),
            }
            results.append(rec)
            print(
                f"lam={lam:<5} {est:6s} utility: cover {cover[-1]:.2f} bias {bias[-1]:+.4f} "
                f"rmse {rmse[-1]:.4f}  ESS {rec['ess']:.0f}  {secs:.2f} s/estimate",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "sequential-ope",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "policy": "threshold rule: fatigue <= 1, days_since_visit >= 3, activity <= 0.3",
        "utility_weights": w.tolist(),
        "results": results,
    }
    (out / args.name).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
