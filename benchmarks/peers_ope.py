"""OBP's DoublyRobust on the same reward-model predictions pexkit uses. Runs inside .obp."""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--npz", required=True)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    from obp.ope import DoublyRobust, SelfNormalizedDoublyRobust, SwitchDoublyRobust

    d = np.load(args.npz)
    n, K = d["mu"].shape
    action_dist = np.zeros((n, K, 1))
    action_dist[np.arange(n), d["policy"], 0] = 1.0
    kwargs = dict(
        reward=d["reward"], action=d["action"], pscore=d["pscore"], action_dist=action_dist,
        estimated_rewards_by_reg_model=d["mu"][:, :, None],
    )
    dr = DoublyRobust()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        value = dr.estimate_policy_value(**kwargs)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    interval = dr.estimate_interval(**kwargs, n_bootstrap_samples=args.bootstrap, random_state=0)
    ci_seconds = time.perf_counter() - start
    others = {
        "sndr": float(SelfNormalizedDoublyRobust().estimate_policy_value(**kwargs)),
        "switch_dr_lambda_2.5": float(
            SwitchDoublyRobust(lambda_=2.5).estimate_policy_value(**kwargs)),
    }
    print(json.dumps({
        "value": float(value),
        "others": others,
        "seconds_median": float(np.median(times)),
        "ci_seconds": ci_seconds,
        "ci_bootstrap_samples": args.bootstrap,
        "ci": [float(interval["95.0% CI (lower)"]), float(interval["95.0% CI (upper)"])],
    }))


if __name__ == "__main__":
    main()
