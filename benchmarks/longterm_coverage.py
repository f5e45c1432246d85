"""The surrogate index's long-term ATE against processes whose long-term effects are known.

Over many seeds, each with its own history (long-term outcome observed) and its own
new experiment (long-term outcome not observed yet), for each non-control arm:

- ``index``: ``SurrogateIndex(...).fit(history).ate(experiment, n_bootstrap=20)``:
  coverage of the true long-term ATE by the 95% CI, mean bias, mean CI width, mean
  ``se_sampling`` and ``se_index``;
- ``index_sampling_only``: the same estimate with the sampling SE alone (what the
  index's refit error adds to the CI);
- ``wait_90_days``: the difference in means of the long-term outcome itself on the
  same experiment (as if it had been observed), its coverage and CI width, and the
  ratio of the index's CI width to it;
- ``violated``: the same process with a direct effect of ``heavy`` on the long-term
  outcome that no surrogate shows (``direct=0.3``): coverage for heavy collapses,
  and the surrogacy check on the history (``diagnostics()["arms"][...]["surrogacy_ok"]``)
  flags it in some share of seeds;
- ``notifications``: the built-in simulator (``px.simulate("notifications")``), whose
  ``retention_90d`` has a hidden tenure-driven path: index fitted on one cohort,
  estimated on another; coverage, bias and the share of seeds flagged per arm;
- ``downstream``: on the surrogacy-holds process (the same history/experiment pairs
  and index as ``index``), the index as an outcome of the experiment
  (``transform(experiment, n_bootstrap=20)``) and an ``EffectModel`` (T-learner,
  2 folds, 60 trees) fitted on it: coverage of the true long-term ATE by
  ``model.ate()``'s 95% CI for ``retention~``, bias and width; the same on
  ``transform(..., n_bootstrap=0)`` (sampling error only: what the index's refit
  error adds); and the all-heavy policy's lift on ``retention~`` by
  ``evaluate_policy(np.full(n, 2), data, model)`` against the true heavy ATE (with
  its ``extra["lift_se_outcome_model"]``).

Every coverage comes with its Wilson 95% interval (binomial, over seeds).

    python benchmarks/longterm_coverage.py --out benchmarks/results
    python benchmarks/longterm_coverage.py --quick   # 5 seeds, smoke test

Writes benchmarks/results/longterm-coverage-latest.json and a dated copy
(longterm-coverage-<UTC stamp>.json).
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
import pandas as pd
from scipy import stats

import pexkit as px
from pexkit.longterm import SurrogateIndex

ROOT = Path(__file__).resolve().parents[1]
Z = float(stats.norm.ppf(0.975))

# ---------------------------------------------------------------------------
# The process of tests/longterm/test_surrogate.py (copied, not imported): retention
# follows the realized clicks and unsubscribes (surrogacy), plus ``direct`` for heavy.
ARMS = ["control", "light", "heavy"]
SPEC = px.ExperimentSpec(
    treatment="arm", arms=ARMS, numeric=["x1", "x2", "x3"], categorical=["seg"],
    outcomes=[{"name": "clicks", "goal": "maximize", "weight": 1.0},
              {"name": "unsub", "goal": "minimize", "weight": 1.0},
              {"name": "retention", "goal": "maximize", "weight": 0.0}],
)
# the new experiment's spec: short-term outcomes only (its long-term outcome is not observed yet)
SHORT = px.ExperimentSpec.from_dict({**SPEC.to_dict(), "outcomes": SPEC.to_dict()["outcomes"][:2]})


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _means(x: pd.DataFrame, arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x1, x2 = x["x1"].to_numpy(), x["x2"].to_numpy()
    seg = (x["seg"] == "b").to_numpy()
    light, heavy = arm == 1, arm == 2
    clicks = x1 + light * (0.4 + 0.3 * x2) + heavy * (0.8 + 0.5 * x2 - 0.4 * seg)
    p_unsub = _sigmoid(-2.0 + 0.5 * light + 1.2 * heavy + 0.6 * seg)
    return clicks, p_unsub


def _draw(n: int, seed: int, direct: float = 0.0) -> pd.DataFrame:
    """Retention follows the realized clicks and unsubscribes (surrogacy), plus
    ``direct`` for heavy (a path the surrogates do not see)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "x3": rng.normal(size=n), "seg": rng.choice(["a", "b"], n)})
    arm = rng.permutation(np.arange(n) % 3)  # complete randomization: equal arms
    clicks_mu, p_unsub = _means(x, arm)
    clicks = clicks_mu + rng.normal(0, 1.0, n)
    unsub = (rng.random(n) < p_unsub).astype(float)
    retention = (0.5 + 0.3 * clicks - 1.0 * unsub + 0.2 * x["x2"].to_numpy()
                 + direct * (arm == 2) + rng.normal(0, 0.5, n))
    return x.assign(arm=np.array(ARMS)[arm], clicks=clicks, unsub=unsub, retention=retention)


