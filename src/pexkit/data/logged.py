"""LoggedData: a randomized experiment's log, validated once."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from pexkit.data.propensity import ESTIMATE, estimate_observation, estimate_propensity
from pexkit.exceptions import InvalidDataError, SampleRatioMismatchWarning
from pexkit.spec import ExperimentSpec
from pexkit.spec.spec import label_key

if TYPE_CHECKING:
    from distributed import Client

    from pexkit.execution.dask import DistributedLog

__all__ = ["FeatureEncoder", "LoggedData", "SampleRatioTest"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SRM_ALPHA = 1e-3


def _fail(column: str, expected: str, found: str, row: int | None, fix: str) -> None:
    where = "" if row is None else f" (first at row {row}, 0-based)"
    raise InvalidDataError(
        f"column {column!r}: expected {expected}; found {found}{where}. {fix}"
    )


def _first(mask: NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True)
class SampleRatioTest:
    """Chi-square test of the logged arm counts against the design's shares.

    Attributes
    ----------
    counts : dict
        Units per arm (clusters per arm when the spec names a ``cluster``).
    expected : dict
        Expected units per arm under the design's shares.
    chi2, p_value : float
        Pearson's statistic and its p-value (K-1 degrees of freedom).
    mismatch : bool
        True when ``p_value < 0.001``.
    """

    counts: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "counts": self.counts,
            "expected": self.expected,
            "chi2": self.chi2,
            "p_value": self.p_value,
            "mismatch": self.mismatch,
            "alpha": SRM_ALPHA,
        }


class FeatureEncoder:
    """Turns a frame's feature columns into the model matrix, the same way each time.

    Numeric columns become float64; categorical columns become pandas
    categoricals with the categories seen when the encoder was built (unseen
    levels become missing), which LightGBM and XGBoost handle natively.
    """

    def __init__(self, spec: ExperimentSpec, categories: dict[str, list[Any]]) -> None:
        self.spec = spec
        self.categories = categories

    @classmethod
    def fit(cls, frame: pd.DataFrame, spec: ExperimentSpec) -> FeatureEncoder:
        """Learn the categories of each categorical feature from ``frame``."""
        cats: dict[str, list[Any]] = {}
        for col in spec.categorical:
            values = frame[col].dropna().astype(str).unique().tolist()
            cats[col] = sorted(values)
        return cls(spec, cats)

    def transform(self, frame: Any) -> pd.DataFrame:
        """Return the feature frame for ``frame`` (pandas or polars)."""
        frame = _to_pandas(frame)
        missing = [c for c in self.spec.features if c not in frame.columns]
        if missing:
            raise InvalidDataError(
                f"feature columns {missing} are missing; expected every feature of "
                f"the spec {list(self.spec.features)}; found columns "
                f"{list(frame.columns)[:20]}. Add them to the frame."
            )
        out: dict[str, Any] = {}
        for col in self.spec.numeric:
            series = frame[col]
            if not (
                pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
            ):
                bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
                row = _first(bad.to_numpy()) if bad.any() else None
                example = series.iloc[row] if row is not None else series.dtype
                _fail(
                    col,
                    "a numeric feature",
                    f"non-numeric values such as {example!r}",
                    row,
                    f"Declare {col!r} under features.categorical in the spec, or "
                    "convert it to numbers.",
                )
            out[col] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        for col in self.spec.categorical:
            cats = self.categories[col]
            values = frame[col].astype("string")
            values = values.where(values.isin(cats))  # unseen levels -> missing
            out[col] = pd.Categorical(values.astype(object), categories=cats)
        return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical columns in :meth:`matrix` output."""
        n_num = len(self.spec.numeric)
        return list(range(n_num, n_num + len(self.spec.categorical)))

    def matrix(self, features: pd.DataFrame) -> FloatArray:
        """Return encoded features as float64 (categories as codes, missing as NaN)."""
        cols: list[FloatArray] = []
        for col in self.spec.numeric:
            cols.append(features[col].to_numpy(dtype=np.float64))
        for col in self.spec.categorical:
            codes = np.asarray(features[col].cat.codes, dtype=np.float64)
            codes[codes < 0] = np.nan
            cols.append(codes)
        return np.column_stack(cols) if cols else np.empty((len(features), 0))


