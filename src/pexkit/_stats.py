"""Small statistical helpers shared by every layer: the 95% quantile, standard errors of means.

Every standard error pexkit reports is the standard error of a mean of
per-row terms (DR scores, influence functions). Rows are independent unless
the experiment randomized clusters of them (households, schools, stores:
``cluster:`` in the spec); then the terms of one cluster are correlated and the
cluster-robust (CR1, Liang and Zeger 1986) variance of the mean is

.. math:: \\widehat{V} = \\frac{G}{G-1} \\frac{1}{n^2} \\sum_g \\Big(\\sum_{i \\in g} (t_i - \\bar t)\\Big)^2

with ``G`` clusters. With one row per cluster it is the usual ``s^2 / n``.

Examples
--------
>>> import numpy as np
>>> t = np.array([1.0, 2.0, 3.0, 4.0])
>>> bool(np.isclose(mean_se(t), t.std(ddof=1) / 2))
True
>>> bool(np.isclose(mean_se(t, np.arange(4)), mean_se(t)))  # one row per cluster: the same
True
>>> round(float(mean_se(t, np.array([0, 0, 1, 1]))), 4)  # two clusters of two correlated rows
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse, stats

__all__ = ["Z95", "cluster_codes", "cluster_totals", "mean_cov", "mean_se", "refit_spread"]

Z95 = float(stats.norm.ppf(0.975))  # two-sided 95% normal quantile


def cluster_codes(clusters: NDArray[Any]) -> tuple[NDArray[np.int64], int]:
    """Codes ``0..G-1`` for the clusters present in ``clusters``, and ``G``."""
    codes = np.asarray(np.unique(np.asarray(clusters), return_inverse=True)[1], dtype=np.int64)
    codes = codes.ravel()
    return codes, int(codes.max()) + 1 if codes.size else 0


def cluster_totals(codes: NDArray[np.int64], G: int, terms: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sums of the rows of ``terms`` (n, d) per cluster: (G, d)."""
    n = codes.shape[0]
    indicator = sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(G, n))
    return np.asarray(indicator @ terms, dtype=np.float64)


def mean_se(terms: Any, clusters: NDArray[Any] | None = None) -> Any:
    """Standard error of the mean of ``terms`` (n,) or of each column of (n, d).

    ``clusters``: a label per row (None: rows are independent); rows of one
    cluster are summed before the variance (CR1). NaN when there are fewer
    than 2 rows (or clusters).
    """
    t = np.asarray(terms, dtype=np.float64)
    flat = t.ndim == 1
    t2 = t.reshape(t.shape[0], -1)
    n = t2.shape[0]
    if clusters is None:
        se = t2.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(t2.shape[1], np.nan)
    else:
        codes, G = cluster_codes(clusters)
        if G < 2:
            se = np.full(t2.shape[1], np.nan)
        else:
            totals = cluster_totals(codes, G, t2 - t2.mean(axis=0))
            se = np.sqrt(G / (G - 1) * (totals**2).sum(axis=0)) / n
    return float(se[0]) if flat else se


def mean_cov(terms: NDArray[np.float64], clusters: NDArray[Any] | None = None) -> NDArray[np.float64]:
    """Covariance matrix (d, d) of the column means of ``terms`` (n, d); CR1 with ``clusters``.

    Its diagonal is :func:`mean_se` squared. NaN with fewer than 2 rows (or clusters).
    """
    t = np.asarray(terms, dtype=np.float64).reshape(len(terms), -1)
    n, d = t.shape
    if clusters is None:
        if n < 2:
            return np.full((d, d), np.nan)
        return np.atleast_2d(np.cov(t, rowvar=False)) / n
    codes, G = cluster_codes(clusters)
    if G < 2:
        return np.full((d, d), np.nan)
    totals = cluster_totals(codes, G, t - t.mean(axis=0))
    return np.asarray(G / (G - 1) * (totals.T @ totals) / n**2, dtype=np.float64)


def refit_spread(draws: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Weighted (Hajek) means of an estimated outcome's refit deviations: (P, B).

    An outcome that is itself a model's prediction (a surrogate index) has an
    error of its own, which resampling the experiment's rows does not show.
    ``draws`` (n, B) holds, per row, the outcome under B refits of its model
    (on resampled training data) minus the outcome used; ``weights`` (P, n) are
    P estimands' inverse-propensity weights (e.g. ``1{T_i = a_i} / p_i``). The
    spread over B of each row of the result is that estimand's error from the
    outcome's model, to add in quadrature to its sampling error.

    >>> d = np.array([[0.1, -0.1], [0.3, -0.3]])
    >>> refit_spread(d, np.array([[1.0, 1.0], [1.0, 0.0]])).round(2).tolist()
    [[0.2, -0.2], [0.1, -0.1]]
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    total = w.sum(axis=1, keepdims=True)
    total[total == 0] = np.nan
    out: NDArray[np.float64] = (w @ np.asarray(draws, dtype=np.float64)) / total
    return out
