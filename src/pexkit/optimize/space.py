"""The linear policy space searched by the optimizers, mapped to the unit cube."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError
from pexkit.policy import LinearPolicy
from pexkit.spec import ExperimentSpec

__all__ = ["PolicySpace"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PolicySpace:
    r"""Linear policies as points of ``[0, 1]^d``.

    Parameters
    ----------
    spec : ExperimentSpec
    effect_scale : ndarray of shape (n_outcomes,)
        Spread of the estimated effects per outcome; weights act on effects
        divided by it, so that every direction of the weight vector matters.
    bias_bound : ndarray of shape (n_treatments - 1, n_outcomes)
        Half-width of each bias's range.
    ate : ndarray of shape (n_treatments, n_outcomes)
        Average effects (control row 0), for the shrinkage parameterization.
    biases : bool
        Search the per-treatment biases too (the paper's Figure 2 claim is that
        they widen the front).
    parameterization : {"weights", "shrinkage"}
        ``weights``: directions of ``w`` plus biases ``b_{k,m}``;
        ``shrinkage``: directions of ``w`` plus ``alpha_m`` in (0, 1] that shrink
        each outcome's effects towards its ATE.

    Notes
    -----
    The weight direction uses M-1 angles ``theta_j = u_j pi / 2``: a unit vector
    in the positive orthant (``w_m >= 0``, any of them may be 0), so the first
    weight is not forced to 1 as in the flat vector. Biases map
    ``u -> (2u - 1) * bias_bound``. Bounds are derived from the data: the bias
    half-width is ``|ATE_{k,m}| + 2 sd_i(tau_{k,m}(x_i))``, enough to turn a
    treatment fully on or off.
    """

    spec: ExperimentSpec
    effect_scale: FloatArray
    bias_bound: FloatArray
    ate: FloatArray
    biases: bool = True
    parameterization: str = "weights"

    def __post_init__(self) -> None:
        if self.parameterization not in ("weights", "shrinkage"):
            raise InvalidParameterError(
                f"'parameterization' must be 'weights' or 'shrinkage'; got "
                f"{self.parameterization!r}."
            )

    @classmethod
    def from_effects(
        cls,
        spec: ExperimentSpec,
        tau: FloatArray,
        biases: bool = True,
        parameterization: str = "weights",
    ) -> PolicySpace:
        """Derive bounds from estimated effects ``tau`` (n, K, M)."""
        tau = np.asarray(tau, dtype=np.float64)
        ate = tau.mean(axis=0)
        spread = tau[:, 1:, :].std(axis=0)  # (K-1, M)
        scale = np.sqrt((tau[:, 1:, :] ** 2).mean(axis=(0, 1)))
        return cls._from_stats(spec, ate, spread, scale, biases, parameterization)

    @classmethod
    def _from_stats(
        cls, spec: ExperimentSpec, ate: FloatArray, spread: FloatArray, scale: FloatArray,
        biases: bool, parameterization: str,
    ) -> PolicySpace:
        """Bounds from the effects' means (K, M), spreads (K-1, M) and root mean squares (M,)."""
        scale = np.where(scale > 0, scale, 1.0)
        bound = np.abs(ate[1:]) + 2 * spread
        bound = np.where(bound > 0, bound, scale[None, :])
        return cls(spec, scale, bound, ate, biases, parameterization)

    @classmethod
    def from_moments(
        cls,
        spec: ExperimentSpec,
        mean: FloatArray,
        mean_sq: FloatArray,
        biases: bool = True,
        parameterization: str = "weights",
    ) -> PolicySpace:
        """:meth:`from_effects` from the per-unit means of ``tau`` and ``tau**2`` (K, M):
        what a log kept in parts (on a cluster) can sum without gathering ``tau``."""
        ate = np.asarray(mean, dtype=np.float64)
        sq = np.asarray(mean_sq, dtype=np.float64)
        spread = np.sqrt(np.maximum(sq[1:] - ate[1:] ** 2, 0.0))
        scale = np.sqrt(sq[1:].mean(axis=0))
        return cls._from_stats(spec, ate, spread, scale, biases, parameterization)

    @property
    def n_weights(self) -> int:
        """Angles for the weight direction, M - 1."""
        return self.spec.n_outcomes - 1

    @property
    def dim(self) -> int:
        """Dimension of the search space."""
        K, M = self.spec.n_treatments, self.spec.n_outcomes
        if self.parameterization == "shrinkage":
            return (M - 1) + M
        return (M - 1) + ((K - 1) * M if self.biases else 0)

    def _direction(self, u: FloatArray) -> FloatArray:
        """Unit vectors in the positive orthant from angles; (P, M-1) -> (P, M)."""
        P = u.shape[0]
        M = self.spec.n_outcomes
        theta = u[:, : M - 1] * (np.pi / 2)
        d = np.ones((P, M))
        for j in range(M - 1):
            d[:, j] *= np.cos(theta[:, j])
            d[:, j + 1 :] *= np.sin(theta[:, j])[:, None]
        d[np.abs(d) < 1e-12] = 0.0
        return d

    def weights_biases(self, U: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Weights (P, M) and biases (P, K, M) for points ``U`` of shape (P, dim)."""
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        if U.shape[1] != self.dim:
            raise InvalidParameterError(
                f"points must have {self.dim} coordinates in [0, 1]; got shape {U.shape}."
            )
        U = np.clip(U, 0.0, 1.0)
        K, M = self.spec.n_treatments, self.spec.n_outcomes
        w = self._direction(U) / self.effect_scale[None, :]
        b = np.zeros((U.shape[0], K, M))
        if self.parameterization == "shrinkage":
            alpha = 0.02 + 0.98 * U[:, M - 1 :]
            w = w * alpha
            b[:, 1:, :] = ((1 - alpha) / alpha)[:, None, :] * self.ate[None, 1:, :]
        elif self.biases:
            raw = U[:, M - 1 :].reshape(-1, K - 1, M)
            b[:, 1:, :] = (2 * raw - 1) * self.bias_bound[None, :, :]
        return w, b

    def to_unit(self, policy: LinearPolicy, clip: bool = True) -> FloatArray:
        """The point whose policy is ``policy`` (the inverse of :meth:`policies`), shape (dim,).

        The weight direction comes from ``policy``'s weights times
        ``effect_scale``; the biases from its bias matrix (clipped to
        ``bias_bound`` with ``clip``: the nearest policy of the space). Only for
        the ``weights`` parameterization.
        """
        if self.parameterization != "weights":
            raise InvalidParameterError(
                "to_unit maps policies into the 'weights' parameterization only; got "
                f"{self.parameterization!r}."
            )
        K, M = self.spec.n_treatments, self.spec.n_outcomes
        if tuple(policy.spec.arms) != tuple(self.spec.arms) or tuple(
            policy.spec.outcome_names
        ) != tuple(self.spec.outcome_names):
            raise InvalidParameterError(
                "the policy's arms and outcomes differ from the space's: "
                f"{policy.spec.arms}/{policy.spec.outcome_names} vs "
                f"{self.spec.arms}/{self.spec.outcome_names}."
            )
        d = policy.weight_vector * self.effect_scale
        norm = float(np.linalg.norm(d))
        if norm <= 0:
            raise InvalidParameterError(
                "a policy whose weights are all 0 has no direction (it sends everyone to "
                "control); give some outcome a positive weight."
            )
        d = d / norm
        u = np.zeros(self.dim)
        for j in range(M - 1):
            rest = float(np.linalg.norm(d[j + 1 :]))
            u[j] = np.arctan2(rest, float(d[j])) / (np.pi / 2)  # arctan2(0, 0) = 0
        if self.biases:
            u[M - 1 :] = ((policy.bias_matrix[1:] / self.bias_bound + 1.0) / 2.0).reshape(
                (K - 1) * M
            )
        return np.clip(u, 0.0, 1.0) if clip else u

    def policies(self, U: FloatArray) -> list[LinearPolicy]:
        """LinearPolicy objects for points ``U``."""
        w, b = self.weights_biases(U)
        spec = self.spec
        out = []
        for p in range(w.shape[0]):
            weights = {o: float(w[p, m]) for m, o in enumerate(spec.outcome_names)}
            biases = {
                arm: {o: float(b[p, k, m]) for m, o in enumerate(spec.outcome_names)}
                for k, arm in enumerate(spec.arms)
                if k > 0
            }
            out.append(LinearPolicy(spec, weights, biases))
        return out