def _to_pandas(frame: Any) -> pd.DataFrame:
    if isinstance(frame, pd.DataFrame):
        return frame.reset_index(drop=True)
    to_pandas = getattr(frame, "to_pandas", None)
    if to_pandas is not None:
        result = to_pandas()
        if isinstance(result, pd.DataFrame):
            return result
    raise InvalidDataError(
        f"the log must be a pandas or polars DataFrame; got {type(frame).__name__}. "
        "Use LoggedData.from_csv or from_parquet for files."
    )


class LoggedData:
    """A randomized experiment's log: features, arm, propensity and outcomes.

    Build it with :meth:`from_frame`, :meth:`from_csv`, :meth:`from_parquet`
    or :meth:`from_path`; the table is validated once, here.

    Attributes
    ----------
    spec : ExperimentSpec
    X : DataFrame of shape (n_units, n_features)
        Encoded features (numeric float64, categoricals as pandas categoricals).
    treatment : ndarray of shape (n_units,)
        Index of the logged arm (0 = control).
    outcomes : ndarray of shape (n_units, n_outcomes)
    propensity : ndarray of shape (n_units,)
        Probability of the logged arm given the features.
    unit_ids : ndarray of shape (n_units,)
    srm : SampleRatioTest or None
        None when the log carries its own propensities (no single design share).
    clusters : ndarray of shape (n_units,) or None
        The randomization cluster of each row as codes ``0..G-1`` (``cluster:``
        in the spec), or None when rows were randomized one by one.
    """

    def __init__(
        self,
        spec: ExperimentSpec,
        X: pd.DataFrame,
        treatment: IntArray,
        outcomes: FloatArray,
        propensity: FloatArray,
        unit_ids: NDArray[Any],
        encoder: FeatureEncoder,
        srm: SampleRatioTest | None,
        clusters: IntArray | None = None,
    ) -> None:
        self.spec = spec
        self.X = X
        self.treatment = treatment
        self.outcomes = outcomes
        self.propensity = propensity
        self.unit_ids = unit_ids
        self.encoder = encoder
        self.srm = srm
        self.clusters = clusters
        self._binary: tuple[bool, ...] | None = None
        #: (n, M) cross-fitted P(outcome observed | x, arm) when a ``missing: drop``
        #: outcome is missing somewhere (1 for fully observed outcomes), else None
        self.observation: FloatArray | None = None
        #: overlap diagnostics when the propensities were estimated (``propensity: estimate``)
        self.propensity_diagnostics: dict[str, Any] | None = None
        #: per outcome that is itself an estimate (a surrogate index), its (n, B)
        #: deviations under B refits of its model; standard errors downstream
        #: (``EffectModel.ate``, ``evaluate_policy``, the front) add their spread
        self.outcome_draws: dict[str, FloatArray] = {}

    # ---------------------------------------------------------------- views
    @property
    def binary(self) -> tuple[bool, ...]:
        """Per outcome, whether it is binary (0/1): declared ``type:``, else detected.

        Binary outcomes' outcome models use a classification objective, so their
        predictions are probabilities in [0, 1].
        """
        if self._binary is None:
            flags = []
            for m, o in enumerate(self.spec.outcomes):
                if o.type is not None:
                    flags.append(o.type == "binary")
                else:
                    y = self.outcomes[:, m]
                    y = y[~np.isnan(y)]
                    flags.append(bool(y.size) and bool(np.isin(y, (0.0, 1.0)).all()))
            self._binary = tuple(flags)
        return self._binary

    @property
    def outcome_rows(self) -> dict[str, int]:
        """Rows with each outcome observed (fewer than ``n_units`` for ``missing: drop``)."""
        counts = np.isfinite(self.outcomes).sum(axis=0)
        return {o: int(c) for o, c in zip(self.spec.outcome_names, counts, strict=True)}

    @property
    def n_units(self) -> int:
        """Number of rows."""
        return int(self.treatment.shape[0])

    @property
    def n_treatments(self) -> int:
        """Number of arms, control included."""
        return self.spec.n_treatments

    @property
    def n_outcomes(self) -> int:
        """Number of outcomes."""
        return self.spec.n_outcomes

    @property
    def arm_counts(self) -> dict[str, int]:
        """Units per arm, in spec order."""
        counts = np.bincount(self.treatment, minlength=self.n_treatments)
        return {a: int(c) for a, c in zip(self.spec.arms, counts, strict=True)}

    def subset(self, rows: NDArray[Any]) -> LoggedData:
        """Return the rows ``rows`` (indices or boolean mask) as a new LoggedData."""
        rows = np.asarray(rows)
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        out = LoggedData(
            self.spec,
            self.X.iloc[idx].reset_index(drop=True),
            self.treatment[idx],
            self.outcomes[idx],
            self.propensity[idx],
            self.unit_ids[idx],
            self.encoder,
            None,
            None if self.clusters is None else self.clusters[idx],
        )
        out._binary = self.binary  # a subset keeps its log's outcome types
        out.observation = None if self.observation is None else self.observation[idx]
        out.outcome_draws = {name: d[idx] for name, d in self.outcome_draws.items()}
        return out

    def __len__(self) -> int:
        return self.n_units

    def __repr__(self) -> str:
        return (
            f"LoggedData(n_units={self.n_units}, arms={self.arm_counts}, "
            f"outcomes={list(self.spec.outcome_names)})"
        )

    # --------------------------------------------------------- constructors
    @classmethod
    def from_path(cls, path: str | Path, spec: ExperimentSpec, **kwargs: Any) -> LoggedData:
        """Read a CSV or Parquet log (chosen by the file's extension)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            return cls.from_parquet(path, spec, cluster=None, **kwargs)
        if suffix in (".csv", ".txt", ".gz"):
            return cls.from_csv(path, spec, **kwargs)
        raise InvalidDataError(
            f"log file {str(path)!r}: expected a .csv or .parquet file; found "
            f"extension {suffix or '(none)'!r}. Rename the file or convert it."
        )

    @classmethod
    def from_csv(cls, path: str | Path, spec: ExperimentSpec, **kwargs: Any) -> LoggedData:
        """Read a CSV log."""
        path = Path(path)
        _check_file(path)
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise InvalidDataError(
                f"log file {str(path)!r}: expected a header row and data rows; found "
                "an empty file. Export the experiment log again."
            ) from None
        return cls.from_frame(frame, spec, **kwargs)

    @overload
    @classmethod
    def from_parquet(
        cls, path: str | Path, spec: ExperimentSpec, *, cluster: None = None, **kwargs: Any
    ) -> LoggedData: ...

    @overload
    @classmethod
    def from_parquet(
        cls, path: str | Path, spec: ExperimentSpec, *, cluster: Client, **kwargs: Any
    ) -> DistributedLog: ...

    @classmethod
    def from_parquet(
        cls, path: str | Path, spec: ExperimentSpec, *, cluster: Client | None = None,
        **kwargs: Any,
    ) -> LoggedData | DistributedLog:
        """Read a Parquet log; with ``cluster``, a file or directory of parts kept on its workers.

        Parameters
        ----------
        path : str or Path
            A Parquet file; with ``cluster`` also a directory of parts, local or
            any fsspec URL (``s3://...``) the workers can read.
        spec : ExperimentSpec
        cluster : dask.distributed.Client, optional
            Read, validate and keep the parts on this cluster's workers
            (:class:`~pexkit.execution.dask.DistributedLog`); the client never
            gathers the rows. ``EffectModel(learner="t").fit``, ``.ate()`` and
            ``evaluate_policy(LinearPolicy, ...)`` then run on the cluster.
        """
        if cluster is not None:
            from pexkit.execution.dask import read_parquet

            return read_parquet(str(path), spec, cluster)
        path = Path(path)
        _check_file(path)
        return cls.from_frame(pd.read_parquet(path), spec, **kwargs)

    @classmethod
    def from_frame(
        cls,
        frame: Any,
        spec: ExperimentSpec,
        *,
        min_rows_per_arm: int = 10,
        warn_srm: bool = True,
    ) -> LoggedData:
        """Validate a pandas or polars frame against ``spec``.

        Parameters
        ----------
        frame : pandas.DataFrame or polars.DataFrame
            One row per unit.
        spec : ExperimentSpec
        min_rows_per_arm : int
            Fewest rows an arm may have; effect models cannot be fitted on less.
        warn_srm : bool
            Emit :class:`SampleRatioMismatchWarning` when the arm counts differ
            from the design's shares (p < 0.001).

        Raises
        ------
        InvalidDataError
            Naming the column, what was expected, what was found, the first
            offending row, and the fix.
        """
        if not isinstance(spec, ExperimentSpec):
            raise InvalidDataError(
                f"'spec' must be an ExperimentSpec; got {type(spec).__name__}. Build "
                "one with ExperimentSpec.from_yaml(path)."
            )
        df = _to_pandas(frame)
        if len(df) == 0:
            raise InvalidDataError(
                "the log: expected at least one row per arm; found 0 rows. Check that "
                "the file or query returned data."
            )
        needed = [spec.treatment, *spec.outcome_names, *spec.features]
        estimate = spec.propensity == ESTIMATE
        needed += [c for c in (spec.unit, None if estimate else spec.propensity, spec.cluster)
                   if c]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise InvalidDataError(
                f"columns {missing} are missing from the log; expected the spec's "
                f"columns {needed}; found {list(df.columns)[:30]}. Fix the spec's "
                "column names or add the columns."
            )

        # treatment
        raw_t = df[spec.treatment]
        if raw_t.isna().any():
            _fail(
                spec.treatment,
                f"an arm label from {list(spec.arms)}",
                f"{int(raw_t.isna().sum())} missing labels",
                _first(raw_t.isna().to_numpy()),
                "Drop rows without an assignment or fill in their arm.",
            )
        # labels match by value where they are numbers (0, 0.0 and "0" are one arm)
        inverse, uniques = pd.factorize(raw_t)
        arm_index = {label_key(a): i for i, a in enumerate(spec.arms)}
        unique_codes = np.array([arm_index.get(label_key(u), -1) for u in uniques],
                                dtype=np.int64)
        codes = pd.Series(unique_codes[inverse] if len(uniques) else np.zeros(0, np.int64))
        codes = codes.where(codes >= 0)
        unknown = codes.isna().to_numpy()
        if unknown.any():
            row = _first(unknown)
            found = sorted({str(u) for u, c in zip(uniques, unique_codes, strict=True)
                            if c < 0})[:5]
            _fail(
                spec.treatment,
                f"an arm label from {list(spec.arms)}",
                f"unknown labels {found} in {int(unknown.sum())} rows",
                row,
                "Add the label to treatment.arms in the spec, or drop those rows.",
            )
        treatment: IntArray = np.asarray(codes.to_numpy(), dtype=np.int64)
        counts = np.bincount(treatment, minlength=spec.n_treatments)
        for k, c in enumerate(counts):
            if c < min_rows_per_arm:
                _fail(
                    spec.treatment,
                    f"at least {min_rows_per_arm} rows for every arm",
                    f"{int(c)} rows for arm {spec.arms[k]!r}",
                    None,
                    "Collect more data for that arm, or remove it from "
                    "treatment.arms and drop its rows.",
                )

        # outcomes
        outcomes = np.empty((len(df), spec.n_outcomes), dtype=np.float64)
        for m, name in enumerate(spec.outcome_names):
            series = df[name]
            if pd.api.types.is_bool_dtype(series):
                series = series.astype(np.float64)
            if not pd.api.types.is_numeric_dtype(series):
                coerced = pd.to_numeric(series, errors="coerce")
                bad = (coerced.isna() & series.notna()).to_numpy()
                if bad.any():
                    row = _first(bad)
                    _fail(
                        name,
                        "a numeric outcome",
                        f"non-numeric values such as {series.iloc[row]!r}",
                        row,
                        "Convert the outcome to numbers (0/1 for yes/no).",
                    )
                series = coerced
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            outcome = spec.outcomes[m]
            infinite = np.isinf(values)
            if infinite.any():
                row = _first(infinite)
                _fail(name, "finite outcome values",
                      f"{int(infinite.sum())} infinite values (e.g. {values[row]!r})", row,
                      "Replace them with the measured value, or with NaN and a 'missing:' "
                      "choice for this outcome in the spec.")
            nan = np.isnan(values)
            if nan.any():
                if outcome.missing == "zero":
                    values = np.where(nan, 0.0, values)
                elif outcome.missing == "error":
                    _fail(name, "an observed value on every row",
                          f"{int(nan.sum())} missing values", _first(nan),
                          _missing_advice(name, values[~nan]))
                else:  # drop: this outcome is fitted and evaluated on its observed rows
                    per_arm = np.bincount(treatment[~nan], minlength=spec.n_treatments)
                    for k, c in enumerate(per_arm):
                        if c < min_rows_per_arm:
                            _fail(name, f"at least {min_rows_per_arm} observed values per arm",
                                  f"{int(c)} observed values for arm {spec.arms[k]!r}", None,
                                  "Collect more data, or leave this outcome out of the spec.")
            if outcome.type == "binary":
                bad = ~np.isnan(values) & ~np.isin(values, (0.0, 1.0))
                if bad.any():
                    row = _first(bad)
                    _fail(name, "0 or 1 (the outcome is declared 'type: binary')",
                          f"{int(bad.sum())} other values (e.g. {values[row]!r})", row,
                          "Convert it to 0/1, or declare 'type: continuous' for it.")
            outcomes[:, m] = values

        # propensity
        if estimate:
            prop = np.ones(len(df))  # estimated below, once the features are encoded
        elif spec.propensity:
            series = pd.to_numeric(df[spec.propensity], errors="coerce")
            prop = series.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(prop)
            if bad.any():
                row = _first(bad)
                _fail(
                    spec.propensity,
                    "a finite probability of the logged arm",
                    f"{int(bad.sum())} missing, non-numeric or infinite values",
                    row,
                    "Log the assignment probability for every unit, or set "
                    "propensity: null to use the design's shares.",
                )
            bad = (prop <= 0) | (prop > 1)
            if bad.any():
                row = _first(bad)
                _fail(
                    spec.propensity,
                    "probabilities in (0, 1]",
                    f"{int(bad.sum())} values outside it (e.g. {prop[row]!r})",
                    row,
                    "Did you pass logits or percentages? Pass probabilities, or set "
                    "propensity: null to use the design's shares.",
                )
        else:
            prop = np.asarray(spec.shares, dtype=np.float64)[treatment]

        # unit ids
        if spec.unit:
            ids = df[spec.unit]
            if ids.isna().any():
                _fail(
                    spec.unit,
                    "a unit id on every row",
                    f"{int(ids.isna().sum())} missing ids",
                    _first(ids.isna().to_numpy()),
                    "Fill in the ids or drop those rows.",
                )
            dup = ids.duplicated().to_numpy()
            if dup.any():
                row = _first(dup)
                _fail(
                    spec.unit,
                    "one row per unit (unique ids)",
                    f"{int(dup.sum())} duplicate ids such as {ids.iloc[row]!r}",
                    row,
                    "Aggregate outcomes to one row per unit (first exposure) before "
                    "analysis.",
                )
            unit_ids = ids.to_numpy()
        else:
            unit_ids = np.arange(len(df))

        clusters = None if spec.cluster is None else _clusters(df[spec.cluster], treatment, spec)

        encoder = FeatureEncoder.fit(df, spec)
        X = encoder.transform(df)
        diagnostics = None
        if estimate:
            prop, diagnostics = estimate_propensity(
                encoder.matrix(X), treatment, spec.arms, encoder.categorical_indices)

        srm = None
        if not spec.propensity:
            if clusters is None:
                srm = sample_ratio_test(counts, spec)
            else:  # clusters were randomized: count clusters per arm
                first = np.unique(clusters, return_index=True)[1]
                srm = sample_ratio_test(
                    np.bincount(treatment[first], minlength=spec.n_treatments), spec
                )
            if srm.mismatch and warn_srm:
                warnings.warn(srm_message(spec, srm), SampleRatioMismatchWarning, stacklevel=2)
        out = cls(spec, X, treatment, outcomes, prop, unit_ids, encoder, srm, clusters)
        out.propensity_diagnostics = diagnostics
        absent = np.isnan(outcomes)
        if absent.any():  # attrition that may depend on the features: model it
            matrix = encoder.matrix(X)
            observation = np.ones_like(outcomes)
            for col in np.flatnonzero(absent.any(axis=0)):
                observation[:, col] = estimate_observation(
                    matrix, treatment, ~absent[:, col], encoder.categorical_indices)
            out.observation = observation
        return out


def _missing_advice(name: str, observed: FloatArray) -> str:
    """What to do about missing values of an outcome, by what its observed values look like."""
    counts = observed.size > 0 and bool(
        np.all(observed >= 0) and np.all(observed == np.round(observed)))
    keys = f"outcomes: [{{name: {name}, missing: ...}}]"
    if counts:
        return (f"Its values look like events (0/1 or counts): if a missing value means no "
                f"event happened, set 'missing: zero' for it ({keys}); if it was not "
                "measured, set 'missing: drop' to fit and evaluate it on its observed rows.")
    return (f"Its values look like a measurement (a score, an amount), which 0 would distort: "
            f"set 'missing: drop' for it ({keys}) to fit and evaluate it on the rows where it "
            "was observed, or drop the rows.")


def _clusters(raw: pd.Series, treatment: IntArray, spec: ExperimentSpec) -> IntArray:
    """Cluster codes ``0..G-1``; every row of a cluster must share its arm."""
    col = str(spec.cluster)
    if raw.isna().any():
        _fail(
            col,
            "a cluster id on every row",
            f"{int(raw.isna().sum())} missing ids",
            _first(raw.isna().to_numpy()),
            "Fill in the randomization unit of those rows or drop them.",
        )
    codes = np.asarray(pd.factorize(raw)[0], dtype=np.int64)
    G = int(codes.max()) + 1 if codes.size else 0
    lo = np.full(G, np.iinfo(np.int64).max)
    hi = np.full(G, -1)
    np.minimum.at(lo, codes, treatment)
    np.maximum.at(hi, codes, treatment)
    mixed = np.flatnonzero(lo != hi)
    if mixed.size:
        row = int(np.flatnonzero(codes == mixed[0])[0])
        arms = sorted({spec.arms[t] for t in treatment[codes == mixed[0]]})
        _fail(
            col,
            "one arm per cluster ('cluster' names the randomization unit: all its rows "
            "get the same arm)",
            f"{mixed.size} clusters with rows in several arms, e.g. {raw.iloc[row]!r} in "
            f"{arms}",
            row,
            "Check that 'cluster' names the column that was randomized; if rows were "
            "randomized one by one, remove 'cluster' from the spec.",
        )
    if 2 * spec.n_treatments > G:
        _fail(
            col,
            f"at least 2 clusters per arm ({2 * spec.n_treatments} in all) for "
            "cluster-robust standard errors",
            f"{G} clusters",
            None,
            "Collect more clusters; with this few, no standard error can be trusted.",
        )
    return codes


def srm_message(spec: ExperimentSpec, srm: SampleRatioTest) -> str:
    """The sample-ratio warning; on an equal-split spec it names ``treatment.shares``."""
    observed = {a: round(c / max(sum(srm.counts.values()), 1), 4) for a, c in srm.counts.items()}
    counted = (f"clusters ({spec.cluster!r}, the randomization unit) per arm"
               if spec.cluster else "arm counts")
    text = (
        f"sample ratio mismatch in column {spec.treatment!r}: {counted} {srm.counts} differ "
        f"from the design's shares {dict(zip(spec.arms, spec.shares, strict=True))} "
        f"(chi2={srm.chi2:.1f}, p={srm.p_value:.2g}). "
    )
    equal = all(abs(s - 1.0 / spec.n_treatments) < 1e-12 for s in spec.shares)
    if equal:
        text += (
            f"If the design assigned unequal shares on purpose (observed: {observed}), "
            "declare them in the spec's treatment.shares, or give a propensity column: "
            "without either, every arm is taken to have probability "
            f"1/{spec.n_treatments} and the effects are weighted wrongly. Otherwise "
        )
    return text + (
        "randomization or logging may be broken; check the assignment pipeline before "
        "trusting effects."
    )


def sample_ratio_test(counts: NDArray[Any], spec: ExperimentSpec) -> SampleRatioTest:
    """Chi-square test of arm ``counts`` against ``spec.shares``."""
    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() * np.asarray(spec.shares)
    chi2, p_value = stats.chisquare(counts, expected)
    return SampleRatioTest(
        counts={a: int(c) for a, c in zip(spec.arms, counts, strict=True)},
        expected={a: float(e) for a, e in zip(spec.arms, expected, strict=True)},
        chi2=float(chi2),
        p_value=float(p_value),
        mismatch=bool(p_value < SRM_ALPHA),
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InvalidDataError(
            f"log file {str(path)!r} does not exist; pass the path of a CSV or "
            "Parquet experiment log."
        )
    if path.stat().st_size == 0:
        raise InvalidDataError(
            f"log file {str(path)!r}: expected a header row and data rows; found an "
            "empty file. Export the experiment log again."
        )
