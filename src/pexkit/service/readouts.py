"""Readouts: online arm metrics of a tuning round, tuned arms, the launch backtest, and the
live health of the current phase (:mod:`pexkit.service.monitoring` computes it)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pexkit._stats import Z95, mean_se
from pexkit.evaluation.cuped import adjusted_difference
from pexkit.evaluation.sequential import difference_sequence
from pexkit.exceptions import PexkitError
from pexkit.service import monitoring
from pexkit.service.errors import ConflictError
from pexkit.spec.spec import ExperimentSpec
from pexkit.store.db import now

if TYPE_CHECKING:
    from pexkit.service.core import DecisionService
    from pexkit.service.state import ExperimentState

__all__ = ["arm_metrics", "backtest", "backtest_table", "difference", "health", "reference_model",
           "tune_results", "tuning_summary"]


def difference(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Difference of means ``a - b`` with a standard error and 95% CI that small samples keep.

    0/1 metrics (both sides) use the Agresti-Caffo interval: one success and one
    failure added to each side before the variance, so a side with no events
    (10 holdout units, 0 unsubscribes) still has a variance; Welch's would be 0
    there and call tiny differences significant. Other metrics use Welch's.

    ``always_valid_low/high``: an asymptotic confidence sequence (tightest near
    1,000 units a side), which stays at 95% however often the backtest is read;
    the fixed-sample ``ci_low/high`` holds for one planned look only.
    """
    lift = float(a.mean() - b.mean())
    binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    if binary:
        pa, pb = (a.sum() + 1) / (len(a) + 2), (b.sum() + 1) / (len(b) + 2)
        se = float(np.sqrt(pa * (1 - pa) / (len(a) + 2) + pb * (1 - pb) / (len(b) + 2)))
        center = float(pa - pb)
        method = "agresti-caffo"
    else:
        se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
        center = lift
        method = "welch"
    # always valid: may be read at every look (pexkit.evaluation.sequential)
    av_low, av_high = difference_sequence(
        float(a.mean()), float(a.std(ddof=1)), len(a), float(b.mean()), float(b.std(ddof=1)),
        len(b),
    )
    return {"lift": lift, "se": se, "ci_low": center - Z95 * se, "ci_high": center + Z95 * se,
            "interval": method, "always_valid_low": av_low, "always_valid_high": av_high}

def arm_metrics(svc: DecisionService, name: str, epoch: int) -> dict[str, dict[str, Any]]:
    """Per tuning arm of ``epoch``: units, and each outcome's mean and standard error."""
    from pexkit.service.training import unit_frame

    frame, _, outs = unit_frame(svc, name, epoch=epoch)
    res: dict[str, dict[str, Any]] = {}
    if frame.empty:
        return res
    for arm, grp in frame.groupby("arm"):
        res[str(arm)] = {
            "n": len(grp),
            **{o: {"mean": float(grp[o].mean()),
                   "sem": float(grp[o].std(ddof=1) / np.sqrt(len(grp))) if len(grp) > 1 else 0.0}
               for o in outs},
        }
    return res


def tune_results(svc: DecisionService, name: str) -> list[dict[str, Any]]:
    """Every tuned arm with its online metrics (the current round's are live)."""
    exp = svc.experiment(name)
    rows = svc.store.arm_history(name)
    live = arm_metrics(svc, name, exp.state.epoch) if exp.state.phase == "tune" else {}
    out = []
    for h in rows:
        metrics = h["metrics"] if h["metrics"] is not None else live.get(h["arm"])
        found = _ARM_NAME.match(str(h["arm"]))
        out.append({"epoch": h["epoch"], "arm": h["arm"], "version": h["version"],
                    "trial": h["trial"], "metrics": metrics,
                    "round": int(found.group(1)) if found else None,
                    "arm_number": int(found.group(2)) if found else None})
    out.sort(key=lambda r: (r["epoch"], r["arm_number"] or 0, r["arm"]))
    return out


