"""proxy_weights: weights on short-term outcomes learned from a history with the long-term outcome.

The linear utility ``sum_m w_m s_m tau_m(x)`` (``s_m`` the goal's sign) decides
for every unit; its weights are usually a guess. When a history observed the
long-term outcome too, the weights can come from data: the nonnegative ``w``
whose weighted short-term effects best track the long-term effect, over units
and treatments (nonnegative least squares on the effect model's out-of-fold
effects, grouped to average out their noise). How much of the long-term effect's variation the proxy explains
(``r2``) says whether to trust it; a bootstrap over units gives the weights'
uncertainty. The weights plug into :class:`~pexkit.LinearPolicy` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import nnls

from pexkit.exceptions import InvalidParameterError, NotFittedError

__all__ = ["ProxyWeights", "proxy_weights"]

FloatArray = NDArray[np.float64]


@dataclass
class ProxyWeights:
    """Learned weights of the short-term outcomes, as a proxy for a long-term one.

    Attributes
    ----------
    target : str
    weights : dict
        Outcome -> weight >= 0, scaled so that the proxy is in the target's
        units (``sum_m w_m s_m tau_m ~ s_target tau_target``); use with
        :class:`~pexkit.LinearPolicy` directly.
    r2 : float
        Share of the variation of the long-term effects (over units and
        treatments) the proxy explains.
    se : dict
        Bootstrap standard error of each weight.
    """

    target: str
    weights: dict[str, float]
    r2: float
    se: dict[str, float]
    n_units: int
    replicates: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per short-term outcome: weight, se, 95% interval (bootstrap percentiles)."""
        names = list(self.weights)
        lo, hi = (np.quantile(self.replicates, [0.025, 0.975], axis=0)
                  if self.replicates.size else (np.full(len(names), np.nan),) * 2)
        return pd.DataFrame({"weight": [self.weights[n] for n in names],
                             "se": [self.se[n] for n in names], "ci_low": lo, "ci_high": hi},
                            index=pd.Index(names, name="outcome"))

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "weights": self.weights, "r2": self.r2, "se": self.se,
                "n_units": self.n_units}


def _fit(A: FloatArray, b: FloatArray, weights: FloatArray | None = None) -> FloatArray:
    if weights is not None:
        r = np.sqrt(weights)
        A, b = A * r[:, None], b * r
    w, _ = nnls(A, b)
    return np.asarray(w, dtype=np.float64)


