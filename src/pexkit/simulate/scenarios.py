"""Data-generating processes with known effects: the ground truth for tests and demos."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol, overload

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit.data import LoggedData
from pexkit.exceptions import InvalidParameterError
from pexkit.simulate.sequential import SequentialSimulation, simulate_notification_volume
from pexkit.spec import ExperimentSpec

__all__ = ["SCENARIOS", "Scenario", "Simulation", "simulate"]

FloatArray = NDArray[np.float64]


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


class Scenario(Protocol):
    """A data-generating process: features, true means per arm, and noise."""

    name: str
    arms: tuple[str, ...]
    outcomes: tuple[tuple[str, str], ...]  # (name, goal), long-term ones included
    short_term: tuple[str, ...]  # outcomes that go into the spec
    weights: dict[str, float]  # the scenario's utility over the short-term outcomes
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    def features(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Draw n units' features."""

    def means(self, features: pd.DataFrame) -> FloatArray:
        """True E[Y_m | T=k, x], shape (n, K, M_all)."""

    def draw(self, means: FloatArray, rng: np.random.Generator,
             features: pd.DataFrame) -> FloatArray:
        """Draw outcomes (n, M_all) given the logged arm's means (n, M_all) and the features."""


class NotificationsScenario:
    """Notification volume: control / light / heavy.

    Heavier notification schedules raise engagement (most for dormant users,
    barely for the very active), raise unsubscribes (most for new, young and
    web users), and move revenue both ways (up for mid-activity users, down
    for the very active who get annoyed). ``retention_90d`` is the long-term
    outcome: each unit's follows its realized engagement and unsubscribe. A
    visit more keeps a dormant user (``+0.5`` per engagement) but wears out a
    very active one (``-0.25``); an unsubscribe costs ``1.0``. A small
    tenure-driven effect of the arm (``+-0.02``) runs through no short-term
    outcome, so surrogacy holds only approximately, and the short-term outcomes
    explain about half of retention's variance. The hand-set weights value
    every visit alike; the long-term outcome does not.
    """

    name = "notifications"
    arms = ("control", "light", "heavy")
    outcomes = (
        ("engagement", "maximize"),
        ("unsubscribe", "minimize"),
        ("revenue", "maximize"),
        ("retention_90d", "maximize"),
    )
    short_term = ("engagement", "unsubscribe", "revenue")
    # an unsubscribe costs ten engagements (the weights `pexkit demo` analyses with)
    weights = {"engagement": 1.0, "unsubscribe": 10.0, "revenue": 1.0}
    categorical = ("platform", "region")

    def __init__(self, n_noise: int = 4) -> None:
        self.n_noise = n_noise
        self.numeric = ("age", "tenure_days", "activity", "prior_clicks") + tuple(
            f"x{j}" for j in range(n_noise)
        )

    def features(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        cols: dict[str, Any] = {
            "age": np.clip(rng.normal(38, 12, n), 16, 85).round(),
            "tenure_days": rng.exponential(400, n).round(),
            "activity": rng.lognormal(1.0, 0.8, n),
            "prior_clicks": rng.poisson(3, n).astype(np.float64),
        }
        for j in range(self.n_noise):
            cols[f"x{j}"] = rng.normal(size=n)
        cols["platform"] = rng.choice(["ios", "android", "web"], n, p=[0.4, 0.4, 0.2])
        cols["region"] = rng.choice(["na", "eu", "apac", "latam"], n, p=[0.35, 0.3, 0.25, 0.1])
        return pd.DataFrame(cols)

    def means(self, features: pd.DataFrame) -> FloatArray:
        age = features["age"].to_numpy(np.float64)
        tenure = features["tenure_days"].to_numpy(np.float64)
        act = features["activity"].to_numpy(np.float64)
        clicks = features["prior_clicks"].to_numpy(np.float64)
        web = (features["platform"].to_numpy() == "web").astype(np.float64)
        eu = (features["region"].to_numpy() == "eu").astype(np.float64)
        n = age.shape[0]
        la = np.log1p(act)
        new = np.exp(-tenure / 120.0)  # 1 for brand-new users, -> 0 with tenure
        young = _sigmoid((30.0 - age) / 5.0)

        base_eng = 1.0 + 1.5 * la + 0.1 * clicks
        dormant = _sigmoid(2.0 * (1.2 - la))  # low activity -> ~1
        eng_light = 0.25 + 0.6 * dormant
        eng_heavy = 0.35 + 1.3 * dormant - 0.3 * (1 - dormant)

        logit0 = -3.6 + 0.6 * new + 0.4 * web
        unsub_light = logit0 + 0.25 + 0.5 * young
        unsub_heavy = logit0 + 0.7 + 1.2 * young + 0.8 * new + 0.5 * eu
        p0, p1, p2 = _sigmoid(logit0), _sigmoid(unsub_light), _sigmoid(unsub_heavy)

        base_rev = 0.5 + 0.8 * la + 0.3 * (age > 40)
        bump = np.exp(-((la - 1.3) ** 2) / 0.3)  # mid-activity users buy more
        rev_light = 0.15 * bump + 0.05
        rev_heavy = 0.35 * bump - 0.3 * _sigmoid(3.0 * (la - 2.2))

        # long-term: through engagement (worth more for the dormant) and unsubscribes,
        # and a little through tenure (hidden from every short-term outcome)
        base_ret = 0.6 + 0.1 * la - 0.5 * p0
        visit = self.visit_value(features)
        hidden = 0.02 * np.tanh((tenure - 400.0) / 200.0)  # long-tenured like more mail
        ret_light = visit * eng_light - 1.0 * (p1 - p0) + 0.5 * hidden
        ret_heavy = visit * eng_heavy - 1.0 * (p2 - p0) + hidden

        mu = np.empty((n, 3, 4))
        mu[:, 0] = np.column_stack([base_eng, p0, base_rev, base_ret])
        mu[:, 1] = np.column_stack(
            [base_eng + eng_light, p1, base_rev + rev_light, base_ret + ret_light]
        )
        mu[:, 2] = np.column_stack(
            [base_eng + eng_heavy, p2, base_rev + rev_heavy, base_ret + ret_heavy]
        )
        return mu

    @staticmethod
    def visit_value(features: pd.DataFrame) -> FloatArray:
        """Retention per extra visit: +0.5 for a dormant user, -0.25 for a very active one."""
        la = np.log1p(features["activity"].to_numpy(np.float64))
        dormant = _sigmoid(2.0 * (1.2 - la))
        out: FloatArray = 0.5 * (dormant - 0.5 * (1.0 - dormant))
        return out

    def draw(self, means: FloatArray, rng: np.random.Generator,
             features: pd.DataFrame) -> FloatArray:
        n = means.shape[0]
        y = np.empty_like(means)
        y[:, 0] = means[:, 0] + rng.normal(0, 1.0, n)
        y[:, 1] = (rng.random(n) < means[:, 1]).astype(np.float64)
        y[:, 2] = means[:, 2] + rng.normal(0, 1.0, n)
        # retention follows the realized engagement and unsubscribe (a unit that
        # unsubscribed retains less), so the short-term outcomes predict it in part;
        # its mean (and so every true effect) is unchanged: the deviations have mean 0
        y[:, 3] = (means[:, 3] + self.visit_value(features) * (y[:, 0] - means[:, 0])
                   - 1.0 * (y[:, 1] - means[:, 1]) + rng.normal(0, 0.3, n))
        return y


class SyntheticScenario:
    """A generic benchmark process: d numeric features, K arms, M continuous outcomes.

    Effects are smooth nonlinear functions of the first few features (so
    boosting has structure to find); the other features are noise.
    """

    name = "synthetic"
    categorical: tuple[str, ...] = ()

    def __init__(self, n_features: int = 20, n_treatments: int = 3, n_outcomes: int = 3) -> None:
        if n_features < 4 or n_treatments < 2 or n_outcomes < 1:
            raise InvalidParameterError(
                "synthetic scenario needs n_features >= 4, n_treatments >= 2 and "
                f"n_outcomes >= 1; got {n_features}, {n_treatments}, {n_outcomes}."
            )
        self.numeric = tuple(f"x{j}" for j in range(n_features))
        self.arms = ("control", *(f"t{k}" for k in range(1, n_treatments)))
        self.outcomes = tuple(
            (f"y{m}", "maximize" if m % 2 == 0 else "minimize") for m in range(n_outcomes)
        )
        self.short_term = tuple(name for name, _ in self.outcomes)
        self.weights = dict.fromkeys(self.short_term, 1.0)

    def features(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        X = rng.uniform(-1, 1, size=(n, len(self.numeric)))
        return pd.DataFrame(X, columns=list(self.numeric))

    def means(self, features: pd.DataFrame) -> FloatArray:
        X = features[list(self.numeric)].to_numpy(np.float64)
        n = X.shape[0]
        K, M = len(self.arms), len(self.outcomes)
        mu = np.empty((n, K, M))
        for m in range(M):
            base = np.sin(np.pi * X[:, 0] * (m + 1) / 2) + X[:, 1] ** 2 + 0.5 * X[:, 2 + m % 2]
            mu[:, 0, m] = base
            for k in range(1, K):
                phase = 0.7 * k + 0.4 * m
                effect = 0.3 * np.sin(np.pi * X[:, 2] + phase) + 0.25 * (X[:, 3] > 0.1 * k) - 0.1
                mu[:, k, m] = base + effect * (1 + 0.5 * X[:, 1])
        return mu

    def draw(self, means: FloatArray, rng: np.random.Generator,
             features: pd.DataFrame) -> FloatArray:
        return means + rng.normal(0, 1.0, means.shape)


SCENARIOS: dict[str, type] = {
    "notifications": NotificationsScenario,
    "synthetic": SyntheticScenario,
}


@dataclass
class Simulation:
    """One simulated randomized experiment, with its ground truth.

    Attributes
    ----------
    frame : DataFrame
        The log: ``unit_id``, features, ``arm``, and every outcome (long-term
        ones included).
    spec : ExperimentSpec
        Spec over the short-term outcomes (what the effect models learn).
    true_means : ndarray of shape (n_units, n_treatments, n_outcomes_all)
        ``E[Y | T=k, x]`` for every outcome in ``all_outcomes``.
    all_outcomes : tuple of str
    scenario : Scenario
    """

    frame: pd.DataFrame
    spec: ExperimentSpec
    true_means: FloatArray
    all_outcomes: tuple[str, ...]
    scenario: Any

    @cached_property
    def data(self) -> LoggedData:
        """The log as validated LoggedData."""
        return LoggedData.from_frame(self.frame, self.spec)

    def analysis_spec(self) -> ExperimentSpec:
        """The spec ``pexkit simulate`` writes: the scenario's weights, its long-term outcomes.

        The short-term outcomes carry the scenario's utility weights (what
        ``pexkit demo`` analyses with); the long-term ones (``retention_90d``)
        follow with weight 0: estimated and reported, not part of the utility.
        """
        goals = dict(self.scenario.outcomes)
        weights = self.scenario.weights
        outcomes = [{"name": o, "goal": goals[o], "weight": float(weights.get(o, 0.0))}
                    for o in self.spec.outcome_names]
        outcomes += [{"name": o, "goal": goals[o], "weight": 0.0}
                     for o in self.all_outcomes if o not in self.spec.outcome_names]
        return ExperimentSpec.from_dict({**self.spec.to_dict(), "outcomes": outcomes})

    def draw_outcomes(self, features: Any, arms: Any, seed: int | None = None) -> pd.DataFrame:
        """Draw outcomes for units with these features under these arms.

        What the simulated world answers when a service (or any policy) chose
        the arm: e.g. the arms ``px.Client.decide_batch`` returned, to log back.

        Parameters
        ----------
        features : DataFrame or sequence of dict
            One row per unit with the scenario's feature columns (extra ones are
            ignored), e.g. the features sent to ``decide``.
        arms : sequence of str or int
            One arm per unit: a label (``"light"``) or an index in ``spec.arms``.
        seed : int, optional
            Seed of the outcome noise.

        Returns
        -------
        DataFrame with one column per outcome in ``all_outcomes`` (long-term ones
        included), one row per unit, in the order given.

        Examples
        --------
        >>> sim = simulate("notifications", n_units=100, seed=0)
        >>> users = sim.frame.head(3)
        >>> sim.draw_outcomes(users, ["control", "heavy", 1], seed=1).shape
        (3, 4)
        """
        frame = features if isinstance(features, pd.DataFrame) else pd.DataFrame(list(features))
        cols = [*self.scenario.numeric, *self.scenario.categorical]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InvalidParameterError(
                f"'features': missing columns {missing}; the scenario needs {cols}."
            )
        labels = list(self.scenario.arms)
        idx = []
        for a in list(arms):
            if isinstance(a, str):
                if a not in labels:
                    raise InvalidParameterError(f"'arms': unknown arm {a!r}; expected one of {labels}.")
                idx.append(labels.index(a))
            elif isinstance(a, int | np.integer) and not isinstance(a, bool) and 0 <= a < len(labels):
                idx.append(int(a))
            else:
                raise InvalidParameterError(
                    f"'arms': expected an arm label from {labels} or an index 0-{len(labels) - 1}; "
                    f"got {a!r}."
                )
        n = len(frame)
        if len(idx) != n:
            raise InvalidParameterError(
                f"'arms' must hold one arm per unit ({n}); got {len(idx)}."
            )
        frame = frame[cols].reset_index(drop=True)
        mu = self.scenario.means(frame)
        y = self.scenario.draw(mu[np.arange(n), np.asarray(idx, dtype=np.int64), :],
                               np.random.default_rng(seed), frame)
        return pd.DataFrame(y, columns=list(self.all_outcomes))

    def _indices(self, outcomes: Any) -> list[int]:
        names = self.spec.outcome_names if outcomes is None else tuple(outcomes)
        unknown = [o for o in names if o not in self.all_outcomes]
        if unknown:
            raise InvalidParameterError(
                f"unknown outcomes {unknown}; the simulation has {list(self.all_outcomes)}."
            )
        return [self.all_outcomes.index(o) for o in names]

    def true_cate(self, outcomes: Any = None) -> FloatArray:
        """True effects vs control, shape (n_units, n_treatments, n_outcomes)."""
        idx = self._indices(outcomes)
        mu = self.true_means[:, :, idx]
        return np.asarray(mu - mu[:, :1, :])

    def oracle_value(self, policy: Any, outcomes: Any = None) -> pd.DataFrame:
        """The true value and lift vs all-control of a policy on these units.

        Parameters
        ----------
        policy : ndarray of shape (n_units,) or (n_units, n_treatments)
            Treatment indices or action probabilities.
        outcomes : sequence of str, optional
            Default: every outcome, long-term ones included.

        Returns
        -------
        DataFrame indexed by outcome with columns value and lift.
        """
        names = self.all_outcomes if outcomes is None else tuple(outcomes)
        idx = self._indices(names)
        mu = self.true_means[:, :, idx]
        arr = np.asarray(policy)
        n = mu.shape[0]
        if arr.ndim == 1:
            if arr.shape[0] != n:
                raise InvalidParameterError(
                    f"'policy' must have one action per unit ({n}); got {arr.shape[0]}."
                )
            value_rows = mu[np.arange(n), arr.astype(np.int64), :]
        elif arr.ndim == 2 and arr.shape == mu.shape[:2]:
            value_rows = np.einsum("nk,nkm->nm", arr, mu)
        else:
            raise InvalidParameterError(
                f"'policy' must have shape ({n},) or {mu.shape[:2]}; got {arr.shape}."
            )
        value = value_rows.mean(axis=0)
        lift = (value_rows - mu[:, 0, :]).mean(axis=0)
        return pd.DataFrame(
            {"value": value, "lift": lift},
            index=pd.Index(list(names), name="outcome"),
        )


@overload
def simulate(
    scenario: Literal["notification-volume"],
    n_units: int = ...,
    seed: int = ...,
    *,
    shares: Any = ...,
    **scenario_options: Any,
) -> SequentialSimulation: ...


@overload
def simulate(
    scenario: str = ...,
    n_units: int = ...,
    seed: int = ...,
    *,
    shares: Any = ...,
    **scenario_options: Any,
) -> Simulation: ...


def simulate(
    scenario: str = "notifications",
    n_units: int = 10_000,
    seed: int = 0,
    *,
    shares: Any = None,
    **scenario_options: Any,
) -> Simulation | SequentialSimulation:
    """Simulate a randomized experiment with known effects.

    Parameters
    ----------
    scenario : {"notifications", "synthetic", "notification-volume"}
        "notification-volume" is a sequential process (one push decision per
        user per day, see
        :func:`~pexkit.simulate.sequential.simulate_notification_volume`).
    n_units : int
    seed : int
    shares : sequence of float, optional
        Assignment shares per arm (default uniform); not for "notification-volume".
    **scenario_options
        Passed to the scenario (e.g. ``n_features`` for "synthetic"; ``horizon``,
        ``push_cost``, ``exploration``, ``priority`` ... for "notification-volume").

    Returns
    -------
    Simulation
        A :class:`SequentialSimulation` for "notification-volume".

    Examples
    --------
    >>> sim = simulate("notifications", n_units=1000, seed=1)
    >>> sim.true_cate().shape
    (1000, 3, 3)
    """
    if scenario == "notification-volume":
        if shares is not None:
            raise InvalidParameterError(
                "'shares' is for randomized experiments; the 'notification-volume' log "
                "follows its logging policy (see 'exploration' and 'logging_policy')."
            )
        return simulate_notification_volume(n_units=n_units, seed=seed, **scenario_options)
    if scenario not in SCENARIOS:
        raise InvalidParameterError(
            f"'scenario' must be one of {sorted([*SCENARIOS, 'notification-volume'])}; "
            f"got {scenario!r}."
        )
    if not isinstance(n_units, int | np.integer) or n_units < 1:
        raise InvalidParameterError(f"'n_units' must be a positive integer; got {n_units!r}.")
    proc = SCENARIOS[scenario](**scenario_options)
    rng = np.random.default_rng(seed)
    features = proc.features(int(n_units), rng)
    K = len(proc.arms)
    p = np.full(K, 1.0 / K) if shares is None else np.asarray(shares, dtype=np.float64)
    if p.shape != (K,) or (p <= 0).any():
        raise InvalidParameterError(f"'shares' must hold {K} positive numbers; got {shares!r}.")
    p = p / p.sum()
    arm = rng.choice(K, size=int(n_units), p=p)
    mu = proc.means(features)
    y = proc.draw(mu[np.arange(int(n_units)), arm, :], rng, features)
    frame = features.copy()
    frame.insert(0, "unit_id", np.arange(int(n_units)))
    frame["arm"] = np.asarray(proc.arms)[arm]
    all_names = tuple(name for name, _ in proc.outcomes)
    for m, name in enumerate(all_names):
        frame[name] = y[:, m]
    goals = dict(proc.outcomes)
    spec = ExperimentSpec(
        name=f"simulated-{proc.name}",
        unit="unit_id",
        treatment={"column": "arm", "arms": list(proc.arms)},
        outcomes=[{"name": o, "goal": goals[o]} for o in proc.short_term],
        numeric=list(proc.numeric),
        categorical=list(proc.categorical),
        shares=list(p) if shares is not None else None,
    )
    return Simulation(frame, spec, mu, all_names, proc)
