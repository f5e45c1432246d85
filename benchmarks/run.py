"""`make bench`: pexkit against EconML, CausalML (CATE) and OBP (OPE), measured in one run.

Writes benchmarks/results/latest.json (and a dated copy). Peers run in their own
environments (.peers, .obp; see setup_peers.sh) on the same data files.

Setup (issue 2): synthetic data, 20 features, 3 treatments, 3 outcomes, LightGBM
with 100 trees (num_leaves 31, learning rate 0.1) for every learner.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import pexkit as px

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
BASE = {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_data(n: int) -> tuple[px.Simulation, Path, Path]:
    sim = px.simulate("synthetic", n_units=n, seed=0, n_features=20)
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"synthetic_{n}.parquet"
    truth = DATA / f"synthetic_{n}_truth.npy"
    sim.frame.drop(columns=["unit_id"]).to_parquet(path, index=False)
    np.save(truth, sim.true_cate()[:, 1:, :])
    return sim, path, truth


def pehe(tau: np.ndarray, sim: px.Simulation) -> list[list[float]]:
    err = tau[:, 1:, :] - sim.true_cate()[:, 1:, :]
    return np.sqrt((err**2).mean(axis=0)).tolist()


class PeakRSS:
    """The process's peak resident memory above its level at entry (sampled every 50 ms)."""

    def __enter__(self) -> PeakRSS:
        import gc
        import threading

        import psutil

        gc.collect()
        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def increment_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def run_pexkit(sim: px.Simulation, learner: str, n_folds: int) -> tuple[dict[str, Any], px.EffectModel]:
    data = sim.data  # built (validated, encoded) before the fit is measured
    log_mb = float(sim.frame.memory_usage(deep=True).sum()) / 1e6
    start = time.perf_counter()
    model = px.EffectModel(learner=learner, n_folds=n_folds, base_params=BASE, progress=False)
    with PeakRSS() as rss:
        model.fit(data)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tau = model.predict(sim.data)
    predict_seconds = time.perf_counter() - start
    out = {
        "seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "pehe": pehe(tau, sim),
        "n_folds": n_folds,
        # memory the fit adds above the log (the log's frame: log_mb), in MB and as a multiple
        "fit_peak_rss_increment_mb": rss.increment_mb,
        "log_mb": log_mb,
        "fit_peak_over_log": rss.increment_mb / log_mb,
    }
    if learner == "auto":
        out["chosen"] = model.selection_.learner.tolist()
    return out, model