def _true_ate(direct: float = 0.0) -> np.ndarray:
    """E[retention(k) - retention(control)] by the means over a large draw."""
    x = _draw(400_000, 999)
    out = []
    c0, u0 = _means(x, np.zeros(len(x), dtype=int))
    for k in (1, 2):
        ck, uk = _means(x, np.full(len(x), k))
        out.append(float(np.mean(0.3 * (ck - c0) - 1.0 * (uk - u0))) + (direct if k == 2 else 0.0))
    return np.asarray(out)


# ---------------------------------------------------------------------------
def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def git_state() -> dict[str, Any]:
    """HEAD and the uncommitted files of the code measured (src/pexkit/longterm)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    dirty = git("status", "--porcelain", "--", "src/pexkit/longterm").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_longterm": [d[3:] for d in dirty]}


def wilson(hits: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a binomial proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    denom = 1 + Z**2 / n
    centre = (p + Z**2 / (2 * n)) / denom
    half = Z * np.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / denom
    return float(centre - half), float(centre + half)


def diff_in_means(y: np.ndarray, arm: np.ndarray, k: int) -> tuple[float, float]:
    """Arm k minus control on y, and its Neyman standard error."""
    yk, y0 = y[arm == k], y[arm == 0]
    se = np.sqrt(yk.var(ddof=1) / yk.size + y0.var(ddof=1) / y0.size)
    return float(yk.mean() - y0.mean()), float(se)


def one_seed(history: px.LoggedData, experiment: px.LoggedData, long_term: np.ndarray,
             arm_idx: np.ndarray, target: str, surrogates: list[str], rounds: int,
             n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Fit on the history, estimate on the experiment; the wait-90-days answer beside it."""
    index = SurrogateIndex(target, surrogates=surrogates, rounds=rounds,
                           random_state=seed).fit(history)
    ate = index.ate(experiment, n_bootstrap=n_bootstrap)
    diag = index.diagnostics()
    flags = {row["treatment"]: bool(row["surrogacy_ok"]) for row in diag["arms"]}
    arms = list(experiment.spec.arms)
    rows = {}
    for k, name in enumerate(arms[1:], start=1):
        r = ate.set_index("treatment").loc[name]
        wait, wait_se = diff_in_means(long_term, arm_idx, k)
        rows[name] = {"estimate": float(r["estimate"]), "se": float(r["se"]),
                      "se_sampling": float(r["se_sampling"]), "se_index": float(r["se_index"]),
                      "wait": wait, "wait_se": wait_se, "surrogacy_ok": flags[name]}
    return {"r2": float(diag["r2"]), "arms": rows}


