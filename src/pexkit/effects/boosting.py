"""Gradient-boosted base learners (LightGBM, XGBoost) behind one small protocol.

Features are binned once per fit (a LightGBM ``Dataset`` over all rows); each
nuisance or effect model then trains on a row subset of it, so the same
histogram bins serve every (fold, arm, outcome) model instead of being rebuilt
for each, as the peers do.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import InvalidParameterError

__all__ = [
    "BASE_LEARNERS",
    "BaseLearner",
    "fit_many",
    "make_base_learner",
    "predict_many",
]

FloatArray = NDArray[np.float64]

LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "objective": "regression",
    "n_estimators": 100,
    # stop when the loss on a held-out 10% has not fallen for this many rounds (0: never)
    "early_stopping_rounds": 10,
    "validation_fraction": 0.1,
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_child_samples": 20,
    "verbose": -1,
}
XGBOOST_DEFAULTS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "n_estimators": 100,
    "max_depth": 6,
    "learning_rate": 0.1,
    "tree_method": "hist",
}


class BaseLearner(Protocol):
    """What the meta-learners need from a regression learner."""

    name: str
    workers: int

    def bind(self, X: FloatArray, categorical: list[int]) -> None:
        """Prepare (bin) the feature matrix that later ``fit`` calls subset."""

    def fit(
        self, rows: NDArray[np.int64], y: FloatArray, seed: int, binary: bool = False
    ) -> Any:
        """Fit on ``rows`` of the bound matrix with targets ``y`` (0/1 and a classification
        objective when ``binary``: the model then predicts probabilities); return a model."""

    def predict(self, model: Any, X: FloatArray) -> FloatArray:
        """Predict with a model returned by ``fit``."""


_BUILD_LOCK = threading.Lock()  # see LightGBMLearner._train

#: rows that feature bins are found on (LightGBM's own ``bin_construct_sample_cnt``)
BIN_SAMPLE = 200_000
#: models on fewer rows than this train every round (``early_stopping_min_rows``): a
#: 10% hold-out of fewer than 2,000 rows stops too noisily (on 16k units, ``auto``
#: lost up to 30% PEHE per cell)
EARLY_STOPPING_MIN_ROWS = 20_000


def bin_sample_rows(n: int, cap: int | None = None) -> NDArray[np.int64] | None:
    """The rows bins are found on: ``None`` (all of them) up to ``cap`` (default
    :data:`BIN_SAMPLE`), else a fixed-seed sample of ``cap`` rows, so that a fit split
    across machines bins as one process does."""
    cap = BIN_SAMPLE if cap is None else cap
    if n <= cap:
        return None
    rows: NDArray[np.int64] = np.sort(
        np.random.default_rng(0).choice(n, cap, replace=False)
    ).astype(np.int64)
    return rows


#: second-stage models wait this many times longer for the held-out loss to fall
FINAL_STAGE_PATIENCE = 3


def final_stage_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` for a second-stage (DR or X) model: a longer early-stopping patience.

    The DR and X targets are much noisier than the outcomes, so their held-out
    loss wanders: measured at 1M rows, stopping them after 10 flat rounds cost up
    to 5% PEHE per cell, after 30 nothing (and the fit 25% of its time).
    """
    merged = {**LIGHTGBM_DEFAULTS, **(params or {})}
    rounds = int(merged.get("early_stopping_rounds") or 0)
    return {**(params or {}), "early_stopping_rounds": FINAL_STAGE_PATIENCE * rounds}


def final_stage(learner: BaseLearner) -> BaseLearner:
    """``learner`` for second-stage models (:func:`final_stage_params`), same bins."""
    rounds = int(getattr(learner, "stop_rounds", 0) or 0)
    if rounds:
        # not copy.copy: pickling drops the bound Dataset, which the copy shares
        out = object.__new__(type(learner))
        out.__dict__.update(learner.__dict__, stop_rounds=FINAL_STAGE_PATIENCE * rounds)
        return out
    return learner


def _workers(n_jobs: int) -> int:
    return n_jobs if n_jobs > 0 else (os.cpu_count() or 1)


def _observed(
    rows: NDArray[np.int64], y: FloatArray
) -> tuple[NDArray[np.int64], FloatArray]:
    """The rows whose target is observed: a ``missing: drop`` outcome is NaN where it was not
    measured, and every model of it (and every target built from it) trains on the rest."""
    y = np.asarray(y, dtype=np.float64)
    keep = ~np.isnan(y)
    if keep.all():
        return rows, y
    return np.asarray(rows)[keep], y[keep]


