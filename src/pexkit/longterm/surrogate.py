"""SurrogateIndex: a long-term outcome predicted from short-term ones, for any experiment.

The surrogate index (Athey, Chetty, Imbens and Kang, 2019) is ``E[Y_long | S, X]``,
the long-term outcome given the short-term outcomes S (the surrogates) and the
pre-treatment features X, fitted on a history where Y_long was observed (an
earlier cohort). Under surrogacy (the treatment moves Y_long only through S:
``Y_long _||_ T | S, X``) the treatment's effect on the index equals its effect
on Y_long, so the index is an outcome like any other: :meth:`transform` adds it
to a log, and effects, policies, evaluation and the report use it unchanged.

When not to trust it, from the history (:meth:`diagnostics`):

- ``r2``: the share of Y_long's variance the index explains (cross-fitted);
- per arm, the effect on Y_long and on the index, and the share of the former
  the latter carries;
- the surrogacy check: the effect of the treatment on the residual ``Y_long -
  index`` (cross-fitted). Under surrogacy it is 0; a significant effect means the
  treatment moves the long-term outcome in ways the surrogates do not show.

:meth:`ate` estimates the long-term effect of each arm on a new experiment with
a CI that also carries the index's own estimation error (a bootstrap of the
history that refits the index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from pexkit.data import LoggedData
from pexkit.data.logged import FeatureEncoder
from pexkit.exceptions import InvalidDataError, InvalidParameterError, NotFittedError
from pexkit.spec import ExperimentSpec

__all__ = ["SurrogateIndex"]

FloatArray = NDArray[np.float64]

_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "num_leaves": 15,
    "learning_rate": 0.05,
    "min_data_in_leaf": 40,
    "verbose": -1,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
}


def _arm_means(y: FloatArray, treatment: NDArray[np.int64], propensity: FloatArray,
               k: int) -> tuple[float, FloatArray]:
    """Hajek mean of arm k and its influence terms (n,)."""
    w = np.where(treatment == k, 1.0 / propensity, 0.0)
    total = float(w.sum())
    if total == 0:
        raise InvalidDataError(f"arm {k} has no units; the surrogate index needs every arm.")
    mean = float((w * y).sum() / total)
    return mean, y.shape[0] * w * (y - mean) / total


def _effect(y: FloatArray, data: LoggedData, k: int) -> tuple[float, float]:
    """Effect of arm k vs control on y, and its standard error (IPW, Hajek)."""
    m0, i0 = _arm_means(y, data.treatment, data.propensity, 0)
    mk, ik = _arm_means(y, data.treatment, data.propensity, k)
    diff = ik - i0
    return mk - m0, float(diff.std(ddof=1) / np.sqrt(diff.shape[0]))


class SurrogateIndex:
    """The long-term outcome's prediction from short-term outcomes and features.

    Parameters
    ----------
    target : str
        The long-term outcome (an outcome of the history's spec, observed there).
    surrogates : sequence of str, optional
        Short-term outcomes to predict it from (default: every other outcome of
        the history's spec).
    features : bool
        Also condition on the pre-treatment features (recommended: surrogacy
        given X is weaker than surrogacy alone).
    name : str, optional
        Name of the new outcome (default ``target + "~"``).
    n_folds : int
        Cross-fitting folds for the diagnostics (and for the history's own rows).
    rounds : int
        LightGBM trees.
    random_state : int

    Examples
    --------
    >>> import numpy as np, pandas as pd, pexkit as px
    >>> from pexkit.longterm import SurrogateIndex
    >>> rng = np.random.default_rng(0)
    >>> n = 2000
    >>> df = pd.DataFrame({"arm": rng.choice(["c", "t"], n), "x": rng.normal(size=n)})
    >>> df["clicks"] = df["x"] + (df["arm"] == "t") + rng.normal(size=n)
    >>> df["retained"] = 0.5 * df["clicks"] + rng.normal(0, 0.5, n)
    >>> spec = px.ExperimentSpec(treatment="arm", arms=["c", "t"], numeric=["x"],
    ...     outcomes=[{"name": "clicks"}, {"name": "retained", "weight": 0}])
    >>> history = px.LoggedData.from_frame(df, spec)
    >>> index = SurrogateIndex("retained", rounds=50).fit(history)
    >>> round(index.diagnostics()["r2"], 1) > 0.4
    True
    """

    def __init__(
        self,
        target: str,
        surrogates: Sequence[str] | None = None,
        features: bool = True,
        name: str | None = None,
        n_folds: int = 5,
        rounds: int = 200,
        random_state: int = 0,
    ) -> None:
        if not isinstance(target, str) or not target:
            raise InvalidParameterError(f"'target' must name the long-term outcome; got {target!r}.")
        if n_folds < 2:
            raise InvalidParameterError(f"'n_folds' must be >= 2; got {n_folds!r}.")
        if rounds < 1:
            raise InvalidParameterError(f"'rounds' must be >= 1; got {rounds!r}.")
        self.target = target
        self.surrogates = None if surrogates is None else tuple(surrogates)
        self.features = bool(features)
        self.name = name or f"{target}~"
        self.n_folds = int(n_folds)
        self.rounds = int(rounds)
        self.random_state = int(random_state)
        self._booster: Any = None
        self._boot: list[Any] = []  # refits on resampled history (see _refits)

    # ------------------------------------------------------------------ fit
    def _design(self, data: LoggedData) -> FloatArray:
        spec = data.spec
        missing = [s for s in self.surrogates_ if s not in spec.outcome_names]
        if missing:
            raise InvalidDataError(
                f"the log lacks the surrogate outcome(s) {missing}; its outcomes are "
                f"{list(spec.outcome_names)}. Log the short-term outcomes the index was fitted on."
            )
        S = np.column_stack([data.outcomes[:, spec.outcome_index(s)] for s in self.surrogates_])
        if not self.features:
            return np.asarray(S, dtype=np.float64)
        absent = [f for f in self.feature_names_ if f not in spec.features]
        if absent:
            raise InvalidDataError(
                f"the log lacks the feature(s) {absent} the surrogate index conditions on; give a "
                "log with the history's features, or fit the index with features=False."
            )
        X = data.encoder.matrix(data.X)
        cols = [list(spec.features).index(f) for f in self.feature_names_]
        return np.column_stack([S, X[:, cols]])

    def _train(self, Z: FloatArray, y: FloatArray, seed: int) -> Any:
        import lightgbm as lgb

        params = {**_PARAMS, "seed": seed,
                  "objective": "binary" if self.binary_ else "regression"}
        cat = list(range(len(self.surrogates_), Z.shape[1]))[len(self.numeric_):] if self.features else []
        data = lgb.Dataset(Z, label=y, categorical_feature=cat or "auto", params={"verbose": -1})
        return lgb.train(params, data, num_boost_round=self.rounds)

    def fit(self, history: Any, spec: ExperimentSpec | None = None) -> SurrogateIndex:
        """Fit the index on a log whose long-term outcome is observed.

        ``history`` is a LoggedData, or a frame with ``spec`` (its outcomes list
        the target and the surrogates).
        """
        if isinstance(history, pd.DataFrame) and spec is not None:
            history = LoggedData.from_frame(history, spec)
        if not isinstance(history, LoggedData):
            raise InvalidDataError(
                f"'history' must be a LoggedData; got {type(history).__name__}. Wrap the frame "
                "with px.LoggedData.from_frame(df, spec), the spec listing the long-term outcome."
            )
        spec = history.spec
        if self.target not in spec.outcome_names:
            raise InvalidDataError(
                f"the history has no outcome {self.target!r}; its outcomes are "
                f"{list(spec.outcome_names)}. Add the long-term outcome to the spec (weight 0)."
            )
        self.surrogates_ = self.surrogates or tuple(o for o in spec.outcome_names if o != self.target)
        if not self.surrogates_ or self.target in self.surrogates_:
            raise InvalidParameterError(
                f"'surrogates' must name short-term outcomes other than the target; got "
                f"{list(self.surrogates_)}."
            )
        self.feature_names_ = tuple(spec.features) if self.features else ()
        self.numeric_ = tuple(spec.numeric) if self.features else ()
        self.goal_ = spec.outcomes[spec.outcome_index(self.target)].goal
        y = history.outcomes[:, spec.outcome_index(self.target)]
        observed = np.isfinite(y)
        if observed.sum() < 10 * self.n_folds:
            raise InvalidDataError(
                f"outcome {self.target!r} is observed on {int(observed.sum())} units of the "
                "history; the index needs a cohort where it was observed (at least "
                f"{10 * self.n_folds} units)."
            )
        self.binary_ = bool(np.isin(y[observed], (0.0, 1.0)).all())
        Z = self._design(history)
        rng = np.random.default_rng(self.random_state)
        folds = rng.permutation(history.n_units) % self.n_folds
        cross = np.full(history.n_units, np.nan)
        for f in range(self.n_folds):
            train = (folds != f) & observed
            booster = self._train(Z[train], y[train], self.random_state + f)
            cross[folds == f] = booster.predict(Z[folds == f])
        self._booster = self._train(Z[observed], y[observed], self.random_state)
        self._boot = []
        self._history = history
        self._cross = cross
        self._y = y
        self._diagnostics = self._diagnose(history, y, cross, observed)
        return self

    # ------------------------------------------------------------ diagnostics
    def _diagnose(self, history: LoggedData, y: FloatArray, cross: FloatArray,
                  observed: NDArray[np.bool_]) -> dict[str, Any]:
        sub = history.subset(observed)
        yo, io = y[observed], cross[observed]
        r2 = 1.0 - float(((yo - io) ** 2).sum() / ((yo - yo.mean()) ** 2).sum())
        rows = []
        for k, arm in enumerate(history.spec.arms):
            if k == 0:
                continue
            eff_y, se_y = _effect(yo, sub, k)
            eff_i, se_i = _effect(io, sub, k)
            resid, se_r = _effect(yo - io, sub, k)
            p = float(2 * stats.norm.sf(abs(resid) / se_r)) if se_r > 0 else float("nan")
            rows.append({
                "treatment": arm,
                "effect_on_target": eff_y, "effect_on_target_se": se_y,
                "effect_on_index": eff_i, "effect_on_index_se": se_i,
                "share_carried": eff_i / eff_y if abs(eff_y) > 1e-12 else float("nan"),
                "direct_effect": resid, "direct_effect_se": se_r, "direct_effect_p": p,
                "surrogacy_ok": bool(p >= 0.05),
            })
        return {"r2": r2, "n_history": int(observed.sum()), "surrogates": list(self.surrogates_),
                "features": list(self.feature_names_), "arms": rows}

    def diagnostics(self) -> dict[str, Any]:
        """``r2``, and per arm the effects on the target and the index and the surrogacy check."""
        self._check()
        return self._diagnostics

    def surrogacy(self) -> pd.DataFrame:
        """The surrogacy check per arm as a frame (``surrogacy_ok`` False: do not trust the index)."""
        return pd.DataFrame(self.diagnostics()["arms"])

    def _check(self) -> None:
        if self._booster is None:
            raise NotFittedError("SurrogateIndex is not fitted; call fit(history) first.")

    # ---------------------------------------------------------------- apply
    def predict(self, data: LoggedData) -> FloatArray:
        """The index for each row of ``data`` (cross-fitted on the history's own rows)."""
        self._check()
        if data is self._history:
            return np.asarray(self._cross, dtype=np.float64)
        return np.asarray(self._booster.predict(self._design(data)), dtype=np.float64)

    def _refits(self, n: int) -> list[Any]:
        """``n`` indices refitted on bootstrap resamples of the history (cached, grown on demand)."""
        cached = self._boot
        if len(cached) < n:
            observed = np.isfinite(self._y)
            Z = self._design(self._history)
            idx_obs = np.flatnonzero(observed)
            for b in range(len(cached), n):
                rng = np.random.default_rng([self.random_state, 7, b])
                rows = rng.choice(idx_obs, size=idx_obs.size, replace=True)
                cached.append(self._train(Z[rows], self._y[rows], self.random_state + 100 + b))
        return cached[:n]

    def draws(self, data: LoggedData, n_bootstrap: int = 30) -> FloatArray:
        """(n, B): the index under B refits on resampled history, minus :meth:`predict`."""
        self._check()
        if n_bootstrap < 2:
            raise InvalidParameterError(f"'n_bootstrap' must be >= 2; got {n_bootstrap!r}.")
        Z = self._design(data)
        base = self.predict(data)
        return np.column_stack([b.predict(Z) - base for b in self._refits(n_bootstrap)])

    def transform(self, data: LoggedData, weight: float = 0.0, n_bootstrap: int = 30) -> LoggedData:
        """``data`` with one more outcome, the index (named :attr:`name`, the target's goal).

        ``weight`` is the new outcome's weight in the default utility (0: reported,
        not optimized). ``n_bootstrap`` refits of the index on resampled history
        give each row's draws (:meth:`draws`, kept in ``outcome_draws``), so that
        the standard errors downstream (``EffectModel.ate``, ``evaluate_policy``,
        ``optimize_policies``) carry the index's own estimation error; 0 leaves
        it out (sampling error only).
        """
        self._check()
        if self.name in data.spec.outcome_names:
            raise InvalidDataError(
                f"the log already has an outcome {self.name!r}; give the index another name."
            )
        values = self.predict(data)
        raw = data.spec.to_dict()
        raw["outcomes"] = [*raw["outcomes"], {"name": self.name, "goal": self.goal_,
                                              "weight": float(weight), "type": "continuous"}]
        spec = ExperimentSpec.from_dict(raw)
        out = LoggedData(
            spec, data.X, data.treatment, np.column_stack([data.outcomes, values]),
            data.propensity, data.unit_ids, FeatureEncoder(spec, data.encoder.categories),
            data.srm, data.clusters,
        )
        out._binary = (*data.binary, False)
        if data.observation is not None:
            out.observation = np.column_stack([data.observation, np.ones(data.n_units)])
        out.propensity_diagnostics = data.propensity_diagnostics
        out.outcome_draws = dict(data.outcome_draws)
        if n_bootstrap:
            out.outcome_draws[self.name] = self.draws(data, n_bootstrap)
        return out

    def ate(self, data: LoggedData, n_bootstrap: int = 50, alpha: float = 0.05) -> pd.DataFrame:
        """The long-term effect of each arm on ``data``, through the index.

        The standard error adds two parts: the experiment's sampling error (IPW
        influence terms) and the index's own estimation error (the spread of the
        estimate over ``n_bootstrap`` refits of the index on resampled history).
        """
        self._check()
        if n_bootstrap < 2:
            raise InvalidParameterError(f"'n_bootstrap' must be >= 2; got {n_bootstrap!r}.")
        base = self.predict(data)
        Z_data = self._design(data)
        K = data.spec.n_treatments
        reps = np.empty((n_bootstrap, K - 1))
        for b, booster in enumerate(self._refits(n_bootstrap)):
            pred = booster.predict(Z_data)
            reps[b] = [_effect(pred, data, k)[0] for k in range(1, K)]
        z = float(stats.norm.ppf(1 - alpha / 2))
        out = []
        for k in range(1, K):
            est, se_sampling = _effect(base, data, k)
            se_index = float(reps[:, k - 1].std(ddof=1))
            se = float(np.hypot(se_sampling, se_index))
            out.append({"treatment": data.spec.arms[k], "outcome": self.name, "estimate": est,
                         "se": se, "ci_low": est - z * se, "ci_high": est + z * se,
                         "se_sampling": se_sampling, "se_index": se_index})
        return pd.DataFrame(out)

    def policy_lift(self, data: LoggedData, actions: Any, alpha: float = 0.05) -> dict[str, float]:
        """A policy's long-term lift vs all-control through the index (IPW on a randomized log).

        ``actions`` are arm indices per row of ``data``. The SE is the
        experiment's sampling error (Hajek influence terms); the index's refit
        error is in :meth:`ate`.
        """
        values = self.predict(data)
        a = np.asarray(actions).reshape(-1)
        if a.shape[0] != data.n_units:
            raise InvalidParameterError(
                f"'actions' must give one arm per row ({data.n_units}); got {a.shape[0]}."
            )

        def hajek(mask: NDArray[np.bool_]) -> tuple[float, FloatArray]:
            w = np.where(mask, 1.0 / data.propensity, 0.0)
            mean = float((w * values).sum() / w.sum())
            return mean, data.n_units * w * (values - mean) / w.sum()

        v_pol, i_pol = hajek(data.treatment == a)
        v_ctl, i_ctl = hajek(data.treatment == 0)
        diff = i_pol - i_ctl
        se = float(diff.std(ddof=1) / np.sqrt(diff.shape[0]))
        z = float(stats.norm.ppf(1 - alpha / 2))
        lift = v_pol - v_ctl
        return {"lift": lift, "se": se, "ci_low": lift - z * se, "ci_high": lift + z * se}

    def __repr__(self) -> str:
        fitted = "" if self._booster is None else f", r2={self._diagnostics['r2']:.3f}"
        return f"SurrogateIndex(target={self.target!r}, name={self.name!r}{fitted})"

