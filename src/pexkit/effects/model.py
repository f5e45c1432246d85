"""EffectModel: CATE for every (treatment vs control, outcome) at once.

One set of cross-fitted outcome models ``mu_{k,m}`` serves every meta-learner
and the doubly robust (DR) scores; the T-learner is those models' difference,
and the X-, DR- and S-learners add only their own second stage.
``learner="auto"`` picks, per (treatment, outcome), the learner whose
out-of-fold effects have the smallest DR-pseudo-outcome loss
``mean_i (psi_i - tau_hat(x_i))^2`` (Kennedy 2020; Nie and Wager 2021).
The learners themselves live in :mod:`pexkit.effects.learners`, behind one
protocol (fit out of fold; each effect as a list of tree terms) that
``predict``, the compiled serving path and the refit read.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from pexkit._progress import progress_bar
from pexkit._stats import mean_se, refit_spread
from pexkit.data import FeatureEncoder, LoggedData
from pexkit.effects.boosting import make_base_learner, predict_many
from pexkit.effects.insample import match_rows, row_keys
from pexkit.effects.learners import (
    LEARNER_CLASSES,
    FitContext,
    Fitted,
    MetaLearner,
    Term,
    predict_terms,
)
from pexkit.effects.nuisance import doubly_robust_scores, fit_outcome_models, make_folds
from pexkit.exceptions import InvalidDataError, InvalidParameterError, NotFittedError
from pexkit.execution import is_distributed, refuse_distributed
from pexkit.spec import ExperimentSpec

__all__ = ["LEARNERS", "EffectModel"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

LEARNERS = ("t", "s", "x", "dr")


class EffectModel:
    """Heterogeneous treatment effects for every (treatment, outcome).

    Parameters
    ----------
    learner : {"auto", "t", "s", "x", "dr"}
        Meta-learner. ``"auto"`` picks per (treatment, outcome) among
        ``candidates`` by held-out DR-pseudo-outcome loss.
    base : {"lightgbm", "xgboost"}
        Base regression learner.
    n_folds : int
        Folds for cross-fitting (>= 2).
    random_state : int
        Seed for folds and learners.
    candidates : tuple of str
        Learners tried by ``learner="auto"``.
    base_params : dict, optional
        Overrides of the base learner's parameters (e.g. ``n_estimators``).
        LightGBM models on 20,000 rows or more stop early: up to ``n_estimators``
        rounds, until the loss on a seeded 10% of their rows
        (``validation_fraction``) has not fallen for ``early_stopping_rounds``
        (10; second-stage DR and X models 30) rounds; ``{"early_stopping_rounds":
        0}`` trains every round.
    n_jobs : int
        Threads for the base learner (0 = all cores).
    progress : bool or None
        Show a progress bar (None: only on a terminal).
    selection_rows : int or None
        With ``learner="auto"`` on a log larger than this, the candidates are
        first compared on a stratified random subsample of this many units; only
        the learners chosen there are fitted on the whole log, where the
        per-cell choice among them is made again on all units. Default 200,000:
        below it nothing changes; above it the fit skips the second stages that
        no cell uses (``selection_probe_`` keeps the subsample's comparison).
        None: always compare every candidate on the whole log.

    Attributes
    ----------
    mu_oof_ : ndarray of shape (n_units, n_treatments, n_outcomes)
        Out-of-fold outcome predictions.
    scores_ : ndarray of shape (n_units, n_treatments, n_outcomes)
        Doubly robust scores G built from ``mu_oof_``.
    effects_ : ndarray of shape (n_units, n_treatments, n_outcomes)
        Out-of-fold effects of the chosen learners (control slice 0).
    selection_ : DataFrame
        Per (treatment, outcome): the chosen learner and each candidate's loss.

    Examples
    --------
    >>> import pexkit as px
    >>> sim = px.simulate("notifications", n_units=3000, seed=0)
    >>> model = px.EffectModel(learner="t", n_folds=2, base_params={"n_estimators": 20})
    >>> model.fit(sim.data).predict(sim.data).shape
    (3000, 3, 3)
    """

    def __init__(
        self,
        learner: str = "auto",
        base: str = "lightgbm",
        n_folds: int = 3,
        random_state: int = 0,
        *,
        candidates: tuple[str, ...] = ("t", "s", "x", "dr"),
        base_params: dict[str, Any] | None = None,
        n_jobs: int = 0,
        progress: bool | None = None,
        selection_rows: int | None = 200_000,
    ) -> None:
        self.learner = learner
        self.base = base
        self.n_folds = n_folds
        self.random_state = random_state
        self.candidates = candidates
        self.base_params = base_params
        self.n_jobs = n_jobs
        self.progress = progress
        self.selection_rows = selection_rows

    _PARAMS = (
        "learner", "base", "n_folds", "random_state", "candidates", "base_params",
        "n_jobs", "progress", "selection_rows",
    )
    #: the candidates' comparison on the subsample (see ``selection_rows``), or None
    selection_probe_: pd.DataFrame | None = None
    #: on a cluster (a ``DistributedLog``): where the per-unit arrays live, or None
    distributed_: Any = None
    #: a 64-bit fingerprint of every training row (:mod:`pexkit.effects.insample`), or None
    #: on a cluster: how later logs are matched to the training rows without keeping them
    training_keys_: NDArray[np.uint64] | None = None
    #: the training rows' randomization clusters (``cluster:`` in the spec), or None
    clusters_: IntArray | None = None

    # ------------------------------------------------------------ training log
    @property
    def data_(self) -> Any:
        """The training log, while whoever passed it to ``fit`` still holds it.

        The model keeps a weak reference and one fingerprint per row
        (``training_keys_``), not the log: a model does not pin its training data
        in memory or in its saved form. Functions whose ``data`` defaults to the
        training log (``optimize_policies``, ``distill``, ``segments``,
        ``effect_tree``) read it here.

        Raises
        ------
        InvalidDataError
            The log was freed (or the model was loaded from bytes): pass it
            explicitly.
        """
        self._check_fitted()
        ref = self.__dict__.get("_data_ref")
        data = ref() if ref is not None else None
        if data is None:
            raise InvalidDataError(
                "this EffectModel no longer has its training log: a model keeps a weak "
                "reference to the log it was fitted on (and a fingerprint per row), and "
                "that log has been freed or the model was loaded from bytes. Pass the log "
                "explicitly, e.g. px.optimize_policies(model, data) or "
                "px.distill(policy, model, data)."
            )
        return data

    @data_.setter
    def data_(self, data: Any) -> None:
        self.__dict__["_data_ref"] = weakref.ref(data)

    def holds(self, data: Any) -> bool:
        """Whether ``data`` is the very log object the model was fitted on."""
        ref = self.__dict__.get("_data_ref")
        return ref is not None and data is not None and ref() is data

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_data_ref", None)  # a weak reference is not data: it does not travel
        return state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (sklearn's contract, so ``sklearn.base.clone`` works)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> EffectModel:
        """Set constructor parameters; unknown names raise InvalidParameterError."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise InvalidParameterError(
                    f"EffectModel has no parameter {name!r}; valid: {list(self._PARAMS)}."
                )
            setattr(self, name, value)
        return self

    # ------------------------------------------------------------------ fit
    def _check_params(self) -> tuple[str, ...]:
        if self.learner != "auto" and self.learner not in LEARNERS:
            raise InvalidParameterError(
                f"'learner' must be 'auto' or one of {list(LEARNERS)}; got "
                f"{self.learner!r}."
            )
        if not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise InvalidParameterError(
                f"'n_folds' must be an integer >= 2 (cross-fitting needs held-out "
                f"folds); got {self.n_folds!r}."
            )
        bad = [c for c in self.candidates if c not in LEARNERS]
        if bad or not self.candidates:
            raise InvalidParameterError(
                f"'candidates' must be a non-empty subset of {list(LEARNERS)}; got "
                f"{list(self.candidates)}."
            )
        rows = self.selection_rows
        if rows is not None and (
            isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1000
        ):
            raise InvalidParameterError(
                f"'selection_rows' must be None or an integer >= 1000 (units the learners are "
                f"compared on); got {rows!r}."
            )
        return tuple(self.candidates) if self.learner == "auto" else (self.learner,)

    def fit(self, data: LoggedData) -> EffectModel:
        """Fit outcome models, DR scores and the learners' second stages.

        Parameters
        ----------
        data : LoggedData

        Returns
        -------
        self : EffectModel
        """
        learners = self._check_params()
        spec = getattr(data, "spec", None)
        if spec is not None and not spec.features:
            raise InvalidDataError(
                f"the spec {spec.name!r} lists no features, so there is nothing to personalize "
                "on and no effect model to fit. For the A/B readout (each arm against control "
                "per outcome, with CIs) call px.ab_readout(data); `pexkit analyze` does so by "
                "itself. To personalize, add 'features: {numeric: [...], categorical: [...]}'."
            )
        if is_distributed(data):
            dropped = [o.name for o in data.spec.outcomes if o.missing == "drop"]
            if dropped:
                raise InvalidParameterError(
                    f"outcomes {dropped} have 'missing: drop', which a fit on a Dask cluster "
                    "does not support yet; fit in one process, or use 'missing: zero' where "
                    "a missing value means no event."
                )
            return self._fit_on_cluster(data, learners)
        if not isinstance(data, LoggedData):
            raise InvalidDataError(
                f"EffectModel.fit expects a LoggedData; got {type(data).__name__}. "
                "Wrap the frame with LoggedData.from_frame(df, spec)."
            )
        spec = data.spec
        counts = data.arm_counts
        need = 2 * self.n_folds
        few = {a: c for a, c in counts.items() if c < need}
        if few:
            raise InvalidDataError(
                f"column {spec.treatment!r}: expected at least {need} rows per arm to "
                f"cross-fit with n_folds={self.n_folds}; found {few}. Collect more "
                "data or lower n_folds."
            )
        if data.clusters is not None:
            first = np.unique(data.clusters, return_index=True)[1]
            per_arm = np.bincount(data.treatment[first], minlength=spec.n_treatments)
            few = {a: int(c) for a, c in zip(spec.arms, per_arm, strict=True) if c < self.n_folds}
            if few:
                raise InvalidDataError(
                    f"column {spec.cluster!r}: expected at least n_folds={self.n_folds} "
                    f"clusters per arm (folds keep a cluster together); found {few}. Lower "
                    "n_folds or collect more clusters."
                )
        seed = int(self.random_state)
        n_treat, n_out = spec.n_treatments, spec.n_outcomes
        self.selection_probe_ = None
        self.distributed_ = None
        if len(learners) > 1 and self.selection_rows is not None and (
            data.n_units > self.selection_rows
        ):
            learners = self._probe(data, learners, seed)
        X = data.encoder.matrix(data.X)
        base = make_base_learner(self.base, self.base_params, self.n_jobs)
        base.bind(X, data.encoder.categorical_indices)
        folds = make_folds(data.treatment, self.n_folds, seed, data.clusters)
        outcome_fit = fit_outcome_models(
            base, X, data.treatment, data.outcomes, folds, n_treat, seed, self.progress,
            data.binary,
        )
        mu = outcome_fit.mu_oof
        scores = doubly_robust_scores(mu, data.treatment, data.propensity, data.outcomes,
                                      data.observation)

        shares = np.bincount(data.treatment, minlength=n_treat) / data.n_units
        self.spec_: ExperimentSpec = spec
        self.encoder_: FeatureEncoder = data.encoder
        self.folds_ = folds
        self.mu_oof_ = mu
        self.scores_ = scores
        self.outcome_models_ = outcome_fit.models
        self.arm_shares_ = shares
        self.learners_fitted_: dict[str, Any] = {}
        self.data_ = data
        #: per estimated outcome (``data.outcome_draws``), each arm's IPW mean over its refits (K, B)
        self.arm_refit_spread_: dict[str, FloatArray] = {
            name: refit_spread(d, (data.treatment[None, :] == np.arange(spec.n_treatments)[:, None])
                               / data.propensity[None, :])
            for name, d in getattr(data, "outcome_draws", {}).items()
        }
        self.training_keys_ = row_keys(data)
        self.clusters_ = data.clusters
        self._base = base

        oof: dict[str, FloatArray] = {}
        classes = [LEARNER_CLASSES[name] for name in learners]
        stage_total = sum(cls.stage_models(self.n_folds, n_treat, n_out) for cls in classes)
        ctx = FitContext(
            base=base, X=X, data=data, folds=folds, n_folds=self.n_folds, seed=seed, mu=mu,
            outcome_models=outcome_fit.models,
            make_base=lambda: make_base_learner(self.base, self.base_params, self.n_jobs),
        )
        with progress_bar(max(stage_total, 1), "effect models", self.progress) as bar:
            for cls in classes:
                oof[cls.name], self.learners_fitted_[cls.name] = cls.fit(ctx, bar)

        # Selection by DR-pseudo-outcome loss on out-of-fold effects. Loss
        # differences between learners are often within noise; the cell's best
        # learner wins only when it beats the overall best learner (lowest
        # variance-scaled loss summed over cells) by more than 2 paired SEs.
        # One cell at a time (a whole (n, K, M) pseudo-outcome array and a squared-error
        # array per learner and cell would add to the fit's peak memory).
        cells = [(k, m) for k in range(1, n_treat) for m in range(n_out)]

        def pseudo(c: tuple[int, int]) -> FloatArray:
            return scores[:, c[0], c[1]] - scores[:, 0, c[1]]  # type: ignore[no-any-return]

        def sq(name: str, c: tuple[int, int], psi: FloatArray) -> FloatArray:
            return (psi - oof[name][:, c[0], c[1]]) ** 2  # type: ignore[no-any-return]

        loss: dict[tuple[int, int], dict[str, float]] = {}
        scale: dict[tuple[int, int], float] = {}
        for c in cells:
            psi = pseudo(c)
            scale[c] = float(np.var(psi)) or 1.0
            loss[c] = {name: float(sq(name, c, psi).mean()) for name in learners}
        overall = min(learners, key=lambda name: sum(loss[c][name] / scale[c] for c in cells))
        chosen = np.empty((n_treat, n_out), dtype=object)
        rows: list[dict[str, Any]] = []
        effects = oof[overall]  # cells that pick another learner are copied over below
        n = data.n_units
        for k, m in cells:
            losses = loss[(k, m)]
            best = min(losses, key=lambda key: losses[key])
            z = 0.0
            if best != overall:
                psi = pseudo((k, m))
                diff = sq(overall, (k, m), psi) - sq(best, (k, m), psi)
                z = float(diff.mean() / (diff.std(ddof=1) / np.sqrt(n) + 1e-300))
            pick = best if z > 2.0 else overall
            chosen[k, m] = pick
            if pick != overall:
                effects[:, k, m] = oof[pick][:, k, m]
            rows.append(
                {
                    "treatment": spec.arms[k],
                    "outcome": spec.outcome_names[m],
                    "learner": pick,
                    "best_in_cell": best,
                    "overall_best": overall,
                    "z_vs_overall": z,
                    **{f"loss_{name}": loss for name, loss in losses.items()},
                }
            )
        self.chosen_ = chosen
        self.effects_ = effects
        self.selection_ = pd.DataFrame(rows)
        return self

    def _fit_on_cluster(self, data: Any, learners: tuple[str, ...]) -> EffectModel:
        from pexkit.execution.dask import fit_cluster

        need = 2 * self.n_folds
        few = {a: c for a, c in data.arm_counts.items() if c < need}
        if few:
            raise InvalidDataError(
                f"column {data.spec.treatment!r}: expected at least {need} rows per arm to "
                f"cross-fit with n_folds={self.n_folds}; found {few}. Collect more data or "
                "lower n_folds."
            )
        self.selection_probe_ = None
        if len(learners) > 1 and self.selection_rows is not None and (
            data.n_units > self.selection_rows
        ):
            from pexkit.execution.dask import probe_on_cluster

            selection, used = probe_on_cluster(self, data)
            learners = tuple(name for name in learners if name in used)
            fitted = fit_cluster(self, data, learners)
            fitted.selection_probe_ = selection
            return fitted
        return fit_cluster(self, data, learners)

    def fitted_learner(self, name: str) -> MetaLearner:
        """The fitted meta-learner ``name`` (one of ``learners_fitted_``)."""
        self._check_fitted()
        if name not in self.learners_fitted_:
            raise InvalidParameterError(
                f"learner {name!r} was not fitted; fitted: {sorted(self.learners_fitted_)}."
            )
        env = Fitted(base=self._base, outcome_models=self.outcome_models_,
                     shares=np.asarray(self.arm_shares_))
        return LEARNER_CLASSES[name](self.learners_fitted_[name], env)

    def terms(self, k: int, m: int) -> list[Term]:
        """``tau_{k,m}(x)`` of the chosen learner as a sum of base-learner terms."""
        return self.fitted_learner(str(self.chosen_[k, m])).terms(k, m)

    def _probe(
        self, data: LoggedData, learners: tuple[str, ...], seed: int
    ) -> tuple[str, ...]:
        """Compare ``learners`` on a stratified subsample; the ones some cell chose there."""
        rows = probe_rows(data.treatment, data.n_treatments, int(self.selection_rows or 0),
                          self.n_folds, seed)
        selection, used = self.compare_on(data.subset(rows))
        self.selection_probe_ = selection
        return tuple(name for name in learners if name in used)

    def compare_on(self, sample: LoggedData) -> tuple[pd.DataFrame, set[str]]:
        """Fit every candidate on ``sample``: its selection table and the learners it chose."""
        probe = EffectModel(**{**self.get_params(), "selection_rows": None, "progress": False})
        probe.fit(sample)
        return probe.selection_, {str(v) for v in np.ravel(probe.chosen_) if v is not None}

    # -------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "effects_"):
            raise NotFittedError(
                "this EffectModel is not fitted yet; call .fit(data) before predict, "
                "ate or evaluation."
            )

    def _matrix(self, X: Any) -> FloatArray:
        if is_distributed(X):
            raise InvalidParameterError(
                "predictions for a DistributedLog stay on the cluster: use model.ate() and "
                "px.evaluate_policy(policy, data, model) there, or predict a pandas frame of "
                "the rows you need."
            )
        frame = X.X if isinstance(X, LoggedData) else X
        return self.encoder_.matrix(self.encoder_.transform(frame))

    def predict_outcomes(self, X: Any) -> FloatArray:
        """Predict ``mu_{k,m}(x)`` (fold-averaged) for new rows.

        Parameters
        ----------
        X : DataFrame or LoggedData
            Rows with the spec's feature columns.

        Returns
        -------
        ndarray of shape (n_units, n_treatments, n_outcomes)
        """
        self._check_fitted()
        return self._mu(self._matrix(X))

    def _mu(self, Xm: FloatArray) -> FloatArray:
        n_treat, n_out = self.spec_.n_treatments, self.spec_.n_outcomes
        keys = [(k, m) for k in range(n_treat) for m in range(n_out)]
        tasks = [(fold[k][m], Xm) for fold in self.outcome_models_ for k, m in keys]
        preds = predict_many(self._base, tasks)
        mu = np.zeros((Xm.shape[0], n_treat, n_out))
        for i, pred in enumerate(preds):
            k, m = keys[i % len(keys)]
            mu[:, k, m] += pred
        return mu / len(self.outcome_models_)

    def predict(self, X: Any) -> FloatArray:
        """Predict effects vs control for new rows.

        Parameters
        ----------
        X : DataFrame, LoggedData or DistributedLog
            Rows with the spec's feature columns. A ``DistributedLog`` is
            predicted where its parts live: the result is then a dask array
            (one chunk per part; ``.compute()`` brings it here).

        Returns
        -------
        ndarray of shape (n_units, n_treatments, n_outcomes)
            ``tau_{k,m}(x)``; the control slice ``[:, 0, :]`` is 0.
        """
        self._check_fitted()
        if is_distributed(X):
            from pexkit.execution.explain import predict_on_cluster

            return predict_on_cluster(self, X)  # type: ignore[no-any-return]
        Xm = self._matrix(X)
        n_treat, n_out = self.spec_.n_treatments, self.spec_.n_outcomes
        tau = np.zeros((Xm.shape[0], n_treat, n_out))
        cells = [(k, m) for k in range(1, n_treat) for m in range(n_out)]
        for (k, m), values in predict_terms({c: self.terms(*c) for c in cells}, Xm).items():
            tau[:, k, m] = values
        return tau

    # -------------------------------------------------------- in-sample rows
    def training_rows(self, data: LoggedData) -> NDArray[np.int64]:
        """For each row of ``data``, the training row it is (by content), or -1.

        A reloaded copy of the training log, a subset of it, or a log that
        overlaps it is recognized row by row (:mod:`pexkit.effects.insample`).
        """
        self._check_fitted()
        refuse_distributed(data, "matching rows to the training log")
        if self.holds(data):
            return np.arange(data.n_units, dtype=np.int64)
        if self.training_keys_ is None:
            raise NotFittedError(
                "this EffectModel has no fingerprints of its training rows (it was fitted "
                "on a cluster): per-unit results need a model fitted in one process."
            )
        return match_rows(self.training_keys_, row_keys(data))

    def effects_for(
        self, data: LoggedData, rows: NDArray[np.int64] | None = None
    ) -> FloatArray:
        """Effects per row of ``data``: out-of-fold on training rows, predicted on the rest.

        ``rows``: :meth:`training_rows` of ``data``, when the caller has them already.
        """
        return self._in_or_out(data, rows, self.effects_, self.predict)

    def outcomes_for(
        self, data: LoggedData, rows: NDArray[np.int64] | None = None
    ) -> FloatArray:
        """Outcome predictions ``mu`` per row: out-of-fold on training rows, fold-averaged elsewhere."""
        return self._in_or_out(data, rows, self.mu_oof_, self.predict_outcomes)

    def _in_or_out(
        self, data: LoggedData, rows: NDArray[np.int64] | None, oof: Any,
        predict: Any,
    ) -> FloatArray:
        """``oof[row]`` for training rows of ``data``; ``predict`` on the others."""
        self._check_fitted()
        refuse_distributed(data, "per-unit effects or outcomes of a DistributedLog")
        if self.holds(data):
            return np.asarray(oof)
        rows = self.training_rows(data) if rows is None else rows
        inside = rows >= 0
        if not inside.any():
            out: FloatArray = predict(data)
            return out
        values = np.empty((data.n_units, *np.shape(oof)[1:]))
        values[inside] = np.asarray(oof)[rows[inside]]
        if not inside.all():
            values[~inside] = predict(data.subset(~inside))
        return values

    # ------------------------------------------------------------------ ATE
    def ate(self, alpha: float = 0.05) -> pd.DataFrame:
        """Average effects with influence-function (DR/AIPW) confidence intervals.

        Parameters
        ----------
        alpha : float
            1 - confidence level.

        Returns
        -------
        DataFrame
            One row per (non-control treatment, outcome) with columns treatment,
            outcome, estimate, se, ci_low, ci_high.

        Notes
        -----
        ``psi_i = G[i,k,m] - G[i,0,m]``; estimate ``mean(psi)``, se
        ``sd(psi) / sqrt(n)``, cluster-robust when the spec names a ``cluster``
        (:func:`pexkit._stats.mean_se`). An outcome that is itself an estimate
        (a surrogate index: ``LoggedData.outcome_draws``) adds, in quadrature,
        the spread of the arm's IPW effect over its model's refits.
        """
        self._check_fitted()
        if not 0 < alpha < 1:
            raise InvalidParameterError(f"'alpha' must be in (0, 1); got {alpha!r}.")
        if self.distributed_ is not None:
            from pexkit.execution.dask import ate

            return ate(self, alpha)
        z = float(stats.norm.ppf(1 - alpha / 2))
        pseudo = self.scores_ - self.scores_[:, :1, :]
        spread = getattr(self, "arm_refit_spread_", {})
        rows = []
        for k in range(1, self.spec_.n_treatments):
            for m, name in enumerate(self.spec_.outcome_names):
                est = float(pseudo[:, k, m].mean())
                se = float(mean_se(pseudo[:, k, m], self.clusters_))
                if name in spread:  # e.g. a surrogate index: its refit error too
                    se = float(np.hypot(se, (spread[name][k] - spread[name][0]).std(ddof=1)))
                rows.append(
                    {
                        "treatment": self.spec_.arms[k],
                        "outcome": name,
                        "estimate": est,
                        "se": se,
                        "ci_low": est - z * se,
                        "ci_high": est + z * se,
                    }
                )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (
            f"EffectModel(learner={self.learner!r}, base={self.base!r}, "
            f"n_folds={self.n_folds}, random_state={self.random_state})"
        )



def probe_rows(
    treatment: IntArray, n_treatments: int, selection_rows: int, n_folds: int, seed: int
) -> IntArray:
    """The stratified subsample ``learner="auto"`` compares the candidates on (sorted rows)."""
    rng = np.random.default_rng(seed + 7919)
    share = float(selection_rows) / treatment.shape[0]
    rows: IntArray = np.sort(np.concatenate([
        rng.choice(idx, size=max(2 * n_folds, round(share * idx.size)), replace=False)
        for idx in (np.flatnonzero(treatment == k) for k in range(n_treatments))
    ]))
    return rows
