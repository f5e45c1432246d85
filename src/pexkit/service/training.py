"""Job bodies: assemble training data from the store, train, optimize, distill, tune.

Each body computes without holding anything, then applies its result to the
experiment state with one atomic :meth:`DecisionService.mutate`, so a job never
overwrites what a concurrent job, phase change or peer server wrote meanwhile.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pexkit.data.logged import LoggedData
from pexkit.effects.model import EffectModel
from pexkit.evaluation import build_scores
from pexkit.exceptions import PexkitError
from pexkit.optimize.optimize import DEFAULT_BUDGETS, SLOW_QNPAREGO_BUDGET, optimize_policies
from pexkit.policy.linear import LinearPolicy
from pexkit.service import phases
from pexkit.service.errors import ConflictError, InvalidRequestError
from pexkit.service.state import ExperimentState, TuneArm
from pexkit.spec.spec import ExperimentSpec

if TYPE_CHECKING:
    from pexkit.evaluation.scores import PolicyScores
    from pexkit.service.core import DecisionService

__all__ = ["SOURCES", "run_distill", "run_refit", "run_optimize", "run_train", "run_tune_round",
           "training_data", "unit_frame"]

SOURCES = ("randomize", "tune", "holdout", "launched")


def unit_frame(
    svc: DecisionService, name: str, **where: Any
) -> tuple[pd.DataFrame, ExperimentSpec, list[str]]:
    """Assignments joined with each unit's outcome values (no counted event = 0).

    Each outcome's value follows its spec keys ``aggregate`` and ``window``
    (:mod:`pexkit.service.outcomes`, the one place that computes them).
    """
    from pexkit.service.outcomes import outcome_values, rules

    exp = svc.experiment(name)
    spec = ExperimentSpec.from_dict(exp.spec)
    outs = list(spec.outcome_names) + [t["name"] for t in exp.tracking]
    assigned = svc.store.assignments(name, **where)
    if not assigned:
        return pd.DataFrame(), spec, outs
    frame = pd.DataFrame.from_records(
        [{k: v for k, v in a.items() if k != "features"} for a in assigned]
    )
    feats = pd.DataFrame.from_records([a["features"] for a in assigned])
    frame = pd.concat([frame.reset_index(drop=True), feats], axis=1)
    exposures = frame[["epoch", "unit", "created_at"]].rename(columns={"created_at": "exposed_at"})
    wide = outcome_values(svc.store, name, exposures, rules(spec, exp.tracking),
                          sorted(frame["epoch"].unique().tolist()))
    if len(wide.columns) > 2:
        frame = frame.merge(wide, on=["epoch", "unit"], how="left")
    for o in outs:
        frame[o] = frame[o].fillna(0.0).astype(float) if o in frame else 0.0
    return frame, spec, outs


def training_data(
    svc: DecisionService, name: str, sources: tuple[str, ...] = SOURCES,
    counts: dict[str, int] | None = None,
) -> LoggedData:
    """Units whose treatment was randomized, with the propensity it was drawn with.

    ``randomize``: the randomize phases (1/K); ``tune``: the tune rounds, each
    unit with the marginal probability of its treatment over the round's arms
    (a random arm chose it: a true propensity); ``holdout``: launch holdouts
    (1/K); ``launched``: launched traffic served with exploration (epsilon > 0),
    each unit with its logged propensity ``(1 - eps) 1{policy} + eps / K``.
    Units whose treatment was certain (propensity 1: every tune arm agreed, or
    launched traffic without exploration) carry no randomization and are left
    out. A unit seen in several epochs keeps its latest randomized one.
    ``counts``, when given, receives the units used from each source.
    """
    bad = [s for s in sources if s not in SOURCES]
    if bad or not sources:
        raise InvalidRequestError(
            f"params.sources: expected a non-empty subset of {list(SOURCES)}; got {list(sources)}."
        )
    frame, spec, _ = unit_frame(svc, name)
    if frame.empty:
        raise ConflictError(f"experiment {name!r} has no decisions yet; nothing to train on.")
    hold = frame["holdout"].astype(bool)
    random = frame["propensity"] < 1.0
    source = pd.Series("", index=frame.index)
    source[frame["phase"] == "randomize"] = "randomize"
    source[(frame["phase"] == "tune") & random] = "tune"
    source[hold] = "holdout"
    source[(frame["phase"] == "launched") & ~hold & random] = "launched"
    keep = source.isin(list(sources))
    uniform = frame[keep].assign(_source=source[keep]).sort_values("epoch").drop_duplicates(
        "unit", keep="last")
    if counts is not None:
        tally = uniform["_source"].value_counts()
        counts.update({s: int(tally.get(s, 0)) for s in sources})
    if len(uniform) < 20 * spec.n_treatments:
        raise ConflictError(
            f"experiment {name!r} has {len(uniform)} randomized units; training needs at "
            f"least {20 * spec.n_treatments}. Decide for more units first."
        )
    unit_col = spec.unit or "unit"
    log = uniform[["unit", "treatment", "propensity", *spec.features, *spec.outcome_names]].copy()
    log[spec.treatment] = np.asarray(spec.arms)[log["treatment"].to_numpy(int)]
    log = log.drop(columns=["treatment"]).rename(columns={"unit": unit_col})
    for f in spec.categorical:
        log[f] = log[f].astype(object)
    raw = spec.to_dict()
    raw["unit"] = unit_col
    raw["propensity"] = "propensity"
    return LoggedData.from_frame(log.reset_index(drop=True), ExperimentSpec.from_dict(raw))


def run_train(svc: DecisionService, name: str, params: dict[str, Any]) -> dict[str, Any]:
    allowed = {"learner", "n_folds", "random_state", "base", "base_params", "sources"}
    bad = sorted(set(params) - allowed)
    if bad:
        raise InvalidRequestError(f"params {bad}: unknown; train takes {sorted(allowed)}.")
    sources = params.get("sources", SOURCES)
    if not isinstance(sources, list | tuple) or not all(isinstance(s, str) for s in sources):
        raise InvalidRequestError(f"params.sources: expected a list of {list(SOURCES)}.")
    used: dict[str, int] = {}
    data = training_data(svc, name, tuple(sources), counts=used)
    kw = {k: v for k, v in params.items() if k in allowed - {"sources"}}
    kw.setdefault("random_state", 0)
    seed = kw["random_state"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidRequestError(f"params.random_state: expected 0 <= int < 2**32; got {seed!r}.")
    try:
        model = EffectModel(progress=False, **kw).fit(data)
    except PexkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bad learner parameter, said plainly
        raise InvalidRequestError(
            f"params: the learner refused them ({type(exc).__name__}: {str(exc)[:300]}); check "
            "learner, n_folds, base and base_params."
        ) from exc
    ate = model.ate()
    control = model.scores_[:, 0, :].mean(axis=0)  # DR value of all-control, per outcome
    ate["control_mean"] = [float(control[model.spec_.outcome_index(o)]) for o in ate["outcome"]]
    summary = {
        "n_units": int(data.n_units),
        "sources": list(sources),
        "units_by_source": used,
        "chosen": {f"{r['treatment']}/{r['outcome']}": r["learner"]
                   for r in model.selection_.to_dict(orient="records")},
        "ate": ate.to_dict(orient="records"),
    }
    model_id = svc.registry.put_effect_model(name, model, summary, data)
    ate_rows: list[dict[str, Any]] = summary["ate"]  # type: ignore[assignment]
    svc.mutate(name, lambda s: replace(s, model_id=model_id, ate=tuple(ate_rows)))
    return {"model_id": model_id, **summary}


def run_optimize(svc: DecisionService, name: str, params: dict[str, Any]) -> dict[str, Any]:
    from pexkit.service.tuning import TuningSpace

    allowed = {"q", "budget", "method", "random_state", "include_utility"}
    bad = sorted(set(params) - allowed)
    if bad:
        raise InvalidRequestError(f"params {bad}: unknown; optimize takes {sorted(allowed)}.")
    model_id = svc.experiment(name).state.model_id
    if model_id is None:
        raise ConflictError("optimize needs a trained model; run a 'train' job first.")
    model = svc.registry.effect_model(int(model_id))
    q = params.get("q", 4)
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 16:
        raise InvalidRequestError(f"params.q: expected 1-16 candidate policies; got {q!r}.")
    method = params.get("method", "sobol")
    if method not in ("sobol", "nsga2", "qnparego"):
        raise InvalidRequestError(
            f"params.method: expected 'sobol', 'nsga2' or 'qnparego'; got {method!r}."
        )
    top = SLOW_QNPAREGO_BUDGET if method == "qnparego" else 20000
    budget = params.get("budget", 1000 if method != "qnparego" else DEFAULT_BUDGETS[method])
    if isinstance(budget, bool) or not isinstance(budget, int) or not 10 <= budget <= top:
        raise InvalidRequestError(
            f"params.budget: expected 10-{top} for method {method!r}; got {budget!r}."
        )
    seed = params.get("random_state", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidRequestError(f"params.random_state: expected 0 <= int < 2**32; got {seed!r}.")
    log = svc.registry.training_log(int(model_id))
    front = optimize_policies(model, log, method=method, budget=budget, random_state=seed,
                              progress=False)

    def tunable(pol: LinearPolicy) -> bool:
        # Ax tunes the vector with w_1 = 1: the first outcome's weight must be positive
        w = pol.weight_vector
        return bool(w[0] > 1e-3 * max(float(w.max()), 1e-12))

    chosen = front.select(q=q)
    versions = []
    skipped = 0
    # one name per policy everywhere: the version's label is its label on the front
    # ("policy 41"), and the front records which version each candidate became
    by_label: dict[str, int] = {}
    for label, pol in zip(chosen.labels, chosen.policies, strict=True):
        if not tunable(pol):
            skipped += 1
            continue
        by_label[label] = svc.store.add_policy(name, "linear", pol.to_dict(), int(model_id),
                                               label)
        versions.append(by_label[label])
    utility = LinearPolicy(model.spec_)
    scores = build_scores(log, model)  # once, for every offline readout below
    if params.get("include_utility", True) and tunable(utility):
        versions.append(svc.store.add_policy(
            name, "linear",
            {**utility.to_dict(), "offline": _offline(utility, model, log, scores)},
            int(model_id), "utility (spec weights)"
        ))
    if not any(tunable(p) for p in front.policies):
        raise ConflictError(
            f"no policy on the front gives the first outcome "
            f"({model.spec_.outcome_names[0]!r}) a positive weight, so none can be tuned; "
            "list an outcome the team wants to improve first in the spec."
        )
    # what personalizing adds over the best single treatment (the dashboard says it)
    from pexkit.evaluation.personalization import lifts_vs_arm, personalization_value

    named = {"utility": utility, **dict(zip(chosen.labels, chosen.policies, strict=True))}
    pers = personalization_value(log, model, named, utility, scores)
    best = model.spec_.treatment_index(pers["best_single"])
    lift, se = lifts_vs_arm(front.policies, log, model, best, scores)
    front.meta["vs_best_single"] = {"arm": model.spec_.arms[best], "lift": lift, "lift_se": se}
    front.meta["personalization"] = {"best_single": pers["best_single"],
                                     "sentence": pers["sentence"],
                                     "candidates_note": chosen.meta.get("distinct")}
    front.meta["versions"] = by_label
    front.mark_candidates(chosen)  # the stars on the dashboard's front
    space = TuningSpace.from_model(model)
    front_doc = front.to_dict()
    front_id = svc.registry.put_json(name, "front", front_doc)
    svc.mutate(name, lambda s: replace(
        s, front_id=front_id, candidates=tuple(versions), tuning_space=space.to_dict(),
    ))
    return {"hypervolume": float(front.hypervolume()), "n_front": len(front.policies),
            "candidates": versions, "skipped_untunable": skipped,
            "candidates_note": chosen.meta.get("distinct"),
            "personalization": pers["sentence"]}


def _offline(
    policy: LinearPolicy, model: EffectModel, log: LoggedData, scores: PolicyScores
) -> dict[str, Any]:
    """A policy's offline DR lifts vs control on the training log (where the dashboard's
    front plots it), with 95% CIs; ``scores``: the log's, built once by the caller."""
    from pexkit.evaluation import evaluate_policy

    frame = evaluate_policy(policy.choose(model.effects_for(log)), log,
                            scores=scores).to_frame()
    return {"lift": {str(o): float(v) for o, v in frame["lift"].items()},
            "lift_ci": {str(o): [float(r["lift_ci_low"]), float(r["lift_ci_high"])]
                        for o, r in frame.iterrows()}}