def run_peers(path: Path, truth: Path, learners: list[str]) -> dict[str, Any]:
    py = ROOT / ".peers" / "bin" / "python"
    if not py.exists():
        return {"error": "peers not installed (run benchmarks/setup_peers.sh)"}
    proc = subprocess.run(
        [str(py), str(ROOT / "benchmarks" / "peers_cate.py"), "--data", str(path),
         "--truth", str(truth), "--learners", *learners],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_ope(sim: px.Simulation, model: px.EffectModel, n_policies: int) -> dict[str, Any]:
    data = sim.data
    scores = px.build_scores(data, model)
    spec = data.spec
    policy = px.LinearPolicy(spec, weights=dict.fromkeys(spec.outcome_names, 1.0))
    actions = policy.choose(model.effects_)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        value = px.evaluate_policy(actions, data, scores=scores)
        times.append(time.perf_counter() - start)
    rng = np.random.default_rng(0)
    params = np.column_stack([
        rng.uniform(0, 2, size=(n_policies, spec.n_outcomes - 1)),
        rng.normal(0, 0.3, size=(n_policies, (spec.n_treatments - 1) * spec.n_outcomes)),
    ])
    start = time.perf_counter()
    batch = px.evaluate_policies(params, data, scores=scores, tau=model.effects_)
    batch_seconds = time.perf_counter() - start
    start = time.perf_counter()
    boot = px.evaluate_policy(actions, data, scores=scores, n_bootstrap=1000)
    boot_seconds = time.perf_counter() - start
    out: dict[str, Any] = {
        "n_units": data.n_units,
        "single_policy_ms_median": 1000 * float(np.median(times)),
        "single_policy_value": value.value.tolist(),
        "single_policy_lift_ci": value.lift_ci.tolist(),
        "batch_policies": n_policies,
        "batch_seconds": batch_seconds,
        "batch_finite": bool(np.isfinite(batch.lift).all()),
        "bootstrap_1000_seconds": boot_seconds,
        "bootstrap_ci_outcome0": boot.value_ci[0].tolist(),
    }
    py = ROOT / ".obp" / "bin" / "python"
    if py.exists():
        npz = DATA / "ope.npz"
        np.savez(
            npz, mu=scores.mu[:, :, 0], action=data.treatment, reward=data.outcomes[:, 0],
            pscore=data.propensity, policy=actions,
        )
        proc = subprocess.run(
            [str(py), str(ROOT / "benchmarks" / "peers_ope.py"), "--npz", str(npz)],
            capture_output=True, text=True,
        )
        if proc.returncode == 0:
            obp = json.loads(proc.stdout.strip().splitlines()[-1])
            obp["abs_diff_vs_pexkit"] = abs(obp["value"] - float(value.value[0]))
            mine = {
                "sndr": px.evaluate_policy(actions, data, scores=scores, estimator="sndr"),
                "switch_dr_lambda_2.5": px.evaluate_policy(
                    actions, data, scores=scores, estimator=px.evaluation.SwitchDR(2.5)),
            }
            obp["others_abs_diff_vs_pexkit"] = {
                name: abs(obp["others"][name] - float(v.value[0])) for name, v in mine.items()
            }
            out["obp"] = obp
        else:
            out["obp"] = {"error": proc.stderr[-2000:]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--n-policies", type=int, default=1000)
    parser.add_argument("--all-learners-max-n", type=int, default=200_000,
                        help="fit every pexkit learner up to this size; above it only 'auto'")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": "synthetic, 20 features, 3 treatments, 3 outcomes, LightGBM 100 trees",
        "cate": {},
    }
    for n in args.sizes:
        log(f"n={n:,}: simulating")
        sim, path, truth = write_data(n)
        entry: dict[str, Any] = {"pexkit": {}, "peers": {}}
        learners = ["t", "s", "x", "dr", "auto"] if n <= args.all_learners_max_n else ["auto"]
        model = None
        for learner in learners:
            log(f"n={n:,}: pexkit {learner}")
            entry["pexkit"][learner], fitted = run_pexkit(sim, learner, 3)
            if learner == "auto":
                model = fitted
        if not args.skip_peers:
            log(f"n={n:,}: peers")
            entry["peers"] = run_peers(path, truth, ["econml:T", "econml:X", "econml:DR",
                                                     "causalml:T", "causalml:X", "causalml:DR"])
        peers = {k: v for k, v in entry["peers"].items() if isinstance(v, dict) and "pehe" in v}
        if peers:
            best_peer = np.min([v["pehe"] for v in peers.values()], axis=0)
            auto = np.asarray(entry["pexkit"]["auto"]["pehe"])
            dr_times = [v["seconds"] for k, v in peers.items() if k.endswith(":DR")]
            entry["summary"] = {
                "auto_pehe_minus_best_peer": (auto - best_peer).tolist(),
                "auto_no_worse_than_best_peer_cells": int((auto <= best_peer + 1e-12).sum()),
                "cells": int(auto.size),
                "auto_seconds": entry["pexkit"]["auto"]["seconds"],
                "fastest_peer_dr_seconds": min(dr_times) if dr_times else None,
                "ratio_to_fastest_peer_dr": (
                    entry["pexkit"]["auto"]["seconds"] / min(dr_times) if dr_times else None
                ),
            }
        results["cate"][str(n)] = entry
        if n == max(args.sizes) and model is not None:
            log(f"n={n:,}: OPE")
            results["ope"] = run_ope(sim, model, args.n_policies)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.json").write_text(json.dumps(results, indent=2))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