def summarize(runs: list[dict[str, Any]], truth: dict[str, float]) -> dict[str, Any]:
    """Per arm: coverage (with Wilson intervals), bias, widths, SEs, flags, over seeds."""
    n = len(runs)
    out: dict[str, Any] = {"seeds": n, "r2_mean": float(np.mean([r["r2"] for r in runs])),
                           "arms": {}}
    for name, tv in truth.items():
        est = np.array([r["arms"][name]["estimate"] for r in runs])
        se = np.array([r["arms"][name]["se"] for r in runs])
        se_s = np.array([r["arms"][name]["se_sampling"] for r in runs])
        se_i = np.array([r["arms"][name]["se_index"] for r in runs])
        wait = np.array([r["arms"][name]["wait"] for r in runs])
        wait_se = np.array([r["arms"][name]["wait_se"] for r in runs])
        ok = np.array([r["arms"][name]["surrogacy_ok"] for r in runs])

        def cover(centre: np.ndarray, half: np.ndarray, tv: float = tv) -> dict[str, Any]:
            hits = int(((centre - half <= tv) & (tv <= centre + half)).sum())
            lo, hi = wilson(hits, n)
            return {"coverage": hits / n, "hits": hits, "wilson_low": lo, "wilson_high": hi}

        width = 2 * Z * se
        wait_width = 2 * Z * wait_se
        out["arms"][name] = {
            "truth": tv,
            "index": {
                **cover(est, Z * se),
                "bias": float((est - tv).mean()),
                "rmse": float(np.sqrt(((est - tv) ** 2).mean())),
                "ci_width": float(width.mean()),
                "se": float(se.mean()),
                "se_sampling": float(se_s.mean()),
                "se_index": float(se_i.mean()),
                "sd_of_estimates": float(est.std(ddof=1)) if n > 1 else float("nan"),
            },
            "index_sampling_only": {
                **cover(est, Z * se_s),
                "ci_width": float((2 * Z * se_s).mean()),
            },
            "wait_90_days": {
                **cover(wait, Z * wait_se),
                "bias": float((wait - tv).mean()),
                "ci_width": float(wait_width.mean()),
                "sd_of_estimates": float(wait.std(ddof=1)) if n > 1 else float("nan"),
            },
            "width_ratio_index_vs_wait": float(width.mean() / wait_width.mean()),
            "surrogacy_flagged_share": float((~ok).mean()),
            "surrogacy_flagged": int((~ok).sum()),
        }
    return out


def _pair(seed: int, n: int, direct: float) -> tuple[px.LoggedData, pd.DataFrame, px.LoggedData]:
    """Seed ``seed``'s history (2s), experiment frame and experiment log (2s+1, no retention)."""
    history = px.LoggedData.from_frame(_draw(n, 2 * seed, direct), SPEC)
    frame = _draw(n, 2 * seed + 1, direct)
    experiment = px.LoggedData.from_frame(frame.drop(columns=["retention"]), SHORT)
    return history, frame, experiment


def run_process(seeds: list[int], direct: float, args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for seed in seeds:
        history, frame, experiment = _pair(seed, args.n, direct)
        arm_idx = frame["arm"].map({a: i for i, a in enumerate(ARMS)}).to_numpy()
        runs.append(one_seed(history, experiment, frame["retention"].to_numpy(), arm_idx,
                             "retention", ["clicks", "unsub"], args.rounds, args.n_bootstrap,
                             seed))
    return runs


# ---------------------------------------------------------------------------
# downstream: the index as an outcome of the experiment, through EffectModel and evaluate_policy
HEAVY = ARMS.index("heavy")


def _effect_model(seed: int) -> px.EffectModel:
    return px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 60},
                          progress=False, random_state=seed)