_ARM_NAME = re.compile(r"round(\d+)-arm(\d+)$")
_RECOMMENDED: dict[tuple[str, int], list[dict[str, Any]]] = {}


def _policy_words(spec: Any, row: dict[str, Any] | None) -> str:
    """A tuned arm's policy (its stored version row) in words: utility and per-arm shifts."""
    from pexkit.policy.linear import LinearPolicy

    if row is None or row.get("kind") != "linear":
        return ""
    policy = LinearPolicy(spec, weights=row["params"]["weights"],
                          biases=row["params"]["biases"])
    shifts = policy.shift_text()
    return f"utility {policy.utility_text()}" + (f"; biases {shifts}" if shifts else "")


def tuning_summary(svc: DecisionService, name: str) -> dict[str, Any]:
    """The online tuning so far: every arm (round and arm numbers, policy in words, each
    objective's mean with a 95% CI), the best arm per objective among completed rounds,
    and Ax's recommendation (its model's predictions for the arms it would keep)."""
    from pexkit.service.tuning import OnlineTuner
    from pexkit.spec.spec import ExperimentSpec

    exp = svc.experiment(name)
    state = exp.state
    spec = ExperimentSpec.from_dict(exp.spec)
    rows = {int(p["version"]): p for p in svc.policies(name)}
    goals = {o["name"]: o.get("goal", "maximize") for o in exp.spec["outcomes"]}
    goals |= {t["name"]: t.get("goal", "maximize") for t in exp.tracking}
    objectives = list(state.objectives) or list(goals)
    arms = []
    for r in tune_results(svc, name):
        m = r["metrics"] or {}
        values = {}
        for o in objectives:
            if o not in m:
                continue
            mean, sem = float(m[o]["mean"]), m[o].get("sem")
            half = Z95 * float(sem) if sem is not None and np.isfinite(sem) else float("nan")
            values[o] = {"mean": mean, "sem": sem, "ci_low": mean - half, "ci_high": mean + half}
        arms.append({"round": r["round"], "arm": r["arm"], "arm_number": r["arm_number"],
                     "version": r["version"], "trial": r["trial"], "units": int(m.get("n", 0)),
                     "completed": r["epoch"] != state.epoch or state.phase != "tune",
                     "policy": _policy_words(spec, rows.get(int(r["version"]))),
                     "metrics": values})
    best: dict[str, Any] = {}
    done = [a for a in arms if a["completed"] and a["units"] > 1]
    for o in objectives:
        scored = [a for a in done if o in a["metrics"]]
        if scored:
            sign = -1.0 if goals.get(o) == "minimize" else 1.0
            top = max(scored, key=lambda a: sign * a["metrics"][o]["mean"])
            best[o] = {"goal": goals.get(o), "arm": top["arm"], "round": top["round"],
                       "arm_number": top["arm_number"], "version": top["version"],
                       **top["metrics"][o]}
    recommendation: list[dict[str, Any]] = []
    if state.tuner_id is not None and done:
        key = (name, int(state.tuner_id))
        if key not in _RECOMMENDED:  # a stored tuner never changes: ask Ax once
            tuner = OnlineTuner.load(svc.registry.json_blob(state.tuner_id, "tuner"))
            _RECOMMENDED[key] = tuner.recommendation()
        by_trial = {a["trial"]: a for a in arms if a["trial"] is not None}
        for rec in _RECOMMENDED[key]:
            arm = by_trial.get(rec["trial"])
            recommendation.append({
                "trial": rec["trial"], "arm": arm["arm"] if arm else None,
                "round": arm["round"] if arm else None,
                "arm_number": arm["arm_number"] if arm else None,
                "version": arm["version"] if arm else None,
                "policy": arm["policy"] if arm else "", "predicted": rec["predicted"],
            })
    return {"objectives": {o: goals.get(o) for o in objectives}, "arms": arms, "best": best,
            "recommendation": recommendation}


