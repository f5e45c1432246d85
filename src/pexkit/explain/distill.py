"""Distill a black-box linear policy into a shallow policy tree, with what it costs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit._stats import Z95
from pexkit.data import LoggedData
from pexkit.effects import EffectModel
from pexkit.evaluation import build_scores
from pexkit.exceptions import InvalidParameterError
from pexkit.explain.policytree import PolicyTree, fit_policy_tree
from pexkit.policy import LinearPolicy

__all__ = ["DistilledPolicy", "distill"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class DistilledPolicy:
    """A policy tree that imitates a black-box policy.

    Attributes
    ----------
    tree : PolicyTree
    fidelity : float
        Share of units where the tree picks the black-box policy's treatment.
    fidelity_ci : tuple of float
    value_kept : float
        DR utility lift (vs all-control) of the tree over that of the black box.
    value_kept_ci : tuple of float
        Delta-method 95% CI.
    """

    tree: PolicyTree
    model: EffectModel
    fidelity: float
    fidelity_ci: tuple[float, float]
    value_kept: float
    value_kept_ci: tuple[float, float]

    def choose(self, X: Any) -> IntArray:
        """Treatment index per row of a frame (spec's feature columns) or LoggedData."""
        return self.tree.choose(self.model._matrix(X))

    def __str__(self) -> str:
        head = (
            f"policy tree (fidelity {self.fidelity:.1%} [{self.fidelity_ci[0]:.1%}, "
            f"{self.fidelity_ci[1]:.1%}], value kept {self.value_kept:.1%} "
            f"[{self.value_kept_ci[0]:.1%}, {self.value_kept_ci[1]:.1%}])"
        )
        return head + "\n" + str(self.tree)


def distill(
    policy: LinearPolicy,
    model: EffectModel,
    data: LoggedData | None = None,
    max_depth: int = 3,
    *,
    max_bins: int = 64,
) -> DistilledPolicy:
    """Fit a cost-sensitive tree to ``policy``'s choices.

    The tree maximizes the summed estimated utility ``U_k(x_i)`` of its choices,
    so a wrong choice costs what it loses in utility against the black box's
    (which is the per-unit maximum). Fidelity and value kept are measured on
    ``data`` with DR scores.

    Parameters
    ----------
    policy : LinearPolicy
    model : EffectModel
    data : LoggedData, optional
        Default: the data the model was fitted on (its out-of-fold effects).
    max_depth : int
        1-4.
    """
    if not isinstance(policy, LinearPolicy):
        raise InvalidParameterError(
            f"'policy' must be a LinearPolicy; got {type(policy).__name__}."
        )
    model._check_fitted()
    data = model.data_ if data is None else data
    spec = data.spec
    tau = np.asarray(model.effects_) if data is model.data_ else model.predict(data)
    utilities = policy.utilities(tau)
    black = np.argmax(utilities, axis=1)
    X = model._matrix(data)
    tree = fit_policy_tree(
        X, utilities, depth=max_depth, max_bins=max_bins,
        feature_names=list(spec.features), action_names=list(spec.arms),
    )
    chosen = tree.choose(X)
    n = data.n_units
    agree = (chosen == black).astype(np.float64)
    fid = float(agree.mean())
    fid_se = float(np.sqrt(max(fid * (1 - fid), 1e-12) / n))
    scores = build_scores(data, model)
    sw = policy.signed_weights()
    gain = (scores.dr - scores.dr[:, :1, :]) @ sw  # (n, K): DR utility lift terms
    rows = np.arange(n)
    tree_terms, black_terms = gain[rows, chosen], gain[rows, black]
    denom = float(black_terms.mean())
    if abs(denom) < 1e-12:
        kept, kept_se = float("nan"), float("nan")
    else:
        kept = float(tree_terms.mean() / denom)
        influence = (tree_terms - kept * black_terms) / denom
        kept_se = float(influence.std(ddof=1) / np.sqrt(n))
    return DistilledPolicy(
        tree=tree,
        model=model,
        fidelity=fid,
        fidelity_ci=(fid - Z95 * fid_se, fid + Z95 * fid_se),
        value_kept=kept,
        value_kept_ci=(kept - Z95 * kept_se, kept + Z95 * kept_se),
    )
