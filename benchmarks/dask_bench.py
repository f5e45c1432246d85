"""The T-learner on a Dask LocalCluster against one process, on the same Parquet parts.

The parts are simulated and written on the workers (the client never holds the
log). Measured: wall time of reading + validating, fitting, ATEs and one
policy's DR value, a distilled policy tree and segments; the client's RSS
growth and the workers' peak RSS; the same steps in one process on the first
``--single-rows`` rows' parts (the largest log one process holds comfortably;
default: all of them), read with pandas; and, when both saw the same rows, the
answers' agreement. Writes benchmarks/results/dask-latest.json.

    .venv/bin/python benchmarks/dask_bench.py --rows 10000000 --parts 40 --single-rows 2000000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

import pexkit as px

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1}
WEIGHTS = {"y0": 1.0, "y1": 1.0, "y2": 1.0}


def write_part(i: int, n: int, root: str) -> str:
    sim = px.simulate("synthetic", n_units=n, seed=1000 + i, n_features=20)
    frame = sim.frame
    frame["unit_id"] += i * n
    path = f"{root}/part-{i:04d}.parquet"
    frame.to_parquet(path, index=False)
    return path


def rss() -> float:
    return psutil.Process().memory_info().rss / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--single-rows", type=int, default=None,
                        help="rows for the single process (default: --rows)")
    parser.add_argument("--learner", default="t", help="t, s, x, dr or auto (all four, compared "
                        "on every unit in both runs: selection_rows=None)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    spec = px.simulate("synthetic", n_units=10, seed=0, n_features=20).spec
    weights = dict.fromkeys(spec.outcome_names, 1.0)
    tmp = tempfile.mkdtemp(prefix="pexkit-dask-")
    out: dict[str, Any] = {"rows": args.rows, "parts": args.parts, "workers": args.workers,
                           "learner": args.learner,
                           "machine": f"{psutil.cpu_count()} cores", "params": PARAMS}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", host="127.0.0.1") as cluster, Client(cluster) as client:
        n = args.rows // args.parts
        client.gather(client.map(write_part, range(args.parts), n=n, root=tmp))
        size = sum(p.stat().st_size for p in Path(tmp).glob("*.parquet"))
        out["parquet_mb"] = size / 1e6
        client_before = rss()
        t0 = time.perf_counter()
        data = px.LoggedData.from_parquet(tmp, spec, cluster=client)
        t1 = time.perf_counter()
        model = px.EffectModel(learner=args.learner, base_params=PARAMS, progress=False,
                               selection_rows=None).fit(data)
        t2 = time.perf_counter()
        ate = model.ate()
        t3 = time.perf_counter()
        value = px.evaluate_policy(px.LinearPolicy(spec, weights=weights), data, model)
        t4 = time.perf_counter()
        tree = px.distill(px.LinearPolicy(spec, weights=weights), model, max_depth=2)
        t5 = time.perf_counter()
        segs = px.segments(model, max_depth=2)
        t6 = time.perf_counter()
        worker_rss = client.run(lambda: psutil.Process().memory_info().rss / 1e9)
        worker_peak = client.run(
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
        out["cluster"] = {
            "read_validate_s": t1 - t0, "fit_s": t2 - t1, "ate_s": t3 - t2,
            "evaluate_policy_s": t4 - t3, "distill_depth2_s": t5 - t4, "segments_s": t6 - t5,
            "total_s": t6 - t0,
            "client_rss_growth_gb": rss() - client_before,
            "client_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "worker_rss_gb_at_end": sorted(worker_rss.values()),
            "worker_peak_rss_gb": sorted(worker_peak.values()),
            "distilled_fidelity": tree.fidelity, "segments": len(segs),
            "chosen": model.selection_.learner.tolist(),
            "ate": ate.estimate.tolist(), "ate_se": ate.se.tolist(),
            "policy_lift": value.lift.tolist(), "policy_lift_se": value.lift_se.tolist(),
        }
        print(json.dumps(out["cluster"], indent=1), flush=True)
    if not args.skip_single:
        single_rows = args.rows if args.single_rows is None else args.single_rows
        paths = sorted(Path(tmp).glob("*.parquet"))[: max(1, single_rows // (args.rows // args.parts))]
        before = rss()
        t0 = time.perf_counter()
        frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        local = px.LoggedData.from_frame(frame, spec)
        del frame
        t1 = time.perf_counter()
        lm = px.EffectModel(learner=args.learner, base_params=PARAMS, progress=False,
                            selection_rows=None).fit(local)
        t2 = time.perf_counter()
        la = lm.ate()
        lv = px.evaluate_policy(px.LinearPolicy(spec, weights=weights), local, lm)
        t3 = time.perf_counter()
        ltree = px.distill(px.LinearPolicy(spec, weights=weights), lm, max_depth=2)
        t4 = time.perf_counter()
        px.segments(lm, max_depth=2)
        t5 = time.perf_counter()
        out["single_process"] = {
            "rows": local.n_units, "read_validate_s": t1 - t0, "fit_s": t2 - t1,
            "ate_and_policy_s": t3 - t2, "distill_depth2_s": t4 - t3, "segments_s": t5 - t4,
            "distilled_fidelity": ltree.fidelity, "total_s": t5 - t0, "rss_growth_gb": rss() - before,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "chosen": lm.selection_.learner.tolist(),
            "ate": la.estimate.tolist(), "policy_lift": lv.lift.tolist(),
        }
        same = local.n_units == args.rows
        out["agreement"] = {} if not same else {
            "ate_max_abs_diff_in_se": float(np.max(np.abs(
                np.asarray(out["cluster"]["ate"]) - la.estimate.to_numpy()) / la.se.to_numpy())),
            "lift_max_abs_diff_in_se": float(np.max(np.abs(
                np.asarray(out["cluster"]["policy_lift"]) - lv.lift) / lv.lift_se)),
        }
        print(json.dumps({k: out[k] for k in ("single_process", "agreement")}, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    name = "dask-latest.json" if args.learner == "t" else f"dask-{args.learner}-latest.json"
    (args.out / name).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
