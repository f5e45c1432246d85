"""Offline reinforcement learning: a Q-function learned from a decision log.

:class:`OfflineAgent` learns ``Q(s, a)``, the expected discounted utility of
taking action ``a`` in state ``s`` and acting greedily afterwards, from a
:class:`~pexkit.sequential.log.TransitionLog` alone (no interaction), and acts
greedily on it.

- ``"cql"``: Double DQN with the conservative penalty of CQL(H) for discrete
  actions (Kumar et al. 2020; d3rlpy's ``DiscreteCQL``):
  ``alpha * (logsumexp_a Q(s, a) - Q(s, a_logged))`` added to the TD loss. It
  pushes down the Q of actions the log rarely took in a state, so the policy
  stays where the log has support.
- ``"ddqn"``: Double DQN (van Hasselt et al. 2016): the target is
  ``r + gamma * (1 - done) * Q_target(s', argmax_a Q(s', a))``.
- ``"fqi"``: fitted Q iteration with LightGBM on ``[encoded state, one-hot
  action]``: ``Q_{k+1} = regress(r + gamma * (1 - done) * max_a Q_k(s', a))``
  for a fixed number of iterations.

Rows are transitions: a decision, its utility, and the unit's next decision in
the episode. A terminal decision (``done``) has no future; an episode's last
decision that is not terminal is censored (the log ends before its next state)
and is left out of training.

The networks train with torch, but a fitted agent predicts with numpy (its
weights exported after training) or with LightGBM boosters: serving a decision
needs neither torch nor a pickle, and :meth:`OfflineAgent.to_dict` is plain JSON.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit._progress import progress_bar
from pexkit.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    ModelFormatError,
    NotFittedError,
    SpecError,
)
from pexkit.sequential.log import StateEncoder, TransitionLog
from pexkit.sequential.spec import SequentialSpec

__all__ = ["ALGORITHMS", "FQI_DEFAULTS", "NEURAL_DEFAULTS", "OfflineAgent"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

FORMAT = "pexkit-offline-agent"
VERSION = 1
#: the most Bellman iterations ``iterations=None`` chooses (gamma near 1)
FQI_MAX_ITERATIONS = 300
#: ``steps=None``: one gradient step per this many transitions, within the bounds below
STEPS_PER_TRANSITIONS = 16
MIN_STEPS, MAX_STEPS = 2_000, 15_000
#: ``target_update=None``: about this many target-network copies over the training
TARGET_COPIES = 100

ALGORITHMS = ("cql", "ddqn", "fqi")
SCHEDULES = ("cosine", "constant")

#: options of the neural algorithms (``alpha`` is CQL's only)
NEURAL_DEFAULTS: dict[str, Any] = {
    "hidden": (64, 64),
    "steps": None,
    "batch_size": 256,
    "learning_rate": 1e-3,
    "target_update": None,
    "schedule": "cosine",
    "alpha": 1.0,
}
#: options of fitted Q iteration
FQI_DEFAULTS: dict[str, Any] = {
    "iterations": None,
    "first_rounds": 50,
    "rounds": 10,
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_data_in_leaf": 100,
    "n_jobs": 1,
}


def _valid_options(algorithm: str) -> dict[str, Any]:
    if algorithm == "fqi":
        return dict(FQI_DEFAULTS)
    out = dict(NEURAL_DEFAULTS)
    if algorithm != "cql":
        out.pop("alpha")
    return out


def _int_option(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise InvalidParameterError(f"option {name!r} must be an integer >= {lo}; got {value!r}.")
    return int(value)


def _float_option(name: str, value: Any, *, positive: bool) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    ok = math.isfinite(x) and (x > 0 if positive else x >= 0)
    if isinstance(value, bool) or not ok:
        raise InvalidParameterError(
            f"option {name!r} must be a finite number {'> 0' if positive else '>= 0'}; "
            f"got {value!r}."
        )
    return x


def _check_options(algorithm: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The algorithm's full option set: defaults overridden by ``options``, validated."""
    valid = _valid_options(algorithm)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InvalidParameterError(
            f"unknown option(s) {unknown} for algorithm {algorithm!r}; its options are "
            f"{sorted(valid)}."
        )
    opts = {**valid, **options}
    if algorithm == "fqi":
        if opts["iterations"] is not None:
            opts["iterations"] = _int_option("iterations", opts["iterations"], 1)
        opts["first_rounds"] = _int_option("first_rounds", opts["first_rounds"], 1)
        opts["rounds"] = _int_option("rounds", opts["rounds"], 1)
        opts["num_leaves"] = _int_option("num_leaves", opts["num_leaves"], 2)
        opts["min_data_in_leaf"] = _int_option("min_data_in_leaf", opts["min_data_in_leaf"], 1)
        opts["n_jobs"] = _int_option("n_jobs", opts["n_jobs"], 0)
        opts["learning_rate"] = _float_option("learning_rate", opts["learning_rate"], positive=True)
        return opts
    hidden = opts["hidden"]
    if isinstance(hidden, int | np.integer) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, list | tuple) or not all(
        isinstance(h, int | np.integer) and not isinstance(h, bool) and h >= 1 for h in hidden
    ):
        raise InvalidParameterError(
            "option 'hidden' must be a tuple of layer widths (integers >= 1, e.g. (64, 64); () "
            f"for a linear Q); got {hidden!r}."
        )
    opts["hidden"] = tuple(int(h) for h in hidden)
    if opts["steps"] is not None:
        opts["steps"] = _int_option("steps", opts["steps"], 1)
    opts["batch_size"] = _int_option("batch_size", opts["batch_size"], 1)
    opts["learning_rate"] = _float_option("learning_rate", opts["learning_rate"], positive=True)
    target = opts["target_update"]
    if target is None:
        pass
    elif isinstance(target, int | np.integer) and not isinstance(target, bool) and target >= 1:
        opts["target_update"] = int(target)
    elif isinstance(target, float) and 0.0 < target <= 1.0:
        opts["target_update"] = float(target)
    else:
        raise InvalidParameterError(
            "option 'target_update' must be an integer >= 1 (copy the network to the target "
            "network every that many steps) or a float in (0, 1] (Polyak averaging: the target "
            f"moves that share of the way each step); got {target!r}."
        )
    if opts["schedule"] not in SCHEDULES:
        raise InvalidParameterError(
            f"option 'schedule' must be one of {list(SCHEDULES)}; got {opts['schedule']!r}."
        )
    if algorithm == "cql":
        opts["alpha"] = _float_option("alpha", opts["alpha"], positive=False)
    return opts