def _linear_version(
    svc: DecisionService, name: str, params: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """``params["version"]`` and its stored row, which must be a linear policy."""
    version = params.get("version")
    prow = (svc.store.policy(name, version)
            if isinstance(version, int) and 0 < version < 2**31 else None)
    if prow is None or prow["kind"] != "linear" or not isinstance(version, int):
        raise InvalidRequestError(
            f"params.version: expected a linear policy version of {name!r}; got "
            f"{version!r}. List versions with GET .../policies."
        )
    return version, prow


def run_refit(svc: DecisionService, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A linear version's serving twin: the same policy on models refit once on all units.

    The new version walks ``1 / n_folds`` of the trees per decision; its
    agreement with the cross-fitted version is measured on the training units.
    """
    from pexkit.serving.refit import agreement, refit_for_serving

    version, prow = _linear_version(svc, name, params)
    policy, model = svc.registry.linear_policy(name, version)
    log = svc.registry.training_log(int(prow["model_id"]))
    serving = refit_for_serving(model, log)
    agree = agreement(policy, model, serving, log)
    model_id = svc.registry.put_effect_model(
        name, serving, {"kind": "serving_refit", "source_model": prow["model_id"]}, log
    )
    new_version = svc.store.add_policy(
        name, "linear", {**policy.to_dict(), "source_version": version, "serving": "refit",
                         "agreement": agree},
        model_id, f"serving refit of version {version}",
    )
    return {"version": new_version, "source_version": version, "agreement": agree,
            "n_folds_before": model.n_folds}


def run_distill(svc: DecisionService, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Distill a linear policy version into a policy-tree version (kind "tree")."""
    from pexkit.explain.distill import distill

    version, prow = _linear_version(svc, name, params)
    depth = params.get("max_depth", 3)
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 4:
        raise InvalidRequestError(f"params.max_depth: expected 1-4; got {depth!r}.")
    policy, model = svc.registry.linear_policy(name, version)
    log = svc.registry.training_log(int(prow["model_id"]))
    tree = distill(policy, model, log, max_depth=depth)
    summary = tree.to_dict()
    summary.pop("tree", None)
    blob_id = svc.registry.put_distilled(name, tree, {"kind": "distilled_policy"})
    new_version = svc.store.add_policy(
        name, "tree", {**summary, "source_version": version, "max_depth": depth},
        blob_id, f"tree (depth {depth}) of version {version}",
    )
    return {"version": new_version, "source_version": version,
            "fidelity": summary["fidelity"], "value_kept": summary["value_kept"],
            "rules": str(tree.tree)}


MAX_SHARE = 0.95  # a proposal giving one treatment to more units is not personalized


def _top_share(policy: LinearPolicy, tau: Any) -> float:
    actions = policy.choose(tau)
    return float(np.bincount(actions, minlength=tau.shape[1]).max() / len(actions))


def _personalized_proposals(
    svc: DecisionService, name: str, state: ExperimentState, tuner: Any, q: int,
    attempts: int = 4,
) -> list[tuple[int, LinearPolicy]]:
    """Ax's next ``q`` arms, each a personalized policy on the training units.

    The tuning box contains policies that give one treatment to (almost)
    everyone; an online arm spent on one teaches nothing the single-treatment
    baselines do not. Such proposals are marked abandoned in Ax and asked for
    again; if Ax keeps proposing them, the remaining arms are the offline
    candidates, attached again as new trials. When no policy of the front is
    personalized either, the data do not support personalization and every
    proposal is kept. Shares are measured on the training units' predicted
    effects (what the served policy computes), not their out-of-fold effects.
    """
    assert state.model_id is not None
    model = svc.registry.effect_model(int(state.model_id))
    # the effects the served policy will see: the fold-averaged models' predictions
    # (out-of-fold effects are noisier, so a policy's top share on them understates
    # its share among the units it will serve)
    tau = np.asarray(model.predict(svc.registry.training_log(int(state.model_id))))
    cands = [svc.registry.linear_policy(name, v)[0] for v in state.candidates]
    if all(_top_share(p, tau) > MAX_SHARE for p in cands):
        return list(tuner.next(q))
    kept: list[tuple[int, LinearPolicy]] = []
    for _ in range(attempts):
        for trial, pol in tuner.next(q - len(kept)):
            if _top_share(pol, tau) <= MAX_SHARE:
                kept.append((trial, pol))
            else:
                tuner.client.mark_trial_abandoned(trial_index=int(trial))
        if len(kept) == q:
            return kept
    usable = [p for p in cands if _top_share(p, tau) <= MAX_SHARE]
    for i in range(q - len(kept)):
        pol = usable[i % len(usable)]
        kept.append((tuner.attach(pol), pol))
    return kept


def run_tune_round(svc: DecisionService, name: str, params: dict[str, Any]) -> dict[str, Any]:
    from pexkit.service.readouts import arm_metrics
    from pexkit.service.tuning import OnlineTuner

    exp = svc.experiment(name)
    state = exp.state
    if state.phase != "tune" or state.tuner_id is None:
        raise ConflictError("tune_round needs phase 'tune'; start it with POST .../tune.")
    min_units = params.get("min_units", 30)
    if isinstance(min_units, bool) or not isinstance(min_units, int) or not 2 <= min_units <= 10**7:
        raise InvalidRequestError(f"params.min_units: expected 2-10,000,000; got {min_units!r}.")
    q = params.get("q", len(state.arms))
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 16:
        raise InvalidRequestError(f"params.q: expected 1-16 arms; got {q!r}.")
    epoch = state.epoch
    tuner = OnlineTuner.load(svc.registry.json_blob(state.tuner_id, "tuner"))
    metrics = arm_metrics(svc, name, epoch)
    for arm in state.arms:
        m = metrics.get(arm.arm)
        if m is None or m["n"] < min_units:
            raise ConflictError(
                f"arm {arm.arm} has {0 if m is None else m['n']} units this round; "
                f"a round needs at least {min_units} per arm. Decide for more units first."
            )
    for arm in state.arms:
        assert arm.trial is not None
        tuner.complete(arm.trial, metrics[arm.arm], list(state.objectives))
    proposals = _personalized_proposals(svc, name, state, tuner, q)
    rnd = state.tune_round + 1
    model_id = state.model_id
    assert model_id is not None
    model = svc.registry.effect_model(int(model_id))
    log = svc.registry.training_log(int(model_id))
    scores = build_scores(log, model)
    arms = []
    for i, (trial, pol) in enumerate(proposals):
        version = svc.store.add_policy(
            name, "linear", {**pol.to_dict(), "offline": _offline(pol, model, log, scores)},
            model_id,
            f"tune round {rnd} arm {i + 1}",
        )
        arms.append(TuneArm(f"round{rnd}-arm{i + 1}", version, trial))
    tuner_id = svc.registry.put_json(name, "tuner", tuner.dump())

    def apply(s: ExperimentState) -> ExperimentState:
        return phases.next_round(s, epoch, arms, tuner_id)

    new = svc.mutate(name, apply)
    for arm in state.arms:
        svc.store.set_arm_metrics(name, epoch, arm.arm, metrics[arm.arm])
    svc.store.add_arms(name, new.epoch, [{"arm": a.arm, "version": a.version, "trial": a.trial}
                                         for a in arms])
    return {"round": rnd, "completed": metrics,
            "arms": [{"arm": a.arm, "version": a.version, "trial": a.trial} for a in arms]}