def fit_many(
    learner: BaseLearner,
    tasks: Sequence[tuple[Any, ...]],
    advance: Callable[[], None] | None = None,
) -> list[Any]:
    """Fit one model per ``(rows, y, seed[, binary])`` task, side by side; keeps task order.

    Many small models train faster one thread each, in parallel, than one at a
    time on every core: LightGBM and XGBoost release the GIL while they work, so
    a thread pool shares the one binned dataset without copies.
    """
    with ThreadPoolExecutor(max_workers=learner.workers) as pool:
        futures = [pool.submit(learner.fit, *_observed(task[0], task[1]), *task[2:])
                   for task in tasks]
        out = []
        for future in futures:
            out.append(future.result())
            if advance is not None:
                advance()
    return out


def predict_many(learner: BaseLearner, tasks: Sequence[tuple[Any, FloatArray]]) -> list[FloatArray]:
    """Predict ``(model, X)`` tasks side by side; keeps task order."""
    if len(tasks) <= 1:
        return [learner.predict(*task) for task in tasks]
    with ThreadPoolExecutor(max_workers=learner.workers) as pool:
        return list(pool.map(lambda task: learner.predict(*task), tasks))


class LightGBMLearner:
    """LightGBM regressor trained on row subsets of one binned Dataset."""

    name = "lightgbm"

    def __init__(self, params: dict[str, Any] | None = None, n_jobs: int = 0) -> None:
        import lightgbm  # noqa: F401  (fail early with a clear ImportError)

        merged = {**LIGHTGBM_DEFAULTS, **(params or {})}
        self.n_rounds = int(merged.pop("n_estimators", 100))
        self.stop_rounds = int(merged.pop("early_stopping_rounds", 0) or 0)
        self.validation_fraction = float(merged.pop("validation_fraction", 0.1))
        self.stop_min_rows = int(merged.pop("early_stopping_min_rows", EARLY_STOPPING_MIN_ROWS))
        if self.stop_rounds < 0 or not 0.0 < self.validation_fraction < 0.5:
            raise InvalidParameterError(
                "base_params: 'early_stopping_rounds' must be >= 0 (0 trains every round) and "
                "'validation_fraction' in (0, 0.5); got "
                f"{self.stop_rounds} and {self.validation_fraction}."
            )
        self.workers = _workers(n_jobs)
        merged.setdefault("num_threads", 1)
        self.params = merged
        self._dataset: Any = None

    def bind(self, X: FloatArray, categorical: list[int]) -> None:
        """Bin ``X`` once, with bins found on :func:`bin_sample_rows` of it."""
        import lightgbm as lgb

        params = {
            "verbose": -1,
            "max_bin": self.params.get("max_bin", 255),
            # bins are shared by models with different leaf sizes
            "feature_pre_filter": False,
            "min_data_in_leaf": self.params.get("min_child_samples", 20),
        }
        cats: list[int] | Literal["auto"] = categorical or "auto"
        rows = bin_sample_rows(X.shape[0])
        reference = None
        if rows is not None:
            reference = lgb.Dataset(X[rows], label=np.zeros(rows.shape[0]),
                                    categorical_feature=cats, free_raw_data=False,
                                    params=params).construct()
        self._dataset = lgb.Dataset(
            X, label=np.zeros(X.shape[0]), categorical_feature=cats, free_raw_data=False,
            params=params, reference=reference,
        ).construct()

    def __getstate__(self) -> dict[str, Any]:
        # the binned Dataset is training scratch (and holds C pointers): not pickled
        return {**self.__dict__, "_dataset": None}

    def fit(
        self, rows: NDArray[np.int64], y: FloatArray, seed: int, binary: bool = False
    ) -> Any:
        """Train on a subset of the bound Dataset (a binary objective when ``binary``)."""

        order = np.argsort(rows, kind="stable")
        ordered = np.asarray(rows)[order].astype(np.int32)
        label = np.asarray(y, dtype=np.float64)[order]

        def subset(keep: Any) -> Any:
            sub = self._dataset.subset(ordered if keep is None else ordered[keep])
            sub.construct()
            sub.set_label(label if keep is None else label[keep])
            return sub

        return self._train(subset, ordered.shape[0], seed, binary)

    def fit_matrix(self, X: FloatArray, y: FloatArray, seed: int, binary: bool = False) -> Any:
        """Train on rows that are not in the bound matrix, binned with its bins."""
        import lightgbm as lgb

        label = np.asarray(y, dtype=np.float64)

        def subset(keep: Any) -> Any:
            return lgb.Dataset(X if keep is None else X[keep],
                               label=label if keep is None else label[keep],
                               reference=self._dataset, params=self._dataset.params,
                               free_raw_data=False)

        return self._train(subset, X.shape[0], seed, binary)

    def _train(
        self, subset: Callable[[Any], Any], n: int, seed: int, binary: bool = False
    ) -> Any:
        """Train on ``subset(None)``; with early stopping, on ``subset(~held)`` while the
        loss on a seeded random share of the rows (``subset(held)``) still falls, then
        keep the trees up to its best round (so every reader sees the same model)."""
        import lightgbm as lgb

        params = {**self.params, "seed": seed}
        if binary:
            params["objective"] = "binary"
            params.pop("metric", None)
        stop = bool(self.stop_rounds) and n >= self.stop_min_rows
        held = np.random.default_rng(seed + 104_729).random(n) < self.validation_fraction
        # LightGBM crashed (SIGSEGV in LGBM_BoosterCreate) when threads built subsets of
        # the shared Dataset and boosters with validation sets at once: they are built one
        # at a time; the boosting rounds (the work) still run side by side
        with _BUILD_LOCK:
            booster = lgb.Booster(params=params, train_set=subset(~held if stop else None))
            if stop:
                booster.add_valid(subset(held), "held_out")
        if not stop:
            for _ in range(self.n_rounds):
                booster.update()
            return lgb.Booster(model_str=booster.model_to_string())
        best_round, best_loss = 0, np.inf
        for done in range(1, self.n_rounds + 1):
            booster.update()
            loss = float(booster.eval_valid()[0][2])
            if loss < best_loss:  # as LightGBM's early_stopping callback: strictly better
                best_round, best_loss = done, loss
            elif done - best_round >= self.stop_rounds:
                break
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best_round))

    def predict(self, model: Any, X: FloatArray) -> FloatArray:
        """Predict rows of ``X``."""
        return np.asarray(model.predict(X), dtype=np.float64)


