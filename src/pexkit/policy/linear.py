"""LinearPolicy: the PEX linear utility decision policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError
from pexkit.spec import ExperimentSpec

__all__ = ["LinearPolicy", "choose_batch"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class LinearPolicy:
    r"""Pick, per unit, the treatment with the largest linear utility.

    Parameters
    ----------
    spec : ExperimentSpec
        Gives the treatments, the outcomes and their goal signs.
    weights : mapping, optional
        ``{outcome: w_m}`` with ``w_m >= 0``; missing outcomes get 0. Default:
        the spec's default utility weights.
    biases : mapping, optional
        ``{treatment: {outcome: b_km}}``; missing entries are 0 and the
        control's bias is always 0.

    Notes
    -----
    .. math:: U_k(x) = \sum_m w_m s_m (\tau_{k,m}(x) + b_{k,m}),\quad
              \pi(x) = \arg\max_k U_k(x)

    with ``s_m = +1`` for maximized and ``-1`` for minimized outcomes and
    ``tau_{0,m} = b_{0,m} = 0``. Ties go to the lowest index (control first).
    The flat parameter vector fixes ``w_1 = 1`` and holds
    ``(w_2..w_M, b_{1,1..M}, ..., b_{K-1,1..M})``: ``(M-1) + (K-1) M`` numbers.

    Examples
    --------
    >>> spec = ExperimentSpec(treatment="arm", arms=["c", "t"],
    ...     outcomes=["clicks", {"name": "cost", "goal": "minimize"}], numeric=["x"])
    >>> policy = LinearPolicy(spec, weights={"clicks": 1.0, "cost": 0.5})
    >>> tau = np.array([[[0, 0], [1.0, 1.0]], [[0, 0], [1.0, 3.0]]])
    >>> policy.choose(tau).tolist()
    [1, 0]
    """

    def __init__(
        self,
        spec: ExperimentSpec,
        weights: Mapping[str, float] | None = None,
        biases: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        if not isinstance(spec, ExperimentSpec):
            raise InvalidParameterError(
                f"'spec' must be an ExperimentSpec; got {type(spec).__name__}."
            )
        self.spec = spec
        n_treat, n_out = spec.n_treatments, spec.n_outcomes
        w = np.zeros(n_out)
        for name, value in (weights if weights is not None else spec.default_weights).items():
            m = spec.outcome_index(name)
            if not np.isfinite(value) or value < 0:
                raise InvalidParameterError(
                    f"weight of outcome {name!r} must be a finite number >= 0; got "
                    f"{value!r}. The goal sign comes from the spec (goal: minimize)."
                )
            w[m] = float(value)
        b = np.zeros((n_treat, n_out))
        for arm, per_outcome in (biases or {}).items():
            k = spec.treatment_index(arm)
            if not isinstance(per_outcome, Mapping):
                raise InvalidParameterError(
                    f"biases[{arm!r}] must map outcome names to numbers (a bias per outcome, "
                    f"in that outcome's units), e.g. {{{arm!r}: {{{spec.outcome_names[0]!r}: "
                    f"-0.1}}}}; got {per_outcome!r}."
                )
            for name, value in per_outcome.items():
                m = spec.outcome_index(name)
                if not np.isfinite(value):
                    raise InvalidParameterError(
                        f"bias of ({arm!r}, {name!r}) must be finite; got {value!r}."
                    )
                if k == 0 and value != 0:
                    raise InvalidParameterError(
                        f"the control arm {arm!r} has no bias (b_0 = 0); got {value!r} "
                        f"for outcome {name!r}. Shift the other arms instead."
                    )
                b[k, m] = float(value)
        self.weight_vector = w
        self.bias_matrix = b

    # ------------------------------------------------------------ views
    @property
    def weights(self) -> dict[str, float]:
        """Weights per outcome."""
        return {n: float(v) for n, v in zip(self.spec.outcome_names, self.weight_vector, strict=True)}

    @property
    def biases(self) -> dict[str, dict[str, float]]:
        """Biases per non-control treatment and outcome."""
        return {
            arm: {
                n: float(self.bias_matrix[k, m])
                for m, n in enumerate(self.spec.outcome_names)
            }
            for k, arm in enumerate(self.spec.arms)
            if k > 0
        }

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector, ``(M-1) + (K-1) M``."""
        return _n_params(self.spec)

    def utility_text(self) -> str:
        """The utility in words: ``1 engagement - 10 unsubscribe + 1 revenue`` (goal signs applied).

        Outcomes with weight 0 are left out.
        """
        parts = []
        for name, w, sign in zip(self.spec.outcome_names, self.weight_vector, self.spec.signs,
                                 strict=True):
            if w == 0:
                continue
            op = "-" if sign < 0 else "+"
            parts.append(f"{op} {w:g} {name}")
        text = " ".join(parts) or "0"
        return text[2:] if text.startswith("+ ") else text

    def shift_text(self) -> str:
        """The biases as each arm's shift of the utility, ``light +0.01, heavy -0.02``
        (arms without one left out; empty when there are none)."""
        shifts = self.bias_matrix @ self.signed_weights()
        return ", ".join(f"{arm} {b:+.3g}" for arm, b in zip(self.spec.arms, shifts, strict=True)
                         if abs(b) > 1e-12)

    def signed_weights(self) -> FloatArray:
        """Return ``w_m s_m`` per outcome."""
        out: FloatArray = self.weight_vector * np.asarray(self.spec.signs)
        return out

    # ----------------------------------------------------- parameter vector
    def to_vector(self) -> FloatArray:
        """Flat parameters with ``w_1`` scaled to 1 (the policy is scale-free).

        Raises InvalidParameterError when ``w_1 = 0`` (no such scaling exists).
        """
        w1 = self.weight_vector[0]
        if w1 <= 0:
            raise InvalidParameterError(
                f"to_vector fixes the first outcome's weight to 1, but it is {w1}; "
                "give the first outcome a positive weight."
            )
        w = self.weight_vector[1:] / w1
        return np.concatenate([w, self.bias_matrix[1:].ravel()])

    @classmethod
    def from_vector(cls, spec: ExperimentSpec, vector: Any) -> LinearPolicy:
        """Build a policy from a flat vector ``(w_2..w_M, b_1, ..., b_{K-1})``."""
        vec = np.asarray(vector, dtype=np.float64)
        n = _n_params(spec)
        if vec.shape != (n,):
            raise InvalidParameterError(
                f"'vector' must have shape ({n},) = (M-1) + (K-1)*M for this spec; "
                f"got {vec.shape}."
            )
        n_out = spec.n_outcomes
        weights = {spec.outcome_names[0]: 1.0}
        for m in range(1, n_out):
            weights[spec.outcome_names[m]] = float(vec[m - 1])
        b = vec[n_out - 1 :].reshape(spec.n_treatments - 1, n_out)
        biases = {
            arm: {o: float(b[k - 1, m]) for m, o in enumerate(spec.outcome_names)}
            for k, arm in enumerate(spec.arms)
            if k > 0
        }
        return cls(spec, weights, biases)

    @classmethod
    def from_shrinkage(
        cls,
        spec: ExperimentSpec,
        weights: Mapping[str, float],
        alpha: Mapping[str, float],
        ate: Any,
    ) -> LinearPolicy:
        r"""Build the policy that ranks shrunken effects.

        Parameters
        ----------
        weights : mapping
            ``{outcome: w_m}``.
        alpha : mapping
            ``{outcome: alpha_m}`` in (0, 1]; 1 means no shrinkage.
        ate : array-like of shape (n_treatments, n_outcomes) or DataFrame
            Average effects vs control (control row 0), or ``EffectModel.ate()``.

        Notes
        -----
        ``tau~ = alpha tau + (1 - alpha) ATE`` is the linear policy with
        ``w'_m = w_m alpha_m`` and ``b_{k,m} = (1 - alpha_m) / alpha_m ATE_{k,m}``.
        """
        ate_matrix = _ate_matrix(spec, ate)
        w: dict[str, float] = {}
        biases: dict[str, dict[str, float]] = {a: {} for a in spec.arms[1:]}
        for m, name in enumerate(spec.outcome_names):
            a = float(alpha.get(name, 1.0))
            if not 0 < a <= 1:
                raise InvalidParameterError(
                    f"alpha of outcome {name!r} must be in (0, 1]; got {a!r}."
                )
            w[name] = float(weights.get(name, 0.0)) * a
            for k, arm in enumerate(spec.arms):
                if k > 0:
                    biases[arm][name] = (1 - a) / a * float(ate_matrix[k, m])
        return cls(spec, w, biases)

    # -------------------------------------------------------------- choose
    def utilities(self, tau: FloatArray) -> FloatArray:
        """Utility of each treatment, shape (n_units, n_treatments)."""
        tau = _check_tau(self.spec, tau)
        sw = self.signed_weights()
        util: FloatArray = tau @ sw + (self.bias_matrix @ sw)[None, :]
        return util

    def choose(self, tau: FloatArray) -> IntArray:
        """Treatment index per unit.

        Parameters
        ----------
        tau : ndarray of shape (n_units, n_treatments, n_outcomes)
            Effects vs control (``EffectModel.predict``).

        Returns
        -------
        ndarray of shape (n_units,)
        """
        actions: IntArray = np.argmax(self.utilities(tau), axis=1).astype(np.int64)
        return actions

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"weights": ..., "biases": ...}``."""
        return {"weights": self.weights, "biases": self.biases}

    def __repr__(self) -> str:
        return f"LinearPolicy(weights={self.weights}, biases={self.biases})"


def _n_params(spec: ExperimentSpec) -> int:
    return (spec.n_outcomes - 1) + (spec.n_treatments - 1) * spec.n_outcomes


def _check_tau(spec: ExperimentSpec, tau: Any) -> FloatArray:
    arr = np.asarray(tau, dtype=np.float64)
    want = (spec.n_treatments, spec.n_outcomes)
    if arr.ndim != 3 or arr.shape[1:] != want:
        raise InvalidParameterError(
            f"'tau' must have shape (n_units, {want[0]}, {want[1]}) = (units, "
            f"treatments, outcomes); got {arr.shape}. Pass EffectModel.predict(X)."
        )
    return arr


def _ate_matrix(spec: ExperimentSpec, ate: Any) -> FloatArray:
    if hasattr(ate, "columns"):
        mat = np.zeros((spec.n_treatments, spec.n_outcomes))
        for row in ate.itertuples():
            mat[spec.treatment_index(row.treatment), spec.outcome_index(row.outcome)] = (
                row.estimate
            )
        return mat
    mat = np.asarray(ate, dtype=np.float64)
    if mat.shape != (spec.n_treatments, spec.n_outcomes):
        raise InvalidParameterError(
            f"'ate' must have shape ({spec.n_treatments}, {spec.n_outcomes}) with the "
            f"control row 0; got {mat.shape}."
        )
    return mat


def choose_batch(
    spec: ExperimentSpec, tau: FloatArray, params: Any, chunk: int = 16
) -> IntArray:
    """Actions of P policies at once.

    Parameters
    ----------
    tau : ndarray of shape (n_units, n_treatments, n_outcomes)
    params : array-like of shape (P, (M-1) + (K-1) M) or list of LinearPolicy
        Flat parameter vectors (``w_1 = 1``) or policies.
    chunk : int
        Policies processed per block (bounds memory to ``chunk * n * K``).

    Returns
    -------
    ndarray of shape (P, n_units)
    """
    tau = _check_tau(spec, tau)
    sw, const = _batch_params(spec, params)
    n, n_treat, _ = tau.shape
    by_arm = np.ascontiguousarray(tau.transpose(1, 2, 0))  # (K, M, n): rows contiguous
    out = np.empty((sw.shape[0], n), dtype=np.int64)
    for start in range(0, sw.shape[0], chunk):
        stop = min(start + chunk, sw.shape[0])
        w, c = sw[start:stop], const[start:stop]
        best = w @ by_arm[0] + c[:, :1]
        arg = np.zeros(best.shape, dtype=np.int64)
        for k in range(1, n_treat):
            util = w @ by_arm[k] + c[:, k : k + 1]
            better = util > best  # strict: ties keep the lower index
            arg[better] = k
            np.maximum(best, util, out=best)
        out[start:stop] = arg
    return out


def _batch_params(spec: ExperimentSpec, params: Any) -> tuple[FloatArray, FloatArray]:
    signs = np.asarray(spec.signs)
    if isinstance(params, list | tuple) and params and isinstance(params[0], LinearPolicy):
        sw = np.stack([p.signed_weights() for p in params])
        const = np.stack([p.bias_matrix @ p.signed_weights() for p in params])
        return sw, const
    arr = np.atleast_2d(np.asarray(params, dtype=np.float64))
    n = _n_params(spec)
    if arr.ndim != 2 or arr.shape[1] != n:
        raise InvalidParameterError(
            f"'params' must have shape (P, {n}) = (policies, (M-1) + (K-1)*M); got "
            f"{arr.shape}."
        )
    n_out = spec.n_outcomes
    w = np.column_stack([np.ones(arr.shape[0]), arr[:, : n_out - 1]])
    if (w < 0).any():
        raise InvalidParameterError("'params' weights (first M-1 columns) must be >= 0.")
    b = arr[:, n_out - 1 :].reshape(arr.shape[0], spec.n_treatments - 1, n_out)
    sw = w * signs[None, :]
    const = np.zeros((arr.shape[0], spec.n_treatments))
    const[:, 1:] = np.einsum("pkm,pm->pk", b, sw)
    return sw, const