def _groups(tau: FloatArray, n_groups: int, seed: int) -> NDArray[np.int64]:
    """k-means (Lloyd, numpy) of the units on their standardized estimated effects."""
    Z = tau.reshape(tau.shape[0], -1)
    Z = (Z - Z.mean(axis=0)) / np.where(Z.std(axis=0) > 0, Z.std(axis=0), 1.0)
    rng = np.random.default_rng(seed)
    centers = Z[rng.choice(Z.shape[0], n_groups, replace=False)]
    labels = np.zeros(Z.shape[0], dtype=np.int64)
    for _ in range(25):
        d = ((Z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        labels = d.argmin(axis=1)
        for g in range(n_groups):
            members = labels == g
            if members.any():
                centers[g] = Z[members].mean(axis=0)
    return labels


def _group_effects(scores: FloatArray, groups: NDArray[np.int64], n_groups: int,
                   m: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per (group, treatment): mean DR effect of every outcome (G, K-1, M) and the group sizes."""
    size = np.asarray(np.bincount(groups, weights=m, minlength=n_groups), dtype=np.float64)
    G, K, M = n_groups, scores.shape[1], scores.shape[2]
    diff = scores[:, 1:, :] - scores[:, :1, :]  # DR pseudo-outcomes of each effect
    out = np.zeros((G, K - 1, M))
    for k in range(K - 1):
        for j in range(M):
            out[:, k, j] = np.bincount(groups, weights=m * diff[:, k, j], minlength=G)
    return out / np.where(size > 0, size, 1.0)[:, None, None], size


def proxy_weights(
    model: Any,
    target: str,
    outcomes: list[str] | None = None,
    n_groups: int | None = None,
    n_bootstrap: int = 200,
    random_state: int = 0,
) -> ProxyWeights:
    """Nonnegative weights on the short-term outcomes whose effects track ``target``'s.

    Units are grouped by their estimated effects (k-means on the out-of-fold
    effects); in each group and for each treatment, every outcome's effect is
    the mean of its doubly robust pseudo-outcomes (unbiased; averaging shrinks
    their noise, which would otherwise bias the weights toward 0). The weights
    solve nonnegative least squares of the target's effects on the short-term
    ones over (group, treatment), weighted by group size; ``r2`` is that fit's
    share of the variation explained. The bootstrap resamples units (groups fixed).

    Parameters
    ----------
    model : EffectModel
        Fitted on a history whose spec has the long-term ``target`` among its
        outcomes (its out-of-fold effects and DR scores are used).
    target : str
        The long-term outcome.
    outcomes : list of str, optional
        The short-term outcomes to weigh (default: every other outcome).
    n_groups : int, optional
        Groups of units (default: one per 200 units, between 4 and 40).
    n_bootstrap : int
        Bootstrap resamples of units for the weights' uncertainty.

    Examples
    --------
    >>> import numpy as np
    >>> from pexkit.longterm.proxy import _fit
    >>> A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> _fit(A, A @ np.array([0.3, 1.0])).round(6).tolist()
    [0.3, 1.0]
    """
    effects = getattr(model, "effects_", None)
    scores = getattr(model, "scores_", None)
    if effects is None or scores is None:
        raise NotFittedError("proxy_weights needs a fitted EffectModel; call fit(history) first.")
    spec = model.spec_
    names = list(spec.outcome_names)
    if target not in names:
        raise InvalidParameterError(
            f"the model has no outcome {target!r}; its outcomes are {names}. Fit it on a history "
            "whose spec lists the long-term outcome."
        )
    short = outcomes if outcomes is not None else [o for o in names if o != target]
    unknown = [o for o in short if o not in names or o == target]
    if unknown or not short:
        raise InvalidParameterError(
            f"'outcomes' must name short-term outcomes of the model other than the target; got {short}."
        )
    signs = {o.name: o.sign for o in spec.outcomes}
    t = names.index(target)
    cols = [names.index(o) for o in short]
    tau = np.asarray(effects, dtype=np.float64)[:, 1:, :]
    n = tau.shape[0]
    G = int(n_groups or min(40, max(4, n // 200)))
    if not 2 <= G <= n:
        raise InvalidParameterError(f"'n_groups' must be in [2, {n}]; got {n_groups!r}.")
    groups = _groups(tau, G, random_state)
    sc = np.asarray(scores, dtype=np.float64)
    sign_short = np.array([signs[o] for o in short])

    def solve(m: FloatArray) -> tuple[FloatArray, float]:
        eff, size = _group_effects(sc, groups, G, m)
        A = (eff[:, :, cols] * sign_short).reshape(-1, len(cols))
        b = (eff[:, :, t] * signs[target]).reshape(-1)
        wts = np.repeat(size, eff.shape[1])
        w = _fit(A, b, wts)
        mean_b = float((wts * b).sum() / wts.sum())
        r2 = 1.0 - float((wts * (b - A @ w) ** 2).sum() / (wts * (b - mean_b) ** 2).sum())
        return w, r2

    w, r2 = solve(np.ones(n))
    rng = np.random.default_rng(random_state)
    reps = np.empty((n_bootstrap, len(cols)))
    for i in range(n_bootstrap):
        reps[i] = solve(np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64))[0]
    se = reps.std(axis=0, ddof=1)
    return ProxyWeights(target, dict(zip(short, w.tolist(), strict=True)), r2,
                        dict(zip(short, se.tolist(), strict=True)), n, reps)