class XGBoostLearner:
    """XGBoost (hist) regressor with native categorical support."""

    name = "xgboost"

    def __init__(self, params: dict[str, Any] | None = None, n_jobs: int = 0) -> None:
        try:
            import xgboost  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "base='xgboost' needs XGBoost: pip install 'pexkit[xgboost]' "
                "(the xgboost-cpu wheel)."
            ) from exc
        merged = {**XGBOOST_DEFAULTS, **(params or {})}
        self.n_rounds = int(merged.pop("n_estimators", 100))
        self.workers = _workers(n_jobs)
        merged.setdefault("nthread", 1)
        self.params = merged
        self._X: FloatArray | None = None
        self._types: list[str] = []

    def bind(self, X: FloatArray, categorical: list[int]) -> None:
        """Keep ``X`` and which columns are categorical."""
        self._X = X
        self._types = ["c" if j in categorical else "q" for j in range(X.shape[1])]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_X": None}

    def _matrix(self, X: FloatArray, y: FloatArray | None = None) -> Any:
        import xgboost as xgb

        return xgb.DMatrix(X, label=y, feature_types=self._types, enable_categorical=True)

    def fit(
        self, rows: NDArray[np.int64], y: FloatArray, seed: int, binary: bool = False
    ) -> Any:
        """Train on rows of the bound matrix (``binary:logistic`` when ``binary``)."""
        import xgboost as xgb

        if self._X is None:
            raise InvalidParameterError("XGBoostLearner.fit called before bind().")
        params = {**self.params, "seed": seed}
        if binary:
            params["objective"] = "binary:logistic"
        return xgb.train(params, self._matrix(self._X[rows], y), num_boost_round=self.n_rounds)

    def predict(self, model: Any, X: FloatArray) -> FloatArray:
        """Predict rows of ``X``."""
        return np.asarray(model.predict(self._matrix(X)), dtype=np.float64)


BASE_LEARNERS = {"lightgbm": LightGBMLearner, "xgboost": XGBoostLearner}


def make_base_learner(
    base: str, params: dict[str, Any] | None = None, n_jobs: int = 0
) -> LightGBMLearner | XGBoostLearner:
    """Return a fresh base learner by name ('lightgbm' or 'xgboost')."""
    if base == "lightgbm":
        return LightGBMLearner(params, n_jobs)
    if base == "xgboost":
        return XGBoostLearner(params, n_jobs)
    raise InvalidParameterError(
        f"'base' must be one of {sorted(BASE_LEARNERS)}; got {base!r}."
    )
