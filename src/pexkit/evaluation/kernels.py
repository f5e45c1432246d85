"""Compiled (numba) kernels: one policy's sums in one pass; many policies in row blocks.

Evaluating a deterministic policy needs, per outcome, the sums of the chosen
arm's score ``v_i = H[i, a_i, m]``, of ``v_i^2``, of the lift term
``d_i = v_i - H[i, 0, m]`` and of ``d_i^2``: mean, variance and so the CI follow.
numpy needs several passes and temporaries for that; these kernels read each
row once. The batch kernel also chooses the actions: it walks rows in blocks
(each block stays in cache) and, for every row, evaluates all P policies'
utilities, so the (n, K, M) tables are read once for all policies.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

__all__ = ["batch_cluster_se", "batch_sums", "policy_sums"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@njit(parallel=True, cache=True)  # type: ignore[misc]
def _policy_sums(table: FloatArray, actions: IntArray, n_blocks: int) -> FloatArray:
    n, _, M = table.shape
    out = np.zeros((n_blocks, 4 * M))
    size = (n + n_blocks - 1) // n_blocks
    for b in prange(n_blocks):
        start = b * size
        stop = min(n, start + size)
        for i in range(start, stop):
            k = actions[i]
            for m in range(M):
                v = table[i, k, m]
                d = v - table[i, 0, m]
                out[b, m] += v
                out[b, M + m] += v * v
                out[b, 2 * M + m] += d
                out[b, 3 * M + m] += d * d
    result: FloatArray = out.sum(axis=0)
    return result


@njit(cache=True, inline="always")  # type: ignore[misc]
def _choose_arms(
    tau: FloatArray, i: int, weights_t: FloatArray, constants_t: FloatArray,
    best: FloatArray, util: FloatArray, arg: IntArray,
) -> None:
    # Every policy's arm for row i into arg: argmax_k sum_m tau[i,k,m] w_mp + c_kp (ties to
    # the lowest arm); policies innermost and contiguous, so the loops vectorize.
    K, M = tau.shape[1], tau.shape[2]
    P = weights_t.shape[1]
    for p in range(P):
        best[p] = constants_t[0, p]
        arg[p] = 0
    for k in range(1, K):
        for p in range(P):
            util[p] = constants_t[k, p]
        for m in range(M):
            t = tau[i, k, m]
            for p in range(P):
                util[p] += t * weights_t[m, p]
        for p in range(P):
            if util[p] > best[p]:
                best[p] = util[p]
                arg[p] = k


@njit(parallel=True, cache=True, fastmath=False)  # type: ignore[misc]
def _batch_sums(
    tau: FloatArray,
    diff: FloatArray,
    control: FloatArray,
    weights_t: FloatArray,
    constants_t: FloatArray,
    n_blocks: int,
) -> FloatArray:
    # Per policy: sum d, sum d^2, sum h0 * d per outcome (d = H[a] - H[0], zero
    # when the control is chosen) and the count per arm. Loops over policies are
    # innermost and contiguous (weights_t is (M, P)), so they vectorize.
    n, K, M = diff.shape
    P = weights_t.shape[1]
    width = 3 * M + K
    out = np.zeros((n_blocks, width, P))
    size = (n + n_blocks - 1) // n_blocks
    for b in prange(n_blocks):
        start = b * size
        stop = min(n, start + size)
        loc = np.zeros((width, P))
        best = np.empty(P)
        util = np.empty(P)
        arg = np.empty(P, dtype=np.int64)
        ind = np.empty(P)
        for i in range(start, stop):
            _choose_arms(tau, i, weights_t, constants_t, best, util, arg)
            for k in range(1, K):
                for p in range(P):
                    ind[p] = 1.0 if arg[p] == k else 0.0
                    loc[3 * M + k, p] += ind[p]
                for m in range(M):
                    d = diff[i, k, m]
                    d2 = d * d
                    h0d = control[i, m] * d
                    for p in range(P):
                        loc[m, p] += ind[p] * d
                        loc[M + m, p] += ind[p] * d2
                        loc[2 * M + m, p] += ind[p] * h0d
        out[b] = loc
    total = out.sum(axis=0)
    # control counts: every unit not sent to a treatment
    total[3 * M] = n - total[3 * M + 1 :].sum(axis=0)
    result: FloatArray = total.T.copy()
    return result


def _blocks(n: int) -> int:
    return int(max(1, min(256, n // 4096)))


def policy_sums(table: FloatArray, actions: IntArray) -> FloatArray:
    """Sums of v, v^2, d, d^2 per outcome for one deterministic policy; shape (4M,)."""
    table = np.ascontiguousarray(table, dtype=np.float64)
    actions = np.ascontiguousarray(actions, dtype=np.int64)
    return np.asarray(_policy_sums(table, actions, _blocks(actions.shape[0])))


def batch_sums(
    tau: FloatArray, table: FloatArray, signed_weights: FloatArray, constants: FloatArray
) -> FloatArray:
    """Per policy: sums of v, v^2, d, d^2 per outcome and counts per arm; (P, 4M + K).

    ``U_k(x_i) = sum_m tau[i,k,m] w_m s_m + c_k`` picks the arm (ties to the
    lowest index); ``tau[:, 0]`` must be 0 (effects vs control).
    """
    table = np.ascontiguousarray(table, dtype=np.float64)
    control = np.ascontiguousarray(table[:, 0, :])
    diff = table - table[:, :1, :]
    raw = np.asarray(
        _batch_sums(
            np.ascontiguousarray(tau, dtype=np.float64),
            diff,
            control,
            np.ascontiguousarray(np.asarray(signed_weights, dtype=np.float64).T),
            np.ascontiguousarray(np.asarray(constants, dtype=np.float64).T),
            _blocks(table.shape[0]),
        )
    )
    M = table.shape[2]
    sum_d, sum_d2, sum_h0d, counts = raw[:, :M], raw[:, M : 2 * M], raw[:, 2 * M : 3 * M], raw[:, 3 * M :]
    s0 = control.sum(axis=0)
    s00 = (control * control).sum(axis=0)
    sum_v = s0[None, :] + sum_d
    sum_v2 = s00[None, :] + 2 * sum_h0d + sum_d2
    return np.concatenate([sum_v, sum_v2, sum_d, sum_d2, counts], axis=1)


@njit(parallel=True, cache=True, fastmath=False)  # type: ignore[misc]
def _batch_cluster_sums(
    tau: FloatArray,
    diff: FloatArray,
    control: FloatArray,
    weights_t: FloatArray,
    constants_t: FloatArray,
    starts: IntArray,
    n_blocks: int,
) -> FloatArray:
    # Rows sorted by cluster; cluster g is rows starts[g]:starts[g+1]. Per policy
    # and outcome: sum_g D_g^2, sum_g C_g D_g and sum_g n_g D_g, where D_g is the
    # cluster's sum of lift terms d (0 where the control is chosen) and C_g its sum
    # of control scores. Blocks are whole clusters, so they add up.
    n, K, M = diff.shape
    P = weights_t.shape[1]
    G = starts.shape[0] - 1
    out = np.zeros((n_blocks, 3 * M, P))
    size = (G + n_blocks - 1) // n_blocks
    for b in prange(n_blocks):
        loc = np.zeros((3 * M, P))
        D = np.zeros((M, P))
        C = np.zeros(M)
        best = np.empty(P)
        util = np.empty(P)
        arg = np.empty(P, dtype=np.int64)
        for g in range(b * size, min(G, (b + 1) * size)):
            D[:, :] = 0.0
            C[:] = 0.0
            for i in range(starts[g], starts[g + 1]):
                _choose_arms(tau, i, weights_t, constants_t, best, util, arg)
                for m in range(M):
                    C[m] += control[i, m]
                    for p in range(P):
                        if arg[p] > 0:
                            D[m, p] += diff[i, arg[p], m]
            size_g = float(starts[g + 1] - starts[g])
            for m in range(M):
                for p in range(P):
                    loc[m, p] += D[m, p] * D[m, p]
                    loc[M + m, p] += C[m] * D[m, p]
                    loc[2 * M + m, p] += size_g * D[m, p]
        out[b] = loc
    result: FloatArray = out.sum(axis=0).T.copy()
    return result


def batch_cluster_se(
    tau: FloatArray, table: FloatArray, signed_weights: FloatArray, constants: FloatArray,
    clusters: IntArray, sums: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Cluster-robust standard errors of :func:`batch_sums`' values and lifts; each (P, M).

    ``clusters``: a code per row; ``sums``: what :func:`batch_sums` returned for
    the same policies (their means centre the cluster totals). CR1, as
    :func:`pexkit._stats.mean_se`.
    """
    order = np.argsort(clusters, kind="stable")
    sorted_codes = np.asarray(clusters)[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1], True])
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    G = starts.shape[0] - 1
    n, _, M = table.shape
    table = np.ascontiguousarray(np.asarray(table, dtype=np.float64)[order])
    control = np.ascontiguousarray(table[:, 0, :])
    raw = np.asarray(
        _batch_cluster_sums(
            np.ascontiguousarray(np.asarray(tau, dtype=np.float64)[order]),
            table - table[:, :1, :],
            control,
            np.ascontiguousarray(np.asarray(signed_weights, dtype=np.float64).T),
            np.ascontiguousarray(np.asarray(constants, dtype=np.float64).T),
            starts,
            int(max(1, min(256, G // 64))),
        )
    )
    dd, cd, nd = raw[:, :M], raw[:, M : 2 * M], raw[:, 2 * M : 3 * M]
    sizes = np.diff(starts).astype(np.float64)
    cluster_control = np.add.reduceat(control, starts[:-1], axis=0)  # (G, M)
    cc = (cluster_control**2).sum(axis=0)
    nc = (sizes[:, None] * cluster_control).sum(axis=0)
    nn = float((sizes**2).sum())
    value, lift = sums[:, :M] / n, sums[:, 2 * M : 3 * M] / n
    factor = G / max(G - 1, 1) / n**2
    var_d = factor * (dd - 2 * lift * nd + lift**2 * nn)
    ss = cc[None, :] + 2 * cd + dd
    ns = nc[None, :] + nd
    var_v = factor * (ss - 2 * value * ns + value**2 * nn)
    return np.sqrt(np.maximum(var_v, 0.0)), np.sqrt(np.maximum(var_d, 0.0))