def one_downstream(index: SurrogateIndex, experiment: px.LoggedData, n_bootstrap: int,
                   seed: int) -> dict[str, Any]:
    """EffectModel.ate and the all-heavy policy's lift on the index, with and without its refits."""
    out: dict[str, Any] = {}
    for label, boot in (("refit", n_bootstrap), ("sampling_only", 0)):
        data = index.transform(experiment, n_bootstrap=boot)
        model = _effect_model(seed).fit(data)
        ate = model.ate()
        ate = ate[ate["outcome"] == index.name].set_index("treatment")
        pol = px.evaluate_policy(np.full(data.n_units, HEAVY), data, model)
        p = pol[index.name]
        out[label] = {
            "arms": {name: {k: float(ate.loc[name, k]) for k in ("estimate", "se", "ci_low", "ci_high")}
                     for name in ARMS[1:]},
            "policy": {"lift": p["lift"], "lift_se": p["lift_se"], "ci_low": p["lift_ci_low"],
                       "ci_high": p["lift_ci_high"],
                       "lift_se_outcome_model": float(
                           pol.extra.get("lift_se_outcome_model", {}).get(index.name, 0.0))},
        }
    return out


def run_downstream(seeds: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Case ``surrogacy``'s pairs and index (same seeds, refitted), then the models downstream."""
    runs = []
    for seed in seeds:
        history, _, experiment = _pair(seed, args.n, 0.0)
        index = SurrogateIndex("retention", surrogates=["clicks", "unsub"], rounds=args.rounds,
                               random_state=seed).fit(history)
        runs.append(one_downstream(index, experiment, args.n_bootstrap, seed))
    return runs


def _cover_ci(lo: np.ndarray, hi: np.ndarray, tv: float) -> dict[str, Any]:
    hits = int(((lo <= tv) & (tv <= hi)).sum())
    w_lo, w_hi = wilson(hits, lo.size)
    return {"coverage": hits / lo.size, "hits": hits, "wilson_low": w_lo, "wilson_high": w_hi}


def summarize_downstream(runs: list[dict[str, Any]], truth: dict[str, float]) -> dict[str, Any]:
    """Per arm (EffectModel.ate) and for the all-heavy policy: coverage, bias, widths, SEs."""
    def block(rows: list[dict[str, float]], tv: float, est_key: str, se_key: str
              ) -> dict[str, Any]:
        est = np.array([r[est_key] for r in rows])
        se = np.array([r[se_key] for r in rows])
        lo = np.array([r["ci_low"] for r in rows])
        hi = np.array([r["ci_high"] for r in rows])
        return {**_cover_ci(lo, hi, tv), "bias": float((est - tv).mean()),
                "rmse": float(np.sqrt(((est - tv) ** 2).mean())),
                "ci_width": float((hi - lo).mean()), "se": float(se.mean()),
                "sd_of_estimates": float(est.std(ddof=1)) if len(rows) > 1 else float("nan")}

    out: dict[str, Any] = {"seeds": len(runs), "arms": {}}
    for name, tv in truth.items():
        full = block([r["refit"]["arms"][name] for r in runs], tv, "estimate", "se")
        samp = block([r["sampling_only"]["arms"][name] for r in runs], tv, "estimate", "se")
        out["arms"][name] = {"truth": tv, "effect_model": full,
                             "effect_model_sampling_only": samp,
                             "width_ratio_refit_vs_sampling": full["ci_width"] / samp["ci_width"]}
    tv = truth["heavy"]
    full = block([r["refit"]["policy"] for r in runs], tv, "lift", "lift_se")
    full["lift_se_outcome_model"] = float(np.mean(
        [r["refit"]["policy"]["lift_se_outcome_model"] for r in runs]))
    samp = block([r["sampling_only"]["policy"] for r in runs], tv, "lift", "lift_se")
    out["policy_all_heavy"] = {"truth": tv, "evaluate_policy": full,
                               "evaluate_policy_sampling_only": samp}
    return out


NOTIF_SURROGATES = ["engagement", "unsubscribe", "revenue"]


def notifications_truth(n: int = 400_000, seed: int = 999) -> dict[str, float]:
    """Population ATE of retention_90d per arm, by the true means over a large draw."""
    sim = px.simulate("notifications", n_units=n, seed=seed)
    m = sim.all_outcomes.index("retention_90d")
    mu = sim.true_means[:, :, m]
    return {arm: float((mu[:, k] - mu[:, 0]).mean())
            for k, arm in enumerate(sim.spec.arms) if k > 0}


def run_notifications(seeds: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for seed in seeds:
        old = px.simulate("notifications", n_units=args.notif_units, seed=10_000 + 2 * seed)
        new = px.simulate("notifications", n_units=args.notif_units, seed=10_000 + 2 * seed + 1)
        history = px.LoggedData.from_frame(old.frame, old.analysis_spec())
        # the new experiment: short-term outcomes only (new.spec), retention not yet observed
        experiment = px.LoggedData.from_frame(new.frame.drop(columns=["retention_90d"]), new.spec)
        arm_idx = new.frame["arm"].map({a: i for i, a in enumerate(new.spec.arms)}).to_numpy()
        runs.append(one_seed(history, experiment, new.frame["retention_90d"].to_numpy(), arm_idx,
                             "retention_90d", NOTIF_SURROGATES, args.rounds, args.n_bootstrap,
                             seed))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    ap.add_argument("--quick", action="store_true", help="5 seeds (smoke test)")
    ap.add_argument("--n", type=int, default=3000, help="units per history and per experiment")
    ap.add_argument("--notif-units", type=int, default=4000,
                    help="units per cohort in the notifications case")
    ap.add_argument("--direct", type=float, default=0.3, help="heavy's direct effect (violated)")
    ap.add_argument("--rounds", type=int, default=100, help="LightGBM trees of the index")
    ap.add_argument("--n-bootstrap", type=int, default=20, help="index refits in ate()")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    n_seeds = 5 if args.quick else args.seeds
    seeds = list(range(args.first_seed, args.first_seed + n_seeds))

    t_all = time.perf_counter()
    times: dict[str, float] = {}
    truths = {
        "surrogacy": dict(zip(ARMS[1:], _true_ate().tolist(), strict=True)),
        "violated": dict(zip(ARMS[1:], _true_ate(args.direct).tolist(), strict=True)),
        "notifications": notifications_truth(),
    }
    cases: dict[str, Any] = {}
    for case in ("surrogacy", "violated", "notifications"):
        say(f"{case}: {n_seeds} seeds")
        t0 = time.perf_counter()
        if case == "notifications":
            runs = run_notifications(seeds, args)
        else:
            runs = run_process(seeds, args.direct if case == "violated" else 0.0, args)
        times[case] = time.perf_counter() - t0
        cases[case] = summarize(runs, truths[case])
        cases[case]["seconds"] = round(times[case], 1)
    say(f"downstream: {n_seeds} seeds")
    t0 = time.perf_counter()
    downstream = summarize_downstream(run_downstream(seeds, args), truths["surrogacy"])
    times["downstream"] = time.perf_counter() - t0
    downstream["seconds"] = round(times["downstream"], 1)
    times["total"] = time.perf_counter() - t_all

    results = {
        "benchmark": "longterm-coverage",
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": {
            "seeds": n_seeds, "first_seed": args.first_seed, "quick": args.quick,
            "n_history": args.n, "n_experiment": args.n, "direct": args.direct,
            "notifications_units_per_cohort": args.notif_units, "rounds": args.rounds,
            "n_bootstrap": args.n_bootstrap, "ci_level": 0.95,
            "coverage_interval": "Wilson 95% over seeds",
            "process": "tests/longterm/test_surrogate.py _draw (history seed 2s, experiment "
                       "2s+1); surrogates clicks, unsub; features x1-x3, seg",
            "notifications": "px.simulate('notifications'): history seed 10000+2s, experiment "
                             "10000+2s+1; surrogates engagement, unsubscribe, revenue; "
                             "truth: population ATE of retention_90d by true means (400k units)",
            "wait_90_days": "difference in means of the long-term outcome on the same "
                            "experiment, Neyman SE",
            "surrogacy_flag": "diagnostics()['arms'][...]['surrogacy_ok'] False (p < 0.05 on "
                              "the history's residual effect)",
            "downstream": "case surrogacy's pairs and index; index.transform(experiment, "
                          "n_bootstrap=<n_bootstrap>) (and n_bootstrap=0: sampling error only); "
                          "px.EffectModel(learner='t', n_folds=2, base_params={'n_estimators': "
                          "60}, random_state=seed); model.ate() rows for outcome 'retention~'; "
                          "evaluate_policy(np.full(n, 2), data, model)['retention~'] lift "
                          "(all-heavy vs all-control) against the true heavy ATE; normal CIs",
        },
        "cases": {**cases, "downstream": downstream},
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "git": git_state(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    (args.out / "longterm-coverage-latest.json").write_text(text)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    (args.out / f"longterm-coverage-{stamp}.json").write_text(text)

    print(f"{n_seeds} seeds; {times['total']:.0f} s in all")
    head = (f"{'case':<14}{'arm':<7}{'truth':>8}{'cover':>7}{'wilson95':>13}{'bias':>9}"
            f"{'width':>8}{'se_s':>7}{'se_i':>7}{'cov_s':>7}{'wait':>6}{'w_wait':>8}"
            f"{'ratio':>7}{'flag':>6}{'r2':>6}")
    print(head)
    for case, res in cases.items():
        for arm, a in res["arms"].items():
            ix, so, w = a["index"], a["index_sampling_only"], a["wait_90_days"]
            print(f"{case:<14}{arm:<7}{a['truth']:>8.4f}{ix['coverage']:>7.2f}"
                  f"{'[' + format(ix['wilson_low'], '.2f') + ',' + format(ix['wilson_high'], '.2f') + ']':>13}"
                  f"{ix['bias']:>+9.4f}{ix['ci_width']:>8.4f}{ix['se_sampling']:>7.4f}"
                  f"{ix['se_index']:>7.4f}{so['coverage']:>7.2f}{w['coverage']:>6.2f}"
                  f"{w['ci_width']:>8.4f}{a['width_ratio_index_vs_wait']:>7.2f}"
                  f"{a['surrogacy_flagged_share']:>6.2f}{res['r2_mean']:>6.2f}")
    print("cover: index 95% CI; cov_s: with se_sampling alone; wait: difference in means of the "
          "long-term outcome; ratio: index CI width / wait CI width; flag: share of seeds the "
          "surrogacy check flags")
    print()
    print("downstream: the index as an outcome (retention~), EffectModel.ate and the all-heavy "
          "policy's lift")
    print(f"{'estimate':<22}{'truth':>8}{'cover':>7}{'wilson95':>13}{'bias':>9}{'width':>8}"
          f"{'se':>7}{'cov_s':>7}{'width_s':>9}{'ratio':>7}")
    rows = [(f"ate {arm}", a["truth"], a["effect_model"], a["effect_model_sampling_only"])
            for arm, a in downstream["arms"].items()]
    pol = downstream["policy_all_heavy"]
    rows.append(("policy all-heavy", pol["truth"], pol["evaluate_policy"],
                 pol["evaluate_policy_sampling_only"]))
    for label, tv, f, s in rows:
        print(f"{label:<22}{tv:>8.4f}{f['coverage']:>7.2f}"
              f"{'[' + format(f['wilson_low'], '.2f') + ',' + format(f['wilson_high'], '.2f') + ']':>13}"
              f"{f['bias']:>+9.4f}{f['ci_width']:>8.4f}{f['se']:>7.4f}{s['coverage']:>7.2f}"
              f"{s['ci_width']:>9.4f}{f['ci_width'] / s['ci_width']:>7.2f}")
    print(f"cover/width/se: with the index's refit error (n_bootstrap={args.n_bootstrap}); cov_s/"
          "width_s: transform(n_bootstrap=0), sampling error only; ratio: width / width_s; "
          "policy lift_se_outcome_model mean "
          f"{pol['evaluate_policy']['lift_se_outcome_model']:.4f}")
    print(f"wrote {args.out / 'longterm-coverage-latest.json'}")


if __name__ == "__main__":
    main()
