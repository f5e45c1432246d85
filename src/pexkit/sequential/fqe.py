"""Fitted Q evaluation (FQE) with LightGBM: Q of a fixed policy from a decision log.

Le, Voloshin and Yue (2019): iterate ``Q_{k+1} = regress(r + gamma * V_k(s'))``
with ``V_k(s') = sum_a pi(a | s') Q_k(s', a)``. The regression is boosted trees
on the encoded state, the time left in the log (so that a value over the log's
window stays Markov) and the action; each iteration continues the previous
booster with a few trees fitted to the new targets, which costs a fraction of
refitting from scratch. Terminal decisions and an episode's last decision
(the end of what the log shows) take ``r`` alone as the target, so the value is
the discounted return over the log's window, the quantity the importance
sampling estimators estimate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit.sequential.log import TransitionLog

__all__ = ["FQE_DEFAULTS", "fit_fqe", "fqe_iterations"]

FloatArray = NDArray[np.float64]

#: LightGBM settings of each FQE iteration (``rounds`` trees added per iteration)
FQE_DEFAULTS: dict[str, Any] = {
    "rounds": 10,
    "first_rounds": 30,
    "num_leaves": 15,
    "learning_rate": 0.25,
    "min_data_in_leaf": 50,
    "iterations": None,
}


def fqe_iterations(log: TransitionLog, gamma: float, tol: float = 1e-3, cap: int = 80) -> int:
    """Bellman iterations needed: the longest episode, or until gamma^k < tol."""
    longest = int(log.lengths.max()) if log.n_episodes else 1
    if gamma >= 1.0:
        return min(longest, cap)
    return max(1, min(longest, cap, math.ceil(math.log(tol) / math.log(max(gamma, 1e-12)))))


def _design(
    X: FloatArray, remaining: FloatArray, actions: NDArray[np.int64], n_actions: int
) -> FloatArray:
    onehot = np.zeros((X.shape[0], n_actions))
    onehot[np.arange(X.shape[0]), actions] = 1.0
    return np.column_stack([X, remaining, onehot])


def fit_fqe(
    log: TransitionLog,
    target_probs: FloatArray,
    values: FloatArray,
    train: NDArray[np.bool_],
    *,
    gamma: float,
    random_state: int = 0,
    **options: Any,
) -> FloatArray:
    """Q of the target policy for each reward column, at every row of ``log``.

    Parameters
    ----------
    log : TransitionLog
    target_probs : ndarray (n, A)
        The evaluated policy's action probabilities at every row's state.
    values : ndarray (n, R)
        Per-decision rewards to evaluate (one FQE per column).
    train : ndarray of bool (n,)
        Rows the regressions learn from (the others only get predictions:
        cross-fitting).
    gamma : float

    Returns
    -------
    ndarray (n, A, R)
        ``Q_r(s_i, a)`` for every row i, action a and reward column r.
    """
    import lightgbm as lgb

    opts = {**FQE_DEFAULTS, **options}
    n, A = target_probs.shape
    R = values.shape[1]
    remaining = log.remaining
    designs = [_design(log.X, remaining, np.full(n, a, dtype=np.int64), A) for a in range(A)]
    logged = _design(log.X, remaining, log.actions, A)
    nxt = log.next_index
    has_next = (nxt >= 0) & ~log.done
    iters = int(opts["iterations"] or fqe_iterations(log, gamma) + 4)
    params = {
        "objective": "regression",
        "num_leaves": int(opts["num_leaves"]),
        "learning_rate": float(opts["learning_rate"]),
        "min_data_in_leaf": int(opts["min_data_in_leaf"]),
        "verbose": -1,
        "num_threads": 1,
        "seed": int(random_state),
        "deterministic": True,
        "force_row_wise": True,
    }
    rows = np.flatnonzero(train)
    out = np.zeros((n, A, R))
    # bins are found once (a reference Dataset); each iteration boosts a few trees
    # from the current Q (init_score) towards the new targets, and Q adds only the
    # new trees' predictions: the cost stays linear in the number of trees
    reference = lgb.Dataset(
        logged[rows], label=np.zeros(rows.size), params={"verbose": -1}, free_raw_data=False
    ).construct()
    logged_rows = logged[rows]
    act_rows = log.actions[rows]
    for r in range(R):
        q = np.zeros((n, A))
        for k in range(iters):
            v_next = np.zeros(n)
            if k > 0:
                v = (target_probs * q).sum(axis=1)
                v_next[has_next] = v[nxt[has_next]]
            target = (values[:, r] + gamma * v_next)[rows]
            if k == 0:  # start from the mean, as regression boosting does
                q[:] = target.mean()
            current = q[rows, act_rows]
            data = lgb.Dataset(
                logged_rows,
                label=target,
                init_score=current,
                reference=reference,
                params={"verbose": -1},
            )
            booster = lgb.train(
                params,
                data,
                num_boost_round=int(opts["first_rounds"] if k == 0 else opts["rounds"]),
            )
            for a, d in enumerate(designs):
                q[:, a] += booster.predict(d)
        out[:, :, r] = q
    return out