# ------------------------------------------------------------------ helpers
def _design(X: FloatArray, action: int | IntArray, n_actions: int) -> FloatArray:
    """[X, one-hot action]: the rows FQI's boosters see."""
    onehot = np.zeros((X.shape[0], n_actions))
    onehot[np.arange(X.shape[0]), action] = 1.0
    return np.column_stack([X, onehot])


def _mlp_forward(layers: list[tuple[FloatArray, FloatArray]], X: FloatArray) -> FloatArray:
    """The Q-network in numpy: ReLU between layers, none after the last."""
    h = X
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            np.maximum(h, 0.0, out=h)
    return h


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


class OfflineAgent:
    """A policy learned offline from a decision log: Q-values, greedy actions.

    Parameters
    ----------
    algorithm : {"cql", "ddqn", "fqi"}
        ``"cql"``: Double DQN + the CQL(H) penalty ``alpha * (logsumexp_a
        Q(s, a) - Q(s, a_logged))`` (Kumar et al. 2020); the safe choice when
        the logging policy rarely takes some actions in some states.
        ``"ddqn"``: Double DQN (van Hasselt et al. 2016). ``"fqi"``: fitted Q
        iteration with LightGBM boosters on ``[encoded state, one-hot action]``.
        Neither of the last two guards against actions the log rarely took:
        they bootstrap from their own guesses of those actions' values. On a
        log that sent to tired users 1% of the time (a few dozen sends), both
        overestimated sending when tired and did it, losing 2.99 of a best
        value of 5.68, where CQL found the best policy (see the tests).
    gamma : float or None
        Discount per decision in [0, 1]; None takes the spec's. ``gamma=0``
        gives the myopic policy (Q = expected immediate utility):
        ``OfflineAgent(algorithm="fqi", gamma=0)`` is the one-step baseline to
        compare sequential policies with.
    random_state : int
        Seed of the network initialisation, the minibatches and LightGBM.
    weights : mapping, optional
        ``{reward_name: weight}`` replacing the spec's reward weights (others
        keep theirs); the utility is ``rewards @ signed weights``. Fitting over
        a grid of weights traces a Pareto front between the rewards.
    **options
        For ``"cql"`` and ``"ddqn"`` (a ReLU MLP on the standardized encoded
        state, one output per action, Adam, Huber loss on the TD error):

        - ``hidden`` (``(64, 64)``): hidden layer widths; ``()`` is a linear Q.
        - ``steps`` (None): gradient steps; None takes one per 16 transitions,
          at least 2,000 and at most 15,000 (about 1 ms each on one core: 2 s
          for a log of 30,000 decisions, 15 s from 240,000 on).
        - ``batch_size`` (256): transitions per step, drawn with replacement.
        - ``learning_rate`` (0.001): Adam's step size.
        - ``schedule`` (``"cosine"``): the step size anneals to 0 over the steps
          (cosine; torch's ``CosineAnnealingLR``), or stays ``"constant"``.
          With a constant rate the last network carries the noise of its last
          minibatches, and the gap between two actions' Q is often of that
          size: on the simulator (84,000 transitions, 4 seeds) Double DQN's
          policy was worth 2.34 annealed and 2.27 at a constant rate, and at
          555,000 transitions one seed in three lost 0.43 at a constant rate.
        - ``target_update`` (None): an integer copies the network into the
          target network every that many steps; a float in (0, 1] is a Polyak
          rate (the target moves that share of the way every step). None
          copies every ``steps // 100`` steps: 100 copies carry values about
          100 decisions ahead, enough for any gamma up to 0.95.
        - ``alpha`` (1.0, ``"cql"`` only): weight of the conservative penalty.

        For ``"fqi"``:

        - ``iterations`` (None): Bellman iterations; each looks one decision
          further ahead. None runs until the initial error has shrunk 100-fold:
          the smallest k with ``c ** k <= 0.01``, where ``c = s + (1 - s) *
          gamma`` and ``s = (1 - learning_rate) ** rounds`` is the share of its
          targets' residual a warm-started iteration leaves (69 at the defaults
          and gamma 0.9; 5 at gamma 0; at most 300).
        - ``first_rounds`` (50), ``rounds`` (10): boosting rounds of the first
          iteration and of each later one. One booster is warm-started through
          the iterations: iteration k adds ``rounds`` trees fitted to the new
          targets from where Q_{k-1} stands. On the simulator's 538,000
          transitions that took 33 s (69 iterations, 730 trees) for a policy
          worth 2.399, and a fresh 100-tree booster per iteration (30 of them)
          157 s for 2.408 (SE of a value 0.012).
        - ``num_leaves`` (31), ``learning_rate`` (0.1), ``min_data_in_leaf``
          (100): LightGBM's.
        - ``n_jobs`` (1): LightGBM threads (0: every core). FQI grows one
          booster a few trees at a time, so more threads pay only on large logs
          and an idle machine: on a busy 2-core machine 2 threads took twice as
          long on 555,000 transitions, and 700 times as long on 3,000.

    Attributes
    ----------
    spec_ : SequentialSpec
        The training log's spec (its reward weights as logged).
    weights_ : dict
        The reward weights the agent optimized (the spec's, overridden by ``weights``).
    utility_weights_ : tuple of float
        Signed weights: utility = rewards @ utility_weights_.
    gamma_ : float
    encoder_ : StateEncoder
    summary_ : dict
        Training record: transitions used, losses every few steps (or per
        iteration), the final loss and the fit time in seconds.

    Examples
    --------
    A push brings a visit now but tires the user, and a tired user visits less:

    >>> import numpy as np, pandas as pd
    >>> from pexkit.sequential.log import TransitionLog
    >>> from pexkit.sequential.spec import SequentialSpec
    >>> spec = SequentialSpec.from_dict({
    ...     "unit": "user", "time": "t", "action": {"column": "a", "actions": ["none", "send"]},
    ...     "rewards": ["visits"], "state": {"numeric": ["tired"]}, "propensity": "p",
    ...     "gamma": 0.9})
    >>> visits = [[0.5, 1.0], [0.1, 0.3]]  # [tired][action]
    >>> rng, rows, tired = np.random.default_rng(0), [], 0
    >>> for i in range(3000):  # a uniformly random logging policy
    ...     a = int(rng.integers(2))
    ...     rows.append((i // 20, i % 20, ["none", "send"][a], 0.5, visits[tired][a], tired))
    ...     tired = a
    >>> log = TransitionLog.from_frame(
    ...     pd.DataFrame(rows, columns=["user", "t", "a", "p", "visits", "tired"]), spec)
    >>> states = pd.DataFrame({"tired": [0, 1]})
    >>> OfflineAgent("fqi").fit(log).choose(states)  # rest when tired
    array([1, 0])
    >>> OfflineAgent("fqi", gamma=0).fit(log).choose(states)  # myopic: always send
    array([1, 1])
    """

    def __init__(
        self,
        algorithm: str = "cql",
        gamma: float | None = None,
        random_state: int = 0,
        weights: Mapping[str, float] | None = None,
        **options: Any,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidParameterError(
                f"'algorithm' must be one of {list(ALGORITHMS)}; got {algorithm!r}."
            )
        if gamma is not None:
            g = float(gamma) if _is_number(gamma) else float("nan")
            if not 0.0 <= g <= 1.0:
                raise InvalidParameterError(
                    f"'gamma' must be a number in [0, 1] or None (the spec's gamma); got {gamma!r}."
                )
        if (
            isinstance(random_state, bool)
            or not isinstance(random_state, int | np.integer)
            or not 0 <= random_state < 2**32
        ):
            raise InvalidParameterError(
                f"'random_state' must be an integer in [0, 2**32); got {random_state!r}."
            )
        if weights is not None and not isinstance(weights, Mapping):
            raise InvalidParameterError(
                f"'weights' must be a mapping {{reward_name: weight}} or None; got {weights!r}."
            )
        self.algorithm = algorithm
        self.gamma = None if gamma is None else float(gamma)
        self.random_state = int(random_state)
        self.weights = None if weights is None else dict(weights)
        self.options = _check_options(algorithm, options)
        self._layers: list[tuple[FloatArray, FloatArray]] | None = None
        self._booster: Any = None
        self._offset = 0.0  # fqi: Q = offset + the booster's raw score
        self._net: Any = None  # the trained torch module (not stored), for checks
        self._levels: dict[str, dict[str, int]] | None = None  # category -> index, per column
        self.summary_: dict[str, Any] = {}

    # ------------------------------------------------------------ state
    @property
    def is_fitted(self) -> bool:
        return self._layers is not None or self._booster is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this OfflineAgent ({self.algorithm}) is not fitted yet; call .fit(log) with a "
                "TransitionLog (or load a fitted one with OfflineAgent.load(path))."
            )

    @property
    def n_actions(self) -> int:
        self._check_fitted()
        return self.spec_.n_actions

    # ------------------------------------------------------------ fit
    def fit(self, log: TransitionLog, *, progress: bool | None = None) -> OfflineAgent:
        """Learn Q from ``log`` (a :class:`~pexkit.sequential.log.TransitionLog`).

        ``progress`` shows a progress bar (None: only on a terminal).
        """
        if not isinstance(log, TransitionLog):
            raise InvalidParameterError(
                f"'log' must be a TransitionLog; got {type(log).__name__}. Build one with "
                "px.TransitionLog.from_frame(frame, spec)."
            )
        spec = log.spec
        if self.weights is not None:
            try:
                weighted = spec.with_weights(self.weights)
            except (SpecError, TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    f"'weights' must map reward names to numbers >= 0: {exc}"
                ) from None
        else:
            weighted = spec
        gamma = spec.gamma if self.gamma is None else self.gamma
        done = np.asarray(log.done, dtype=bool)
        usable = done | (log.next_index >= 0)
        rows = np.flatnonzero(usable).astype(np.int64)
        if rows.size == 0:
            raise InvalidDataError(
                f"the log has no usable transitions: expected decisions with a next decision or a "
                f"terminal flag; found {log.n_decisions} decisions, each the censored end of its "
                "episode. Give each episode at least two decisions, or mark terminal ones in the "
                "spec's 'done' column."
            )
        utility = np.asarray(log.rewards @ np.asarray(weighted.utility_weights), dtype=np.float64)
        self.spec_ = spec
        self.weights_ = {r.name: float(r.weight) for r in weighted.rewards}
        self.utility_weights_ = tuple(weighted.utility_weights)
        self.gamma_ = float(gamma)
        self.encoder_ = log.encoder
        self._levels = None
        self._layers = None
        self._booster = None
        self._net = None
        start = time.perf_counter()
        summary: dict[str, Any] = {
            "transitions": int(rows.size),
            "terminal": int(done[rows].sum()),
            "censored": int(log.n_decisions - rows.size),
        }
        if self.algorithm == "fqi":
            summary.update(self._fit_fqi(log, rows, utility, progress))
        else:
            summary.update(self._fit_neural(log, rows, utility, progress))
        summary["seconds"] = round(time.perf_counter() - start, 3)
        self.summary_ = summary
        return self

    def _fit_neural(
        self, log: TransitionLog, rows: IntArray, utility: FloatArray, progress: bool | None
    ) -> dict[str, Any]:
        import torch

        # a 64x64 network on minibatches of 256 gains nothing from intra-op threads, and
        # they spin against any other work on the cores (a ddqn fit took 197 s instead of
        # 20 s beside another job on 2 cores): train on one thread, then restore
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._train_network(log, rows, utility, progress)
        finally:
            torch.set_num_threads(previous)

    def _train_network(
        self, log: TransitionLog, rows: IntArray, utility: FloatArray, progress: bool | None
    ) -> dict[str, Any]:
        import torch

        opts = self.options
        gamma = self.gamma_
        alpha = float(opts.get("alpha", 0.0)) if self.algorithm == "cql" else 0.0
        Xs = self.encoder_.transform(log.frame, scaled=True)
        nxt = log.next_index[rows]
        terminal = np.asarray(log.done[rows], dtype=bool) | (nxt < 0)
        S = torch.as_tensor(Xs[rows], dtype=torch.float32)
        S2 = torch.as_tensor(Xs[np.where(terminal, rows, nxt)], dtype=torch.float32)
        A = torch.as_tensor(log.actions[rows], dtype=torch.int64)
        R = torch.as_tensor(utility[rows], dtype=torch.float32)
        cont = torch.as_tensor(gamma * (~terminal), dtype=torch.float32)
        n, d = S.shape
        sizes = [d, *opts["hidden"], log.n_actions]

        def mlp() -> Any:
            parts: list[Any] = []
            for i in range(len(sizes) - 1):
                parts.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
                if i < len(sizes) - 2:
                    parts.append(torch.nn.ReLU())
            return torch.nn.Sequential(*parts)

        with torch.random.fork_rng(devices=[]):  # torch's global generator is left as it was
            torch.manual_seed(self.random_state)
            net = mlp()
        target = copy.deepcopy(net)
        for p in target.parameters():
            p.requires_grad_(False)
        optimizer = torch.optim.Adam(net.parameters(), lr=float(opts["learning_rate"]))
        gen = torch.Generator().manual_seed(self.random_state)
        steps = opts["steps"] or min(MAX_STEPS, max(MIN_STEPS, n // STEPS_PER_TRANSITIONS))
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
            if opts["schedule"] == "cosine"
            else None
        )
        batch = int(opts["batch_size"])
        update = opts["target_update"] or max(1, steps // TARGET_COPIES)
        polyak = isinstance(update, float)
        every = max(1, steps // 100)
        history: list[list[float]] = []
        td_sum = torch.zeros(())
        cql_sum = torch.zeros(())
        net_params = list(net.parameters())
        target_params = list(target.parameters())
        chunk = 1000
        with progress_bar(steps, f"offline RL ({self.algorithm})", progress) as bar:
            for first in range(0, steps, chunk):
                count = min(chunk, steps - first)
                batches = torch.randint(n, (count, batch), generator=gen)
                for j in range(count):
                    idx = batches[j]
                    s, a = S[idx], A[idx]
                    q = net(s)
                    q_logged = q.gather(1, a[:, None]).squeeze(1)
                    with torch.no_grad():
                        y = R[idx]
                        if gamma > 0:
                            s2 = S2[idx]
                            best = net(s2).argmax(dim=1, keepdim=True)
                            y = y + cont[idx] * target(s2).gather(1, best).squeeze(1)
                    td = torch.nn.functional.smooth_l1_loss(q_logged, y)
                    loss = td
                    if alpha > 0:
                        penalty = (torch.logsumexp(q, dim=1) - q_logged).mean()
                        loss = td + alpha * penalty
                        cql_sum += penalty.detach()
                    td_sum += td.detach()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    step = first + j + 1
                    if polyak:
                        with torch.no_grad():
                            torch._foreach_lerp_(target_params, net_params, float(update))
                    elif step % int(update) == 0:
                        target.load_state_dict(net.state_dict())
                    if step % every == 0 or step == steps:
                        k = every if step % every == 0 else step % every
                        history.append(
                            [step, float(td_sum) / k, float(cql_sum) / k if alpha > 0 else 0.0]
                        )
                        td_sum.zero_()
                        cql_sum.zero_()
                bar.advance(count)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        self._layers = [
            (
                m.weight.detach().to(torch.float64).numpy().T.copy(),
                m.bias.detach().to(torch.float64).numpy().copy(),
            )
            for m in linears
        ]
        self._net = net
        return {
            "steps": steps,
            "target_update": update,
            "every": every,
            "losses": [[int(h[0]), round(h[1], 6), round(h[2], 6)] for h in history],
            "loss_columns": ["step", "td", "cql"],
            "final_loss": history[-1][1] + alpha * history[-1][2],
        }

    def _fit_fqi(
        self, log: TransitionLog, rows: IntArray, utility: FloatArray, progress: bool | None
    ) -> dict[str, Any]:
        import lightgbm as lgb

        opts = self.options
        gamma = self.gamma_
        A = log.n_actions
        X = log.X
        nxt = log.next_index[rows]
        live = ~np.asarray(log.done[rows], dtype=bool) & (nxt >= 0)
        m = int(live.sum())
        u = utility[rows]
        offset = float(u.mean())
        Z = _design(X[rows], log.actions[rows], A)
        params = {
            "objective": "none",  # squared error, given as gradients below
            "metric": "None",
            "num_leaves": int(opts["num_leaves"]),
            "learning_rate": float(opts["learning_rate"]),
            "min_data_in_leaf": int(opts["min_data_in_leaf"]),
            "num_threads": int(opts["n_jobs"]),
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "feature_pre_filter": False,
            "verbose": -1,
        }
        data = lgb.Dataset(Z, label=u, init_score=np.full(u.size, offset), params=params)
        booster = lgb.Booster(params, data)
        if m:
            # the next states, once per action (action-major), binned like the training rows:
            # LightGBM keeps a validation set's scores up to date tree by tree, so Q_k at the
            # next states costs nothing like a predict() over them each iteration
            Z_next = np.vstack([_design(X[nxt[live]], a, A) for a in range(A)])
            booster.add_valid(
                lgb.Dataset(
                    Z_next,
                    label=np.zeros(A * m),
                    init_score=np.full(A * m, offset),
                    reference=data,
                    params=params,
                ),
                "next",
            )
            del Z_next
        target = u.copy()
        scores: list[FloatArray] = []

        def squared_error(preds: FloatArray, _: Any) -> tuple[FloatArray, FloatArray]:
            return preds - target, np.ones_like(preds)

        def grab(preds: FloatArray, _: Any) -> tuple[str, float, bool]:
            scores.append(np.asarray(preds, dtype=np.float64))
            return "scores", 0.0, False

        iterations = int(opts["iterations"] or self._auto_iterations())
        v_next = np.zeros(m)
        history: list[list[float]] = []
        with progress_bar(iterations, "offline RL (fqi)", progress) as bar:
            for k in range(iterations):
                target[:] = u
                if k > 0:
                    target[live] += gamma * v_next
                rounds = int(opts["first_rounds"] if k == 0 else opts["rounds"])
                for _ in range(rounds):
                    if booster.update(fobj=squared_error):
                        break  # no split improves the fit
                change = 0.0
                if gamma > 0 and m and k < iterations - 1:
                    scores.clear()
                    booster.eval_valid(feval=grab)
                    new = scores[0].reshape(A, m).max(axis=0)
                    change = float(np.abs(new - v_next).mean())
                    v_next = new
                history.append([k + 1, round(float(target.mean()), 6), round(change, 6)])
                bar.advance()
        scores.clear()
        booster.eval_train(feval=grab)
        booster.free_dataset()
        self._booster = booster
        self._offset = offset
        return {
            "iterations": iterations,
            "trees": int(booster.current_iteration()),
            "losses": history,
            "loss_columns": ["iteration", "target_mean", "value_change"],
            "final_loss": float(np.sqrt(np.mean((scores[0] - target) ** 2))),
        }

    def _auto_iterations(self) -> int:
        """FQI iterations that shrink the initial error 100-fold (see the class docstring)."""
        lr, rounds = float(self.options["learning_rate"]), int(self.options["rounds"])
        left = (1.0 - lr) ** rounds  # share of a residual one warm-started iteration leaves
        rate = left + (1.0 - left) * self.gamma_
        if rate <= 0.0:
            return 1
        return int(min(FQI_MAX_ITERATIONS, max(1, math.ceil(math.log(0.01) / math.log(rate)))))

    # ------------------------------------------------------------ predict
    def _encode(self, states: Any, *, scaled: bool) -> FloatArray:
        if isinstance(states, Mapping):
            return self._encode_one(states, scaled=scaled)
        if isinstance(states, TransitionLog):
            states = states.frame
        elif not isinstance(states, pd.DataFrame):
            to_pandas = getattr(states, "to_pandas", None)
            if to_pandas is None:
                raise InvalidParameterError(
                    "'states' must be a DataFrame with the spec's state columns "
                    f"{list(self.spec_.state_columns)}, a TransitionLog, or one state as a "
                    f"mapping {{column: value}}; got {type(states).__name__}."
                )
            states = to_pandas()
        missing = [c for c in self.spec_.state_columns if c not in states.columns]
        if missing:
            raise InvalidDataError(
                f"'states' lacks the state column(s) {missing}; expected every state column "
                f"{list(self.spec_.state_columns)}; found {list(states.columns)[:20]}. Pass the "
                "states with the columns the agent was trained on."
            )
        return self.encoder_.transform(states, scaled=scaled)

    def _encode_one(self, state: Mapping[str, Any], *, scaled: bool) -> FloatArray:
        """One state without pandas, exactly as :meth:`StateEncoder.transform` encodes it."""
        enc = self.encoder_
        if self._levels is None:
            self._levels = {
                c: {v: i for i, v in enumerate(enc.categories[c])} for c in enc.categorical
            }
        missing = [c for c in self.spec_.state_columns if c not in state]
        if missing:
            raise InvalidDataError(
                f"'states' lacks the state column(s) {missing}; expected every state column "
                f"{list(self.spec_.state_columns)}; found {list(state)[:20]}. Pass the "
                "states with the columns the agent was trained on."
            )
        row = np.zeros((1, enc.width))
        try:
            num = np.array([np.nan if state[c] is None else state[c] for c in enc.numeric], float)
        except (TypeError, ValueError):
            bad = [c for c in enc.numeric if not _is_number(state[c]) and state[c] is not None]
            raise InvalidDataError(
                f"state columns {bad}: expected numbers; found {[state[c] for c in bad]}. Pass "
                "numbers for the numeric state columns."
            ) from None
        if scaled:
            num = np.nan_to_num((num - enc.mean) / enc.scale, nan=0.0)
        row[0, : num.size] = num
        at = num.size
        for col in enc.categorical:
            i = self._levels[col].get(str(state[col]))
            if i is not None:
                row[0, at + i] = 1.0
            at += len(enc.categories[col])
        return row

    def q_values(self, states: Any) -> FloatArray:
        """(n, A) Q-values at ``states``.

        ``states``: a DataFrame with the spec's state columns, a TransitionLog, or
        one state as a mapping ``{column: value}`` (then n = 1; it skips pandas,
        for serving one decision in microseconds).
        """
        self._check_fitted()
        if self._layers is not None:
            return _mlp_forward(self._layers, self._encode(states, scaled=True))
        X = self._encode(states, scaled=False)
        n, A = X.shape[0], self.n_actions
        if n == 0:
            return np.zeros((0, A))
        Z = _design(np.repeat(X, A, axis=0), np.tile(np.arange(A), n), A)
        threads = int(self.options["n_jobs"]) if n * A >= 2_000 else 1
        raw = np.asarray(self._booster.predict(Z, num_threads=threads), dtype=np.float64)
        return (self._offset + raw).reshape(n, A)

    def choose(self, states: Any) -> IntArray:
        """(n,) greedy action indices at ``states`` (see :meth:`q_values`); ties: the lowest."""
        return np.asarray(np.argmax(self.q_values(states), axis=1), dtype=np.int64)

    def probabilities(self, states: Any, epsilon: float = 0.0) -> FloatArray:
        """(n, A) action probabilities at ``states``: greedy, mixed with ``epsilon / A`` uniform.

        Row i is ``(1 - epsilon) * one_hot(choose(states)[i]) + epsilon / A``.
        """
        eps = float(epsilon) if _is_number(epsilon) else float("nan")
        if not 0.0 <= eps <= 1.0:
            raise InvalidParameterError(f"'epsilon' must be a number in [0, 1]; got {epsilon!r}.")
        greedy = self.choose(states)
        A = self.n_actions
        out = np.full((greedy.size, A), eps / A)
        out[np.arange(greedy.size), greedy] += 1.0 - eps
        return out

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The fitted agent as a JSON-ready dict (no pickles)."""
        self._check_fitted()
        opts = dict(self.options)
        if "hidden" in opts:
            opts["hidden"] = list(opts["hidden"])
        model: dict[str, Any]
        if self._layers is not None:
            model = {
                "kind": "mlp",
                "layers": [{"weight": W.tolist(), "bias": b.tolist()} for W, b in self._layers],
            }
        else:
            model = {
                "kind": "lightgbm",
                "offset": self._offset,
                "booster": self._booster.model_to_string(),
            }
        return {
            "format": FORMAT,
            "version": VERSION,
            "algorithm": self.algorithm,
            "gamma": self.gamma,
            "gamma_used": self.gamma_,
            "random_state": self.random_state,
            "options": opts,
            "weights": self.weights,
            "weights_used": dict(self.weights_),
            "utility_weights": list(self.utility_weights_),
            "spec": self.spec_.to_dict(),
            "encoder": self.encoder_.to_dict(),
            "model": model,
            "summary": self.summary_,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> OfflineAgent:
        """Rebuild a fitted agent from :meth:`to_dict`."""
        what = "an offline agent"
        if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
            found = raw.get("format") if isinstance(raw, Mapping) else type(raw).__name__
            raise ModelFormatError(
                f"{what}: expected a mapping with format {FORMAT!r}; found {found!r}. Pass the "
                "output of OfflineAgent.to_dict() (or a file written by OfflineAgent.save)."
            )
        if raw.get("version") != VERSION:
            raise ModelFormatError(
                f"{what}: expected format version {VERSION}; found {raw.get('version')!r}. It was "
                "written by another pexkit version: re-train the agent with this one."
            )
        try:
            agent = cls(
                raw["algorithm"],
                gamma=raw["gamma"],
                random_state=raw["random_state"],
                weights=raw["weights"],
                **raw["options"],
            )
            agent.spec_ = SequentialSpec.from_dict(raw["spec"])
            agent.encoder_ = StateEncoder.from_dict(raw["encoder"])
            agent.gamma_ = float(raw["gamma_used"])
            agent.weights_ = {str(k): float(v) for k, v in raw["weights_used"].items()}
            agent.utility_weights_ = tuple(float(w) for w in raw["utility_weights"])
            agent.summary_ = dict(raw["summary"])
            model = raw["model"]
            if model["kind"] == "mlp":
                layers = [
                    (
                        np.asarray(layer["weight"], dtype=np.float64).reshape(
                            len(layer["weight"]), -1
                        ),
                        np.asarray(layer["bias"], dtype=np.float64),
                    )
                    for layer in model["layers"]
                ]
                width = agent.encoder_.width
                for W, b in layers:
                    if W.shape[0] != width or b.shape != (W.shape[1],):
                        raise ValueError(f"layer shapes {W.shape} and {b.shape} do not chain")
                    width = W.shape[1]
                if width != agent.spec_.n_actions:
                    raise ValueError(f"{width} outputs for {agent.spec_.n_actions} actions")
                agent._layers = layers
            elif model["kind"] == "lightgbm":
                import lightgbm as lgb

                agent._offset = float(model["offset"])
                agent._booster = lgb.Booster(model_str=model["booster"])
            else:
                raise ValueError(f"unknown model kind {model['kind']!r}")
        except ModelFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, SpecError) as exc:
            raise ModelFormatError(
                f"{what}: the stored agent is incomplete or corrupt ({type(exc).__name__}: {exc}). "
                "Re-train it and save it again."
            ) from None
        except Exception as exc:  # LightGBM raises its own error types
            raise ModelFormatError(
                f"{what}: the stored booster cannot be read ({type(exc).__name__}: {exc}). "
                "Re-train the agent and save it again."
            ) from None
        return agent

    def save(self, path: str | Path) -> Path:
        """Write the fitted agent to ``path`` as JSON; returns the path."""
        out = Path(path)
        out.write_text(json.dumps(self.to_dict()))
        return out

    @classmethod
    def load(cls, path: str | Path) -> OfflineAgent:
        """Read an agent written by :meth:`save`."""
        source = Path(path)
        if not source.exists():
            raise InvalidParameterError(
                f"agent file {str(source)!r} does not exist; pass the path given to "
                "OfflineAgent.save."
            )
        try:
            raw = json.loads(source.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFormatError(
                f"an offline agent: {str(source)!r} is not JSON ({exc}); expected a file written "
                "by OfflineAgent.save."
            ) from None
        return cls.from_dict(raw)

    def __repr__(self) -> str:
        opts = ", ".join(
            f"{k}={v!r}"
            for k, v in self.options.items()
            if v != _valid_options(self.algorithm).get(k)
        )
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"OfflineAgent(algorithm={self.algorithm!r}, gamma={self.gamma!r}"
            + (f", weights={self.weights!r}" if self.weights else "")
            + (f", {opts}" if opts else "")
            + f"; {state})"
        )