def backtest_table(
    df: pd.DataFrame, metrics: list[str], goals: dict[str, str], pres: dict[str, str]
) -> list[dict[str, Any]]:
    """One row per metric: policy vs holdout units of ``df`` (a ``holdout`` column marks them).

    ``pres``: outcome -> its pre-exposure column, for a CUPED-adjusted lift.
    """
    pol, hold = df[~df["holdout"].astype(bool)], df[df["holdout"].astype(bool)]
    res: list[dict[str, Any]] = []
    for o in metrics:
        if len(pol) < 2 or len(hold) < 2:
            res.append({"outcome": o, "n_policy": len(pol), "n_holdout": len(hold)})
            continue
        a, b = pol[o].to_numpy(float), hold[o].to_numpy(float)
        row = {
            "outcome": o, "goal": goals.get(o, "maximize"), "n_policy": len(a),
            "n_holdout": len(b), "policy_mean": float(a.mean()),
            "holdout_mean": float(b.mean()), **difference(a, b),
        }
        pre = pres.get(o)
        if pre is not None:  # CUPED on the metric's pre-exposure value
            if pre in df.columns:
                xa = pd.to_numeric(pol[pre], errors="coerce").fillna(0.0).to_numpy(float)
                xb = pd.to_numeric(hold[pre], errors="coerce").fillna(0.0).to_numpy(float)
                cuped = adjusted_difference(a, xa, b, xb)
                row["cuped"] = {"pre": pre, **{k: v for k, v in cuped.items() if k != "theta"}}
            else:
                row["cuped"] = {"pre": pre, "error": f"column {pre!r} is not among the "
                                "features logged at exposure"}
        res.append(row)
    return res


def predicted_lift(svc: DecisionService, name: str) -> dict[str, Any]:
    """The offline DR prediction of what the backtest measures: launch vs uniform holdout.

    On the launched version's training log: per unit, the DR score of the arm the
    launched policy picks (with its exploration share spread uniformly) minus the
    mean DR score over the arms (what the uniformly random holdout gets); the
    mean per outcome and in utility, with 95% CIs. Beside the measured lift it
    makes a record of predicted vs measured for every launch.
    """
    exp = svc.experiment(name)
    version = exp.state.launched_version
    if version is None:
        return {"error": "nothing launched"}
    prow = svc.registry.policy_row(name, int(version))
    if prow["kind"] != "linear" or prow["model_id"] is None:
        return {"error": f"version {version} is a {prow['kind']} policy: the offline prediction "
                         "is made for linear versions (a tree's value is in its distill job)"}
    model_id, eps = int(prow["model_id"]), float(exp.state.explore)

    def make() -> dict[str, Any]:
        from pexkit.evaluation import build_scores

        policy, model = svc.registry.linear_policy(name, int(version))
        log = svc.registry.training_log(model_id)
        G = build_scores(log, model).dr
        actions = policy.choose(model.effects_for(log))
        terms = (1 - eps) * (G[np.arange(log.n_units), actions] - G.mean(axis=1))
        spec = log.spec
        weights = spec.default_weights
        sw = np.array([weights[o.name] * o.sign for o in spec.outcomes])
        cols = {o: terms[:, m] for m, o in enumerate(spec.outcome_names)}
        cols["utility"] = terms @ sw
        out: dict[str, Any] = {"n_units": log.n_units, "model_id": model_id}
        for o, t in cols.items():
            est, se = float(t.mean()), float(mean_se(t, log.clusters))
            out[o] = {"lift": est, "se": se, "ci_low": est - Z95 * se, "ci_high": est + Z95 * se}
        return out

    return dict(svc.registry.models.get(("prediction", name, int(version), model_id, eps), make))


