"""Personalization's own value: each policy against the best single treatment.

"+70% visits vs all-control" is true of a policy that sends almost everyone the
best arm; the question a team asks is whether personalizing beats giving
everyone that arm. Here the best single treatment is the arm whose all-arm
policy has the highest DR utility, and each policy's gain over it comes with a
CI from the paired per-unit DR terms (cluster-robust when the spec names a
cluster), plus one plain sentence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pexkit._stats import Z95, mean_se
from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation.evaluate import evaluate_policy
from pexkit.evaluation.scores import PolicyScores, build_scores
from pexkit.policy import LinearPolicy

__all__ = ["lifts_vs_arm", "personalization_value"]
def personalization_value(
    data: LoggedData, model: EffectModel, named: dict[str, LinearPolicy], utility: LinearPolicy,
    scores: PolicyScores | None = None,
) -> dict[str, Any]:
    """Each policy against the best single treatment: what personalizing adds.

    The best single treatment is the arm whose all-arm policy has the highest
    DR utility (``utility``'s weights). For each policy: its DR lift over
    all-best per outcome and in utility, with 95% CIs from the paired per-unit
    terms (cluster-robust when the spec names a cluster), and one sentence.
    """
    spec = data.spec
    scores = build_scores(data, model) if scores is None else scores
    G = scores.dr
    sw = utility.signed_weights()
    per_arm = G.mean(axis=0) @ sw  # (K,) the utility of sending everyone arm k
    best = int(np.argmax(per_arm))
    rows = np.arange(data.n_units)
    out: dict[str, Any] = {"best_single": spec.arms[best], "utility": utility.utility_text(),
                           "policies": {}}
    for name, policy in named.items():
        actions = policy.choose(model.effects_for(data))
        value = evaluate_policy(actions, data, scores=scores, baseline=best)
        terms = (G[rows, actions] - G[:, best]) @ sw
        gain, se = float(terms.mean()), float(mean_se(terms, data.clusters))
        out["policies"][name] = {
            "utility_gain": gain, "utility_se": se,
            "utility_ci_low": gain - Z95 * se, "utility_ci_high": gain + Z95 * se,
            "lifts": value.to_frame()[["lift", "lift_ci_low", "lift_ci_high"]].to_dict(
                orient="index"),
            "share": value.share,
        }
    top_name = max(out["policies"], key=lambda k: out["policies"][k]["utility_gain"])
    top = out["policies"][top_name]
    if top["utility_ci_low"] > 0:
        out["sentence"] = (
            f"personalizing adds {top['utility_gain']:+.4g} "
            f"[{top['utility_ci_low']:+.4g}, {top['utility_ci_high']:+.4g}] in utility "
            f"({out['utility']}) over all-{spec.arms[best]}, the best single treatment "
            f"({top_name})"
        )
    elif top["utility_ci_high"] < 0:
        out["sentence"] = (
            f"no policy here beats sending everyone {spec.arms[best]}, the best single "
            f"treatment: the best of them ({top_name}) loses {top['utility_gain']:+.4g} "
            f"[{top['utility_ci_low']:+.4g}, {top['utility_ci_high']:+.4g}] in utility "
            f"({out['utility']}); personalize only with more data or stronger effects"
        )
    else:
        out["sentence"] = (
            f"personalizing adds at most {top['utility_ci_high']:+.4g} in utility "
            f"({out['utility']}) over all-{spec.arms[best]}, the best single treatment (95% "
            f"CI upper bound, {top_name}): sending everyone {spec.arms[best]} is about as good"
        )
    return out


def lifts_vs_arm(
    policies: list[LinearPolicy], data: LoggedData, model: EffectModel, arm: int,
    scores: PolicyScores | None = None,
) -> tuple[Any, Any]:
    """DR lifts of many policies against sending everyone ``arm``, and their SEs; each (P, M).

    One compiled pass (:func:`~pexkit.evaluation.evaluate_policies`) over the DR
    scores shifted by arm ``arm``'s: a policy's "value" there is its paired lift.
    """
    from dataclasses import replace

    from pexkit.evaluation.evaluate import evaluate_policies

    scores = build_scores(data, model) if scores is None else scores
    shifted = replace(scores, dr=scores.dr - scores.dr[:, arm:arm + 1, :])
    values = evaluate_policies(policies, data, scores=shifted, tau=model.effects_for(data))
    return values.value, values.value_se
