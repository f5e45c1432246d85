"""ExperimentSpec: what an experiment's log contains and what its outcomes mean."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from pexkit.exceptions import SpecError

__all__ = ["ExperimentSpec", "Outcome"]

Goal = Literal["maximize", "minimize"]
_GOALS = ("maximize", "minimize")
_TYPES = ("binary", "continuous")
_MISSING = ("error", "drop", "zero")
_AGGREGATES = ("sum", "count", "max", "last", "any")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_OUTCOME_KEYS = ("name", "goal", "weight", "pre", "type", "missing", "aggregate", "window")


def read_yaml(source: str | Path) -> Any:
    """The parsed YAML of a spec file path (or of a YAML string)."""
    path = Path(source) if not (isinstance(source, str) and "\n" in source) else None
    if path is not None:
        if not path.exists():
            raise SpecError(f"spec file {str(path)!r} does not exist; pass the path of a YAML spec.")
        text = path.read_text()
    else:
        text = str(source)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"the spec is not valid YAML: {exc}") from exc


def window_seconds(text: Any, outcome: str = "?") -> float:
    """Seconds in a window written as a number and a unit (s, m, h, d, w).

    >>> window_seconds("7d"), window_seconds("90s"), window_seconds("1.5h")
    (604800.0, 90.0, 5400.0)
    """
    raw = str(text).strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw else None
    try:
        value = float(raw[:-1]) if unit is not None else float("nan")
    except ValueError:
        value = float("nan")
    if unit is None or not (math.isfinite(value) and value > 0):
        raise SpecError(
            f"outcome {outcome!r}: 'window' must be a positive number with a unit s, m, h, d "
            f"or w (e.g. '7d', '12h'); got {text!r}. Remove the key to count every event."
        )
    return value * unit


@dataclass(frozen=True)
class Outcome:
    """One outcome of an experiment.

    Parameters
    ----------
    name : str
        Column holding the outcome.
    goal : {"maximize", "minimize"}
        Whether larger values are better.
    weight : float or None
        Weight ``w_m >= 0`` of this outcome in the default utility; ``None``
        means 1 for the first outcome and 0 for the others.
    pre : str or None
        A column holding this metric's pre-exposure value (a feature logged at
        first exposure): the launch backtest adjusts for it (CUPED) and reports
        the variance it removed.
    type : {"binary", "continuous"} or None
        ``binary`` (0/1) outcomes are fitted with a classification objective
        (predictions are probabilities); None detects it from the log (every
        value 0 or 1).
    missing : {"error", "drop", "zero"}
        What a missing (NaN) value means: ``error`` refuses the log (the
        default), ``zero`` counts it as 0 (no event), ``drop`` fits and
        evaluates this outcome on the rows where it was observed.
    aggregate : {"sum", "count", "max", "last", "any"}
        How the service turns a unit's events of this outcome into one value.
    window : str or None
        Only events within this long after the unit's first exposure count
        (``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``); None counts all of them.
    """

    name: str
    goal: Goal = "maximize"
    weight: float | None = None
    pre: str | None = None
    type: str | None = None
    missing: str = "error"
    aggregate: str = "sum"
    window: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(
                f"outcome 'name' must be a non-empty string; got {self.name!r}. "
                "Write each outcome as {name: COLUMN, goal: maximize}."
            )
        if self.goal not in _GOALS:
            raise SpecError(
                f"outcome {self.name!r}: 'goal' must be 'maximize' or 'minimize'; "
                f"got {self.goal!r}. Fix the spec's goal for this outcome."
            )
        if self.weight is not None and not (float(self.weight) >= 0):
            raise SpecError(
                f"outcome {self.name!r}: 'weight' must be a number >= 0; got "
                f"{self.weight!r}. Use goal: minimize for outcomes to reduce "
                "instead of a negative weight."
            )
        for key, allowed in (("type", (None, *_TYPES)), ("missing", _MISSING),
                             ("aggregate", _AGGREGATES)):
            if getattr(self, key) not in allowed:
                raise SpecError(
                    f"outcome {self.name!r}: {key!r} must be one of "
                    f"{[a for a in allowed if a is not None]}; got {getattr(self, key)!r}."
                )
        if self.window is not None:
            window_seconds(self.window, self.name)

    @property
    def window_seconds(self) -> float | None:
        """The window after first exposure in seconds (None: no window)."""
        return None if self.window is None else window_seconds(self.window, self.name)

    @property
    def sign(self) -> float:
        """Return +1 for a maximized outcome and -1 for a minimized one."""
        return 1.0 if self.goal == "maximize" else -1.0


def label_key(value: Any) -> str:
    """The key arm labels are matched by: numbers by value, anything else by its text.

    ``0``, ``0.0``, ``"0"``, ``"0.0"`` and ``np.int64(0)`` are one arm; ``"a"`` is
    ``"a"``. Text that is not plainly a finite number (``"nan"``, ``" 1"``, ``"1_0"``)
    stays text.

    >>> label_key(1.0), label_key("1"), label_key("1.50"), label_key("B")
    ('1', '1', '1.5', 'B')
    """
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = str(value)
    if isinstance(value, float | np.floating):
        x = float(value)
    else:
        if not text or text != text.strip() or "_" in text:
            return text
        try:
            x = float(text)
        except ValueError:
            return text
    if not math.isfinite(x):
        return text
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    return repr(x)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable):
        raise SpecError(f"{what} must be a list of column names; got {value!r}.")
    out = tuple(str(v) for v in value)
    return out


def _outcome(item: Any) -> Outcome:
    if isinstance(item, Outcome):
        return item
    if isinstance(item, str):
        return Outcome(item)
    if isinstance(item, Mapping):
        unknown = set(item) - set(_OUTCOME_KEYS)
        if unknown:
            raise SpecError(
                f"outcome {item.get('name')!r} has unknown keys {sorted(unknown)}; "
                f"expected only {', '.join(_OUTCOME_KEYS)}."
            )
        pre = item.get("pre")
        if pre is not None and (not isinstance(pre, str) or not pre):
            raise SpecError(
                f"outcome {item.get('name')!r}: 'pre' must name the column of the metric's "
                f"pre-exposure value; got {pre!r}."
            )
        if "name" not in item:
            raise SpecError(
                f"outcome {dict(item)!r} has no 'name'; write it as "
                "{name: COLUMN, goal: maximize}."
            )
        weight = item.get("weight")
        return Outcome(
            str(item["name"]),
            item.get("goal", "maximize"),
            None if weight is None else float(weight),
            pre,
            item.get("type"),
            item.get("missing", "error"),
            item.get("aggregate", "sum"),
            None if item.get("window") is None else str(item["window"]),
        )
    raise SpecError(
        f"an outcome must be a name or a mapping {{name, goal, weight}}; got {item!r}."
    )


class ExperimentSpec:
    """The description of a randomized experiment's log.

    Parameters
    ----------
    treatment : str or mapping
        Column holding the logged arm, or the YAML form
        ``{"column": ..., "arms": [...]}``.
    arms : sequence of str, optional
        Arm labels, control first. Required unless ``treatment`` holds them.
    outcomes : sequence
        Outcome names, :class:`Outcome` objects, or mappings
        ``{"name", "goal", "weight"}``; a mapping ``{name: goal}`` also works.
    features : mapping, optional
        ``{"numeric": [...], "categorical": [...]}`` (the YAML form).
    numeric, categorical : sequence of str, optional
        Feature columns, as an alternative to ``features``.
    unit : str or None
        Column with unit ids; ``None`` means the row number.
    propensity : str or None
        Column with P(logged arm | x); ``None`` means the design's shares;
        ``"estimate"`` fits a cross-fitted model of the arm given the features
        (:mod:`pexkit.data.propensity`, with overlap diagnostics).
    shares : sequence of float, optional
        The design's share of units per arm (default uniform ``1/K``); used
        for the sample-ratio-mismatch test and when ``propensity`` is None.
    cluster : str or None
        Column naming the randomization unit when it is coarser than a row
        (a household, a school, a store): every row of a cluster shares its
        arm. Standard errors are then cluster-robust, cross-fitting folds keep
        a cluster together, and the sample-ratio test counts clusters.
    name : str
        A name for the experiment.

    Examples
    --------
    >>> spec = ExperimentSpec(treatment="arm", arms=["control", "mail"],
    ...                       outcomes=[{"name": "visit", "goal": "maximize"}],
    ...                       numeric=["age"])
    >>> spec.n_treatments, spec.n_outcomes
    (2, 1)
    """

    __slots__ = (
        "arms",
        "categorical",
        "cluster",
        "name",
        "numeric",
        "outcomes",
        "propensity",
        "shares",
        "treatment",
        "unit",
    )

    name: str
    unit: str | None
    treatment: str
    arms: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    propensity: str | None
    shares: tuple[float, ...]
    cluster: str | None

    def __init__(
        self,
        *,
        treatment: str | Mapping[str, Any],
        outcomes: Sequence[Any] | Mapping[str, Any],
        arms: Sequence[str] | None = None,
        features: Mapping[str, Any] | None = None,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        unit: str | None = None,
        propensity: str | None = None,
        shares: Sequence[float] | None = None,
        name: str = "experiment",
        cluster: str | None = None,
    ) -> None:
        if isinstance(treatment, Mapping):
            unknown = set(treatment) - {"column", "arms", "shares"}
            if unknown:
                raise SpecError(
                    f"'treatment' has unknown keys {sorted(unknown)}; expected "
                    "column, arms and optionally shares."
                )
            if "column" not in treatment:
                raise SpecError(
                    "'treatment' needs a 'column': the column holding the logged arm."
                )
            arms = arms if arms is not None else treatment.get("arms")
            shares = shares if shares is not None else treatment.get("shares")
            treatment = str(treatment["column"])
        if not isinstance(treatment, str) or not treatment:
            raise SpecError(
                f"'treatment' must name the arm column; got {treatment!r}."
            )
        arm_names = _names(arms, "'treatment.arms'")
        if len(arm_names) < 2:
            raise SpecError(
                f"'treatment.arms' must list at least 2 arms, control first; got "
                f"{list(arm_names)}. Add the arm labels as they appear in column "
                f"{treatment!r}."
            )
        if len(set(arm_names)) != len(arm_names):
            raise SpecError(f"'treatment.arms' has duplicate labels: {list(arm_names)}.")
        seen: dict[str, str] = {}
        for label in arm_names:
            other = seen.setdefault(label_key(label), label)
            if other != label:
                raise SpecError(
                    f"'treatment.arms' labels {other!r} and {label!r} are one arm: numeric "
                    "labels match by value (0, 0.0 and '0' are the same arm). Rename one "
                    "of them."
                )

        if isinstance(outcomes, Mapping):
            items: list[Any] = [
                {"name": k, "goal": v} if isinstance(v, str) else {"name": k, **v}
                for k, v in outcomes.items()
            ]
        else:
            items = list(outcomes)
        outs = tuple(_outcome(o) for o in items)
        if not outs:
            raise SpecError("'outcomes' must list at least one outcome.")
        if len({o.name for o in outs}) != len(outs):
            raise SpecError(
                f"'outcomes' has duplicate names: {[o.name for o in outs]}."
            )

        if features is not None:
            unknown = set(features) - {"numeric", "categorical"}
            if unknown:
                raise SpecError(
                    f"'features' has unknown keys {sorted(unknown)}; expected "
                    "numeric and categorical."
                )
            numeric = numeric if numeric is not None else features.get("numeric")
            categorical = (
                categorical if categorical is not None else features.get("categorical")
            )
        num = _names(numeric, "'features.numeric'")
        cat = _names(categorical, "'features.categorical'")
        reserved = {treatment, *(o.name for o in outs)}
        if cluster is not None and (not isinstance(cluster, str) or not cluster):
            raise SpecError(
                f"'cluster' must name the column of the randomization unit (e.g. "
                f"household_id); got {cluster!r}. Remove the key when rows were randomized "
                "one by one."
            )
        if cluster is not None and cluster in {treatment, propensity, *(o.name for o in outs)}:
            raise SpecError(
                f"'cluster' column {cluster!r} is also the treatment, an outcome or the "
                "propensity; name the column that identifies the randomization unit."
            )
        reserved |= {c for c in (unit, propensity, cluster) if c}
        clash = sorted(set(num + cat) & reserved)
        if clash:
            raise SpecError(
                f"feature columns {clash} are also the treatment, an outcome, the "
                "unit id, the propensity or the cluster; remove them from 'features'."
            )
        both = sorted(set(num) & set(cat))
        if both:
            raise SpecError(
                f"features {both} are listed as both numeric and categorical."
            )
        if shares is None:
            share_t = tuple(1.0 / len(arm_names) for _ in arm_names)
        else:
            share_t = tuple(float(s) for s in shares)
            if len(share_t) != len(arm_names) or any(s <= 0 for s in share_t):
                raise SpecError(
                    f"'treatment.shares' must give one positive share per arm "
                    f"({len(arm_names)}); got {list(share_t)}."
                )
            total = sum(share_t)
            share_t = tuple(s / total for s in share_t)

        set_ = object.__setattr__
        set_(self, "name", str(name))
        set_(self, "unit", unit)
        set_(self, "treatment", treatment)
        set_(self, "arms", arm_names)
        set_(self, "outcomes", outs)
        set_(self, "numeric", num)
        set_(self, "categorical", cat)
        set_(self, "propensity", propensity)
        set_(self, "shares", share_t)
        set_(self, "cluster", cluster)

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # immutable: pickle through the YAML form (models are stored pickled)
        return (ExperimentSpec.from_dict, (self.to_dict(),))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(
            f"ExperimentSpec is immutable; build a new one instead of setting {key!r}."
        )

    # ----------------------------------------------------------------- views
    @property
    def features(self) -> tuple[str, ...]:
        """All feature columns, numeric first."""
        return self.numeric + self.categorical

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """Outcome column names in spec order."""
        return tuple(o.name for o in self.outcomes)

    @property
    def signs(self) -> tuple[float, ...]:
        """Goal sign per outcome: +1 maximize, -1 minimize."""
        return tuple(o.sign for o in self.outcomes)

    @property
    def weights_given(self) -> bool:
        """Whether any outcome has a ``weight`` (else the utility is the first outcome alone)."""
        return any(o.weight is not None for o in self.outcomes)

    def default_weights_note(self) -> str:
        """What an unweighted spec's utility means, and how to weigh the outcomes."""
        return (
            f"the spec gives no outcome weights, so the utility is {self.outcomes[0].name!r} "
            f"alone (the first outcome) and {[o.name for o in self.outcomes[1:]]} count for "
            "nothing in it; give each outcome a 'weight:' in the spec (or pass weights=...) "
            "to trade them off."
        )

    @property
    def default_weights(self) -> dict[str, float]:
        """Weights of the default utility (spec weights, else 1 for the first)."""
        if all(o.weight is None for o in self.outcomes):
            return {o.name: (1.0 if i == 0 else 0.0) for i, o in enumerate(self.outcomes)}
        return {o.name: float(o.weight or 0.0) for o in self.outcomes}

    @property
    def n_treatments(self) -> int:
        """Number of arms, control included."""
        return len(self.arms)

    @property
    def n_outcomes(self) -> int:
        """Number of outcomes."""
        return len(self.outcomes)

    @property
    def control(self) -> str:
        """The control arm's label."""
        return self.arms[0]

    def outcome_index(self, name: str) -> int:
        """Return the position of outcome ``name``; raise SpecError if unknown."""
        try:
            return self.outcome_names.index(name)
        except ValueError:
            raise SpecError(
                f"unknown outcome {name!r}; the spec's outcomes are "
                f"{list(self.outcome_names)}."
            ) from None

    def treatment_index(self, label: Any) -> int:
        """Return the position of arm ``label`` (numbers match by value); SpecError if unknown."""
        try:
            return [label_key(a) for a in self.arms].index(label_key(label))
        except ValueError:
            raise SpecError(
                f"unknown treatment {label!r}; the spec's arms are {list(self.arms)}."
            ) from None

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Return the YAML form as a plain dict."""
        outs: list[dict[str, Any]] = []
        for o in self.outcomes:
            d: dict[str, Any] = {"name": o.name, "goal": o.goal}
            if o.weight is not None:
                d["weight"] = o.weight
            if o.pre is not None:
                d["pre"] = o.pre
            if o.type is not None:
                d["type"] = o.type
            if o.missing != "error":
                d["missing"] = o.missing
            if o.aggregate != "sum":
                d["aggregate"] = o.aggregate
            if o.window is not None:
                d["window"] = o.window
            outs.append(d)
        treatment: dict[str, Any] = {"column": self.treatment, "arms": list(self.arms)}
        if any(abs(s - 1.0 / len(self.arms)) > 1e-12 for s in self.shares):
            treatment["shares"] = list(self.shares)
        out: dict[str, Any] = {
            "name": self.name,
            "unit": self.unit,
            "treatment": treatment,
            "outcomes": outs,
            "features": {"numeric": list(self.numeric), "categorical": list(self.categorical)},
            "propensity": self.propensity,
        }
        if self.cluster is not None:
            out["cluster"] = self.cluster
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExperimentSpec:
        """Build a spec from its YAML form (a mapping)."""
        if not isinstance(raw, Mapping):
            raise SpecError(
                f"a spec must be a mapping with treatment, outcomes and features; "
                f"got {type(raw).__name__}."
            )
        allowed = {"name", "unit", "treatment", "outcomes", "features", "propensity", "cluster"}
        unknown = set(raw) - allowed
        if unknown:
            raise SpecError(
                f"the spec has unknown keys {sorted(unknown)}; allowed keys are "
                f"{sorted(allowed)}."
            )
        for key in ("treatment", "outcomes"):
            if key not in raw:
                raise SpecError(
                    f"the spec has no {key!r}; see the spec's YAML form in the README."
                )
        return cls(
            name=str(raw.get("name", "experiment")),
            unit=raw.get("unit"),
            treatment=raw["treatment"],
            outcomes=raw["outcomes"],
            features=raw.get("features") or {},
            propensity=raw.get("propensity"),
            cluster=raw.get("cluster"),
        )

    @classmethod
    def from_yaml(cls, source: str | Path) -> ExperimentSpec:
        """Read a spec from a YAML file path (or a YAML string)."""
        return cls.from_dict(read_yaml(source))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Return the YAML form, and write it to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExperimentSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(yaml.safe_dump(self.to_dict()))

    def __repr__(self) -> str:
        return (
            f"ExperimentSpec(name={self.name!r}, treatment={self.treatment!r}, "
            f"arms={list(self.arms)}, outcomes={list(self.outcome_names)}, "
            f"numeric={list(self.numeric)}, categorical={list(self.categorical)})"
        )