def backtest(svc: DecisionService, name: str, checkpoints: int = 8) -> dict[str, Any]:
    """Launched policy vs its randomized holdout, per outcome, with 95% CIs.

    ``lift`` is mean(Y | served by the launch) - mean(Y | holdout): it estimates
    V(launch) - V(uniform random) on the launched population (with exploration,
    the launch includes its explored share). ``over_time`` repeats it on the
    first 1/c, 2/c, ... of the units.
    """
    from pexkit.service.training import unit_frame

    exp = svc.experiment(name)
    epoch = exp.state.launch_epoch
    if epoch is None:
        raise ConflictError(f"experiment {name!r} has not been launched; nothing to backtest.")
    frame, spec, outs = unit_frame(svc, name, epoch=epoch)
    goals = {o.name: o.goal for o in spec.outcomes} | {t["name"]: t["goal"] for t in exp.tracking}
    weights = spec.default_weights
    if not frame.empty:
        frame["utility"] = sum(weights[o.name] * o.sign * frame[o.name] for o in spec.outcomes)
    metrics = [*outs, "utility"]
    pres = {o.name: o.pre for o in spec.outcomes if o.pre}

    def table(df: pd.DataFrame) -> list[dict[str, Any]]:
        return backtest_table(df, metrics, goals, pres)

    head = {"version": exp.state.launched_version, "holdout": exp.state.holdout,
            "explore": exp.state.explore, "predicted": predicted_lift(svc, name)}
    if frame.empty:
        return {**head, "outcomes": [], "over_time": []}
    frame = frame.sort_values("created_at").reset_index(drop=True)
    over = []
    for c in range(1, checkpoints + 1):
        part = frame.iloc[: max(1, len(frame) * c // checkpoints)]
        over.append({"units": len(part), "at": part["created_at"].iloc[-1].isoformat(),
                     "outcomes": table(part)})
    return {**head, "outcomes": table(frame), "over_time": over}


def reference_model(svc: DecisionService, name: str, state: ExperimentState) -> int | None:
    """The effect model whose training log live traffic is compared with.

    Launched: the launched version's model (a tree version: its source linear
    version's); otherwise the experiment's current model (None before training).
    """
    version = state.launched_version if state.phase == "launched" else None
    seen: set[int] = set()
    while version is not None and int(version) not in seen:
        seen.add(int(version))
        prow = svc.store.policy(name, int(version))
        if prow is None:
            break
        if prow["kind"] == "linear" and prow["model_id"] is not None:
            return int(prow["model_id"])
        version = (prow.get("params") or {}).get("source_version")
    return None if state.model_id is None else int(state.model_id)


def health(
    svc: DecisionService, name: str, settings: monitoring.Settings | None = None
) -> dict[str, Any]:
    """The live health of the experiment's current epoch (see :func:`monitoring.health`)."""
    exp = svc.experiment(name)
    state = exp.state
    spec = ExperimentSpec.from_dict(exp.spec)
    rows = svc.store.assignments(name, epoch=state.epoch)
    cols = ["unit", "treatment", "arm", "holdout", "phase", "created_at"]
    decisions = pd.DataFrame.from_records([{c: r[c] for c in cols} for r in rows], columns=cols)
    feats = pd.DataFrame.from_records([r["features"] for r in rows],
                                      columns=list(spec.features))
    decisions = pd.concat([decisions, feats], axis=1)
    events = pd.DataFrame(svc.store.event_arrivals(name, state.epoch),
                          columns=["unit", "created_at"])
    model_id = reference_model(svc, name, state)
    reference, error = None, None
    if model_id is not None:
        try:
            X = svc.registry.training_log(model_id).X
            reference = pd.DataFrame({c: (X[c].astype(object) if c in spec.categorical
                                          else X[c]) for c in X.columns})
        except PexkitError as exc:  # a model stored without its log: no drift, said plainly
            error = str(exc)
    report = monitoring.health(
        phase=state.phase, epoch=state.epoch, arms=list(spec.arms),
        tune_arms=[a.arm for a in state.arms], holdout=state.holdout, explore=state.explore,
        numeric=list(spec.numeric), categorical=list(spec.categorical), decisions=decisions,
        events=events, jobs=svc.store.jobs(name), reference=reference, model_id=model_id,
        now=now(), settings=settings, reference_error=error,
    )
    return {"name": name, **report}
