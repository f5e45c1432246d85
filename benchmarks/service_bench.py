"""Decision service: in-process decide latency, HTTP decide throughput, ingestion rate.

On this machine (2 cores), in one run:
- in-process: a launched linear policy compiled once (``pexkit.serving``), one
  decision from a feature dict (encode + all trees) p50/p99, and batch decisions/s;
  against a bare LightGBM ``predict`` on one row and, when the peers' venv exists
  (benchmarks/setup_peers.sh), EconML's ``effect()`` on one row.
- HTTP: ``pexkit serve`` on SQLite, 32 concurrent clients calling /decide, p50/p99, req/s.
- ingestion: outcome events/s through /log/batch (batches of 500) on SQLite and PostgreSQL.
Writes benchmarks/results/service-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import pexkit as px
from pexkit.serving import compile_policy
from pexkit.simulate.scenarios import NotificationsScenario
from pexkit.store.localpg import create_database, local_postgres

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-admin-key-000000"


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def in_process(n_train: int) -> dict[str, Any]:
    sim = px.simulate("notifications", n_units=n_train, seed=0)
    model = px.EffectModel(learner="auto", random_state=0, progress=False).fit(sim.data)
    policy = px.LinearPolicy(model.spec_, weights={"engagement": 1, "unsubscribe": 2, "revenue": 1})
    t0 = time.perf_counter()
    compiled = compile_policy(policy, model)
    compile_s = time.perf_counter() - t0
    frame = NotificationsScenario().features(100_000, np.random.default_rng(1))
    recs = frame.to_dict("records")
    compiled.choose_matrix(compiled.encode_records(recs[:300]))  # jit warm-up
    lat = []
    for rec in recs[:5000]:
        t0 = time.perf_counter()
        compiled.choose_matrix(compiled.encode_records([rec]))
        lat.append(time.perf_counter() - t0)
    X = compiled.matrix(frame)
    import numba

    threads = numba.get_num_threads()

    def rate(fn: Any, cores: int) -> float:
        """Decisions per second over the 100k rows, best of three (this machine is noisy)."""
        numba.set_num_threads(cores)
        fn(X[:1000])
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            fn(X)
            best = max(best, len(X) / (time.perf_counter() - t0))
        numba.set_num_threads(threads)
        return best

    batch_rate = rate(compiled.choose_matrix, threads)
    batch_rate_one_core = rate(compiled.choose_matrix, 1)
    walk_rate_one_core = rate(compiled._walk_raw, 1)
    agree = float(np.mean(compiled.choose_matrix(X[:20000]) == policy.choose(model.predict(frame.iloc[:20000]))))
    # the serving refit (one model per term on all units): its own exact policy, 1/n_folds the trees
    from pexkit.serving.refit import agreement, refit_for_serving

    serving = refit_for_serving(model)
    fast = compile_policy(policy, serving)
    refit_rate_one_core = rate(fast.choose_matrix, 1)
    refit_walk_rate_one_core = rate(fast._walk_raw, 1)
    refit_rate = rate(fast.choose_matrix, threads)
    refit_agree = agreement(policy, model, serving, frame.iloc[:20000])
    # bare LightGBM predict, one row (one of the model's boosters)
    booster = model.outcome_models_[0][0][0]
    row = X[:1]
    booster.predict(row)
    lgb_lat = []
    for _ in range(2000):
        t0 = time.perf_counter()
        booster.predict(row)
        lgb_lat.append(time.perf_counter() - t0)
    # the same policy distilled into a depth-3 tree, served through the service's path
    from pexkit.service.registry import Chooser

    tree = px.distill(policy, model, max_depth=3)
    chooser = Chooser("tree", tree.compile())
    chooser.choose_records(recs[:10])
    tree_lat = []
    for rec in recs[:5000]:
        t0 = time.perf_counter()
        chooser.choose_records([rec])
        tree_lat.append(time.perf_counter() - t0)
    Xt = tree.compile().encode(frame)
    big = np.tile(Xt, (10, 1))  # 1M rows
    tree.compile().choose_matrix(big[:1000])
    t0 = time.perf_counter()
    tree.compile().choose_matrix(big)
    tree_rate = len(big) / (time.perf_counter() - t0)
    return {
        "tree_single_decision_p50_ms": pct(tree_lat, 50) * 1e3,
        "tree_single_decision_p99_ms": pct(tree_lat, 99) * 1e3,
        "tree_batch_decisions_per_s": tree_rate,
        "tree_fidelity": tree.fidelity,
        "model": "auto, 3 folds, LightGBM 100 trees x 31 leaves, notifications 3 arms x 3 outcomes",
        "n_train": n_train, "trees_per_decision": compiled.n_trees, "compile_seconds": compile_s,
        "single_decision_p50_ms": pct(lat, 50) * 1e3, "single_decision_p99_ms": pct(lat, 99) * 1e3,
        "kernel": compiled.kernel, "batch_decisions_per_s": batch_rate,
        "batch_decisions_per_s_one_core": batch_rate_one_core,
        "walk_batch_decisions_per_s_one_core": walk_rate_one_core,
        "refit_walk_batch_decisions_per_s_one_core": refit_walk_rate_one_core,
        "refit_trees_per_decision": fast.n_trees, "refit_batch_decisions_per_s": refit_rate,
        "refit_batch_decisions_per_s_one_core": refit_rate_one_core,
        "refit_agreement_with_cross_fitted": refit_agree,
        "learners_chosen": sorted({str(v) for v in np.ravel(model.chosen_) if v is not None}),
        "agreement_with_predict_path": agree,
        "lightgbm_one_row_predict_p50_ms": pct(lgb_lat, 50) * 1e3,
        "lightgbm_one_row_predict_p99_ms": pct(lgb_lat, 99) * 1e3,
    }


ECONML = """
import time, numpy as np
from econml.dr import DRLearner
from lightgbm import LGBMRegressor, LGBMClassifier
rng = np.random.default_rng(0); n = 6000
X = rng.normal(size=(n, 10)); T = rng.integers(0, 3, n); y = X[:, 0] * (T == 1) + rng.normal(size=n)
est = DRLearner(model_regression=LGBMRegressor(verbose=-1), model_propensity=LGBMClassifier(verbose=-1),
                model_final=LGBMRegressor(verbose=-1), cv=3, random_state=0).fit(y, T, X=X)
