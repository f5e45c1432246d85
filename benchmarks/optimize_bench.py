"""Offline policy optimization: hypervolume vs evaluations for qNParEGO, Sobol, NSGA-II.

Same DR scores for every method (notifications simulator, effects from one fit).
Writes benchmarks/results/optimize-latest.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pexkit as px

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--qnparego-budget", type=int, default=200)
    parser.add_argument("--baseline-budget", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    sim = px.simulate("notifications", n_units=args.n, seed=0)
    start = time.perf_counter()
    model = px.EffectModel(learner="t", n_folds=3, progress=False).fit(sim.data)
    fit_seconds = time.perf_counter() - start
    results: dict[str, object] = {"n_units": args.n, "effect_fit_seconds": fit_seconds, "methods": {}}
    runs = [
        ("qnparego", args.qnparego_budget),
        ("sobol", args.qnparego_budget),
        ("sobol", args.baseline_budget),
        ("nsga2", args.qnparego_budget),
        ("nsga2", args.baseline_budget),
    ]
    for method, budget in runs:
        start = time.perf_counter()
        front = px.optimize_policies(model, sim.data, method=method, budget=budget, random_state=0, progress=False)
        seconds = time.perf_counter() - start
        results["methods"][f"{method}@{budget}"] = {  # type: ignore[index]
            "seconds": seconds,
            "hypervolume": front.hypervolume(),
            "n_on_front": int(front.on_front.sum()),
            "history": front.meta["history"],
        }
        print(f"{method}@{budget}: {seconds:.1f}s, hypervolume {front.hypervolume():.5g}", flush=True)
    methods = results["methods"]  # type: ignore[assignment]
    target = methods[f"sobol@{args.baseline_budget}"]["hypervolume"]
    qn = methods[f"qnparego@{args.qnparego_budget}"]
    reached = [n for n, hv in qn["history"] if hv >= target]
    results["qnparego_reaches_sobol_2000_at"] = reached[0] if reached else None
    results["qnparego_vs_sobol2000_ratio"] = qn["hypervolume"] / target if target else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "optimize-latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "methods"}, indent=2))


if __name__ == "__main__":
    main()
