"""Policy trees: fit time, and batch decision throughput of a distilled policy.

Fit: synthetic rewards on ROWS x 20 standard-normal features x 3 treatments
(reward of treatment 1 = x0 + noise, of treatment 2 = x1 * x2 + noise, control
0), depth 2 (exhaustive) and depth 3 (greedy below the exhaustive top two).

Serving: a LinearPolicy on the notifications simulator (10 features, two of them
categorical) distilled to depth 3 from a 20,000-unit T-learner fit, then
ROWS fresh units decided four ways: the plain PolicyTree.choose on the encoded
matrix (every feature, EffectModel._matrix), the compiled tree on the float64
and on a float32 copy of that matrix, and end to end from the DataFrame (one
encoding pass over the features the tree uses, then the compiled tree).
Times are the best of --repeats after one warm-up call (JIT compile excluded and
reported separately).

Writes DIR/explain-latest.json and prints a table. Quick run:
    python benchmarks/explain_bench.py --rows 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import pexkit as px
from pexkit.explain import distill, fit_policy_tree

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def bench_fit(rows: int, depths: list[int], repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 20))
    rewards = np.column_stack([
        np.zeros(rows), X[:, 0] + rng.normal(size=rows), X[:, 1] * X[:, 2] + rng.normal(size=rows)
    ])
    out = []
    for depth in depths:
        seconds, tree = best_of(lambda d=depth: fit_policy_tree(X, rewards, depth=d), repeats)
        out.append({
            "rows": rows, "features": 20, "treatments": 3, "depth": depth,
            "seconds": seconds, "reward_per_unit": tree.reward / rows,
        })
        print(f"  fit rows={rows:,} depth={depth}: {seconds:.3f}s", flush=True)
    return out


def bench_serve(rows: int, repeats: int) -> dict[str, Any]:
    sim = px.simulate("notifications", n_units=20_000, seed=0)
    model = px.EffectModel(
        learner="t", n_folds=2, base_params={"n_estimators": 30, "num_leaves": 15}, progress=False
    ).fit(sim.data)
    policy = px.LinearPolicy(sim.spec, {"engagement": 1.0, "unsubscribe": 2.0, "revenue": 0.5})
    distilled = distill(policy, model, max_depth=3)
    compiled = distilled.compile()
    frame = px.simulate("notifications", n_units=rows, seed=1).frame
    start = time.perf_counter()
    compiled.choose(frame.head(10))
    jit = time.perf_counter() - start
    X64 = model._matrix(frame)  # every feature, as EffectModel encodes them
    X32 = X64.astype(np.float32)
    compiled.choose_matrix(X32[:10])
    full_encode_s, _ = best_of(lambda: model._matrix(frame), repeats)
    encode_s, _ = best_of(lambda: compiled.encode(frame), repeats)
    plain_s, plain = best_of(lambda: distilled.tree.choose(X64), repeats)
    c64_s, fast64 = best_of(lambda: compiled.choose_matrix(X64), repeats)
    c32_s, fast32 = best_of(lambda: compiled.choose_matrix(X32), repeats)
    e2e_s, e2e = best_of(lambda: compiled.choose(frame), repeats)
    per_s = {
        "plain_tree_on_matrix": rows / plain_s,
        "compiled_float64_matrix": rows / c64_s,
        "compiled_float32_matrix": rows / c32_s,
        "end_to_end_from_dataframe": rows / e2e_s,
    }
    return {
        "rows": rows,
        "features": len(sim.spec.features),
        "tree_depth": distilled.tree.depth,
        "jit_first_call_seconds": jit,
        "features_used": compiled.features,
        "seconds": {
            "encode_all_features": full_encode_s,
            "encode_used_features": encode_s, "plain_tree_on_matrix": plain_s,
            "compiled_float64_matrix": c64_s, "compiled_float32_matrix": c32_s,
            "end_to_end_from_dataframe": e2e_s,
        },
        "decisions_per_second": per_s,
        "identical_actions": bool(
            np.array_equal(plain, fast64) and np.array_equal(plain, e2e)
            and np.array_equal(distilled.tree.choose(X32.astype(np.float64)), fast32)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()
    # JIT warm-up on tiny data, so fit times measure the search, not the compiler
    start = time.perf_counter()
    warm = np.random.default_rng(1)
    for depth in (1, 2, 3):
        fit_policy_tree(warm.normal(size=(200, 3)), warm.normal(size=(200, 3)), depth=depth)
    warmup = time.perf_counter() - start
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__,
            "numba_threads": numba.get_num_threads(),
        },
        "repeats": args.repeats,
        "jit_warmup_seconds": warmup,
        "policy_tree_fit": [],
        "serving": [],
    }
    for rows in args.rows:
        print(f"rows={rows:,}", flush=True)
        # depth 2 (exhaustive) and greedy depth 3 at every size; one repeat from 1M rows on
        results["policy_tree_fit"] += bench_fit(rows, [2, 3], args.repeats if rows < 1_000_000 else 1)
        if not args.skip_serving:
            serve = bench_serve(rows, args.repeats)
            results["serving"].append(serve)
            print(f"  serve rows={rows:,}: {serve['decisions_per_second']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "explain-latest.json"
    path.write_text(json.dumps(results, indent=2))

    print()
    print(f"{'policy tree fit':<34}{'rows':>12}{'depth':>7}{'seconds':>10}")
    for r in results["policy_tree_fit"]:
        print(f"{'20 features x 3 treatments':<34}{r['rows']:>12,}{r['depth']:>7}{r['seconds']:>10.3f}")
    if results["serving"]:
        print()
        print(f"{'distilled policy, batch':<34}{'rows':>12}{'seconds':>10}{'decisions/s':>16}")
        for s in results["serving"]:
            for name, rate in s["decisions_per_second"].items():
                print(f"{name:<34}{s['rows']:>12,}{s['seconds'][name]:>10.4f}{rate:>16,.0f}")
            for part in ("encode_used_features", "encode_all_features"):
                print(f"{'  (' + part + ')':<34}{s['rows']:>12,}{s['seconds'][part]:>10.4f}")
            print(f"{'  identical actions':<34}{str(s['identical_actions']):>12}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