est.effect(X[:1]); lat = []
for i in range(300):
    t0 = time.perf_counter(); est.effect(X[i:i + 1]); lat.append(time.perf_counter() - t0)
print(float(np.percentile(lat, 50)) * 1e3, float(np.percentile(lat, 99)) * 1e3)
"""


def econml_effect() -> dict[str, Any] | None:
    py = ROOT / ".peers" / "bin" / "python"
    if not py.exists():
        return None
    out = subprocess.run([str(py), "-c", ECONML], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    p50, p99 = map(float, out.stdout.split()[-2:])
    return {"econml_dr_effect_one_row_p50_ms": p50, "econml_dr_effect_one_row_p99_ms": p99}


class Server:
    def __init__(self, db: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PEXKIT_ADMIN_KEY": KEY}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pexkit.cli.main", "serve", "--db", db, "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                httpx.get(f"{self.url}/v1/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def http_bench(db: str, port: int, n_decide: int, n_events: int) -> dict[str, Any]:
    srv = Server(db, port)
    try:
        api = px.Client(srv.url, KEY)
        spec = px.simulate("notifications", n_units=10, seed=0).spec.to_dict()
        spec["name"] = "bench"
        api.create_experiment(spec)
        recs = NotificationsScenario().features(n_decide, np.random.default_rng(2)).to_dict("records")
        clients = [px.Client(srv.url, KEY) for _ in range(32)]

        def one(i: int) -> float:
            t0 = time.perf_counter()
            clients[i % 32].decide("bench", f"u{i}", recs[i])
            return time.perf_counter() - t0

        with ThreadPoolExecutor(32) as pool:
            t0 = time.perf_counter()
            lat = list(pool.map(one, range(n_decide)))
            wall = time.perf_counter() - t0
        events = [{"unit": f"u{i % n_decide}", "outcome": "engagement", "value": 1.0,
                   "event_id": f"e{i}"} for i in range(n_events)]
        t0 = time.perf_counter()
        for j in range(0, n_events, 500):
            api.log_batch("bench", events[j:j + 500])
        ingest = n_events / (time.perf_counter() - t0)
        for c in [api, *clients]:
            c.close()
        return {"decide_requests": n_decide, "decide_concurrency": 32,
                "decide_req_per_s": n_decide / wall, "decide_p50_ms": pct(lat, 50) * 1e3,
                "decide_p99_ms": pct(lat, 99) * 1e3, "events": n_events,
                "ingest_events_per_s": ingest, "batch_size": 500}
    finally:
        srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-decide", type=int, default=4000)
    parser.add_argument("--n-events", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    res: dict[str, Any] = {"machine": f"{os.cpu_count()} cores"}
    res["in_process"] = in_process(args.n_train)
    print(json.dumps(res["in_process"], indent=2))
    res["peers"] = econml_effect()
    print(json.dumps(res["peers"], indent=2))
    with tempfile.TemporaryDirectory() as tmp:
        res["http_sqlite"] = http_bench(f"sqlite:///{tmp}/bench.db", 8791, args.n_decide, args.n_events)
        print("sqlite", json.dumps(res["http_sqlite"], indent=2))
    with local_postgres() as prefix:
        res["http_postgresql"] = http_bench(create_database(prefix), 8792, args.n_decide, args.n_events)
        print("postgresql", json.dumps(res["http_postgresql"], indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service-latest.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
