"""The analysis on a Dask cluster: the log stays on the workers as blocks.

:func:`read_parquet` turns a Parquet file or a directory of parts (local or any
fsspec URL) into a :class:`DistributedLog`: each part is read and validated on
a worker by :meth:`LoggedData.from_frame` (the same checks and messages as in
one process), encoded with categories gathered from every part, and kept there
as a :class:`Block` of arrays. The client holds futures, the encoder and a few
counts: it never gathers the log.

:func:`fit_cluster` fits the T- and DR-learners on such a log (and
``learner="auto"`` between them, per cell, by the same loss and 2-SE rule as
one process, from sums over the blocks): the single process's
stratified folds (drawn on one worker from the arm column alone, over the
parts in order) and its feature bins (found on the same fixed-seed sample of
at most 200,000 rows), one task per (fold, arm) that receives only the rows its
outcome models need (selected where they live, then moved between workers),
and the out-of-fold outcome predictions, doubly robust scores, DR targets and
effects computed in place, block by block. The DR chain's second stages are
one task per held-out fold. With the same folds, bins, row order and seeds as
one process, the models are the single process's models. Above
``selection_rows``, ``auto``'s comparison runs on the single process's
stratified subsample, gathered and fitted in one process on a worker
(:func:`probe_on_cluster`).
Average effects (:func:`ate`), a policy's value (:func:`evaluate_policy`) and
the batches of a Pareto search (:class:`ClusterEvaluator`) are map-reduce sums
over the blocks, the same moments the single-process estimators use.

This module is the only one in pexkit that imports dask.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit.data import FeatureEncoder, LoggedData
from pexkit.data.logged import sample_ratio_test, srm_message
from pexkit.effects import boosting
from pexkit.effects.boosting import LightGBMLearner, final_stage_params, make_base_learner
from pexkit.effects.learners.base import with_arm
from pexkit.effects.learners.x import x_weight
from pexkit.effects.nuisance import doubly_robust_scores, make_folds
from pexkit.exceptions import InvalidDataError, InvalidParameterError, SampleRatioMismatchWarning
from pexkit.spec import ExperimentSpec

if TYPE_CHECKING:
    from pexkit.effects.model import EffectModel
    from pexkit.evaluation.evaluate import PolicyValue

__all__ = [
    "Block", "ClusterEvaluator", "DistributedLog", "ate", "evaluate_policy", "fit_cluster",
    "read_parquet",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Block:
    """One part of the log, encoded, on the worker that holds it."""

    X: FloatArray
    treatment: IntArray
    outcomes: FloatArray
    propensity: FloatArray
    unit_hash: NDArray[np.uint64]
    units: NDArray[Any] | None = None  # the unit ids (the row number when the spec has none)
    folds: IntArray | None = None
    mu: FloatArray | None = None  # out-of-fold outcome predictions (n_p, K, M)
    scores: FloatArray | None = None  # doubly robust scores (n_p, K, M)
    dr_targets: FloatArray | None = None  # DR second-stage targets per held-out fold (F, n_p, K, M)
    x_targets: FloatArray | None = None  # X-learner imputed effects per held-out fold (F, n_p, K, M)
    oof: dict[str, FloatArray] | None = None  # out-of-fold effects per learner (n_p, K, M)
    effects: FloatArray | None = None  # the chosen learners' out-of-fold effects (n_p, K, M)


@dataclass
class DistributedLog:
    """A validated log whose rows stay on a Dask cluster, one :class:`Block` per part.

    Attributes
    ----------
    spec : ExperimentSpec
    client : distributed.Client
    blocks : list of Future
        One :class:`Block` per Parquet part, on the workers.
    encoder : FeatureEncoder
        Categories from every part.
    part_sizes : list of int
    srm : SampleRatioTest or None
    """

    spec: ExperimentSpec
    client: Any
    blocks: list[Any]
    encoder: FeatureEncoder
    part_sizes: list[int]
    arm_totals: IntArray
    srm: Any
    paths: list[str]
    #: per outcome, whether it is 0/1 in every part (or declared ``type: binary``)
    binary: tuple[bool, ...] = ()

    @property
    def n_units(self) -> int:
        """Number of rows across all parts."""
        return int(sum(self.part_sizes))

    @property
    def n_treatments(self) -> int:
        return self.spec.n_treatments

    @property
    def n_outcomes(self) -> int:
        return self.spec.n_outcomes

    @property
    def arm_counts(self) -> dict[str, int]:
        """Units per arm, in spec order."""
        return {a: int(c) for a, c in zip(self.spec.arms, self.arm_totals, strict=True)}

    def __len__(self) -> int:
        return self.n_units

    def __repr__(self) -> str:
        return (
            f"DistributedLog(n_units={self.n_units}, parts={len(self.blocks)}, "
            f"arms={self.arm_counts}, outcomes={list(self.spec.outcome_names)})"
        )


# ------------------------------------------------------------------ reading
def _part_paths(path: str) -> list[str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise InvalidDataError(
            f"the log {path!r}: expected a Parquet file or a directory of Parquet parts; "
            "found nothing at that path. Check the path (local, or an fsspec URL such as "
            "s3://bucket/log/)."
        )
    if fs.isdir(root):
        found = sorted(p for p in fs.find(root) if str(p).endswith(".parquet"))
        if not found:
            raise InvalidDataError(
                f"the log {path!r}: expected Parquet parts (*.parquet) in the directory; "
                "found none. Write the log with DataFrame.to_parquet or point at a file."
            )
    else:
        found = [root]
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return [str(p) for p in found]
    return [f"{protocol}://{p}" for p in found]


def _read_part(path: str, spec: ExperimentSpec) -> LoggedData:
    frame = pd.read_parquet(path)
    try:
        return LoggedData.from_frame(frame, spec, min_rows_per_arm=0, warn_srm=False)
    except InvalidDataError as exc:
        raise InvalidDataError(f"part {path}: {exc}") from None


def _categories(part: LoggedData) -> dict[str, list[Any]]:
    return part.encoder.categories


def _unit_hash(unit_ids: NDArray[Any]) -> NDArray[np.uint64]:
    values = pd.Series(unit_ids).astype(str)
    return np.asarray(pd.util.hash_pandas_object(values, index=False), dtype=np.uint64)


def _encode(part: LoggedData, encoder: FeatureEncoder, offset: int, by_row: bool) -> Block:
    X = encoder.matrix(encoder.transform(_features_frame(part)))
    ids = np.arange(offset, offset + part.n_units) if by_row else part.unit_ids
    return Block(X=X, treatment=part.treatment, outcomes=part.outcomes,
                 propensity=part.propensity, unit_hash=_unit_hash(ids), units=ids)


def _features_frame(part: LoggedData) -> pd.DataFrame:
    # the part's own encoding keeps the raw levels as categories: back to strings
    out = part.X.copy()
    for col in part.spec.categorical:
        out[col] = out[col].astype(object)
    return out


def _counts(block: Block, n_treat: int) -> IntArray:
    return np.bincount(block.treatment, minlength=n_treat).astype(np.int64)


def _duplicates(*hashes: NDArray[np.uint64]) -> int:
    every = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    return int(every.shape[0] - np.unique(every).shape[0])


def _as_any(client: Any) -> Any:
    """The client, untyped (distributed's methods carry no annotations)."""
    return client


def read_parquet(path: str, spec: ExperimentSpec, client: Any) -> DistributedLog:
    """Read and validate Parquet parts on ``client``'s workers (see the module docstring)."""
    from distributed import Client

    if not isinstance(client, Client):
        raise InvalidParameterError(
            f"'cluster' must be a dask.distributed Client; got {type(client).__name__}. "
            "Connect with Client('tcp://scheduler:8786') or Client(LocalCluster(...))."
        )
    if spec.propensity == "estimate":
        raise InvalidParameterError(
            "the spec's 'propensity: estimate' fits a propensity model on the whole log, which "
            "the Dask backend does not do yet. Log the assignment probabilities in a column, "
            "or analyse this log in one process."
        )
    if spec.cluster is not None:
        raise InvalidParameterError(
            f"the spec's 'cluster: {spec.cluster}' asks for cluster-robust standard errors, "
            "which the Dask backend does not compute yet (a cluster's rows may sit in "
            "different parts). Analyse this log in one process "
            "(LoggedData.from_parquet(path, spec) without cluster=)."
        )
    client = _as_any(client)
    paths = _part_paths(str(path))
    parts = client.map(_read_part, paths, spec=spec, pure=False)
    cats_per_part = client.gather(client.map(_categories, parts))
    categories = {
        col: sorted({str(v) for cats in cats_per_part for v in cats[col]})
        for col in spec.categorical
    }
    encoder = FeatureEncoder(spec, categories)
    sizes = client.gather(client.map(lambda p: p.n_units, parts))
    flags = client.gather(client.map(lambda p: p.binary, parts))
    binary = tuple(all(f[m] for f in flags) for m in range(spec.n_outcomes))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    blocks = [client.submit(_encode, p, encoder, o, spec.unit is None)
              for p, o in zip(parts, offsets, strict=True)]
    del parts
    totals = np.sum(client.gather(client.map(_counts, blocks, n_treat=spec.n_treatments)), axis=0)
    if spec.unit:
        dup = client.submit(_duplicates, *client.map(lambda b: b.unit_hash, blocks)).result()
        if dup:
            raise InvalidDataError(
                f"column {spec.unit!r}: expected one row per unit (unique ids) across all "
                f"parts; found {dup} ids that appear more than once. Aggregate outcomes to "
                "one row per unit (first exposure) before analysis."
            )
    srm = None
    if not spec.propensity:
        srm = sample_ratio_test(totals, spec)
        if srm.mismatch:
            warnings.warn(srm_message(spec, srm), SampleRatioMismatchWarning, stacklevel=3)
    return DistributedLog(spec=spec, client=client, blocks=blocks, encoder=encoder,
                          part_sizes=[int(s) for s in sizes], arm_totals=totals, srm=srm,
                          paths=paths, binary=binary)


# ---------------------------------------------------------------------- fit
def _treatment(block: Block) -> NDArray[np.int8]:
    return block.treatment.astype(np.int8)


def _global_folds(n_folds: int, seed: int, *treatments: NDArray[np.int8]) -> list[IntArray]:
    # the single process's stratified folds over the parts in order (one worker holds only
    # the arm column while it draws them)
    every = np.concatenate(treatments).astype(np.int64)
    folds = make_folds(every, n_folds, seed)
    bounds = np.cumsum([t.shape[0] for t in treatments])[:-1]
    return np.split(folds, bounds)


def _with_folds(block: Block, folds: list[IntArray], i: int) -> Block:
    return replace(block, folds=folds[i])


def _rows_for(block: Block, fold: int, arm: int) -> tuple[FloatArray, FloatArray]:
    assert block.folds is not None
    keep = (block.folds != fold) & (block.treatment == arm)
    return block.X[keep], block.outcomes[keep]


def _features(block: Block) -> FloatArray:
    return block.X


def _bin_sample(cap: int, *Xs: FloatArray) -> FloatArray:
    """The rows one process finds bins on (:func:`~pexkit.effects.boosting.bin_sample_rows`)."""
    X = np.concatenate(Xs)
    rows = boosting.bin_sample_rows(X.shape[0], cap)
    return X if rows is None else X[rows]


def _fit_models(
    base_params: dict[str, Any] | None, categorical: list[int], seeds: list[int],
    sample: FloatArray, *pieces: tuple[FloatArray, FloatArray],
    binary: Sequence[bool] = (),
) -> list[Any]:
    """One model per target column of the pieces' rows (concatenated in part order); a
    classifier for the columns flagged in ``binary`` (0/1 outcomes, as in one process)."""
    X = np.concatenate([p[0] for p in pieces])
    Y = np.concatenate([p[1] for p in pieces])
    learner = LightGBMLearner(base_params, 1)
    learner.bind(sample, categorical)  # the bins every model shares, as in one process
    return [learner.fit_matrix(X, Y[:, j], s, bool(binary and binary[j]))
            for j, s in enumerate(seeds)]


def _rows_pair(block: Block, f: int, g: int, arm: int) -> tuple[FloatArray, FloatArray]:
    assert block.folds is not None
    keep = (block.folds != f) & (block.folds != g) & (block.treatment == arm)
    return block.X[keep], block.outcomes[keep]


def _dr_targets(block: Block, sources: dict[tuple[int, int], Any], n_folds: int,
                base_params: Any) -> Block:
    """Each held-out fold's DR targets on the other folds' rows (the single process's chain)."""
    assert block.folds is not None
    learner = LightGBMLearner(base_params, 1)
    n_p = block.X.shape[0]
    K, M = len(next(iter(sources.values()))), block.outcomes.shape[1]
    targets = np.full((n_folds, n_p, K, M), np.nan)
    for f in range(n_folds):
        mu_train = np.zeros((n_p, K, M))
        for g in range(n_folds):
            rows = np.flatnonzero(block.folds == g)
            if g == f or not rows.size:
                continue
            models = sources[(f, g)]
            Xg = block.X[rows]
            for k in range(K):
                for m in range(M):
                    mu_train[rows, k, m] = learner.predict(models[k][m], Xg)
        train = np.flatnonzero(block.folds != f)
        sc = doubly_robust_scores(mu_train[train], block.treatment[train],
                                  block.propensity[train], block.outcomes[train])
        targets[f, train] = sc - sc[:, :1, :]
    return replace(block, dr_targets=targets)


def _dr_rows(block: Block, f: int) -> tuple[FloatArray, FloatArray]:
    assert block.folds is not None and block.dr_targets is not None
    keep = block.folds != f
    tg = block.dr_targets[f][keep][:, 1:, :]
    return block.X[keep], tg.reshape(tg.shape[0], -1)


def _by_fold(block: Block, name: str, n_folds: int, effect: Any, **clear: Any) -> Block:
    """Store a learner's out-of-fold effects: the rows of fold f get ``effect(f, X_f, out_f)``,
    which fills ``out_f`` (n_f, K, M; control slice 0) with the models held out on f."""
    assert block.folds is not None and block.mu is not None
    oof = np.zeros_like(block.mu)
    for f in range(n_folds):
        rows = np.flatnonzero(block.folds == f)
        if rows.size:
            out = np.zeros((rows.size, *oof.shape[1:]))
            effect(f, block.X[rows], out)
            oof[rows] = out
    return replace(block, oof={**(block.oof or {}), name: oof}, **clear)


def _dr_oof(block: Block, models: list[list[list[Any]]], base_params: Any) -> Block:
    """Out-of-fold DR effects: rows of fold f from the second stage held out on f."""
    learner = LightGBMLearner(base_params, 1)

    def effect(f: int, Xf: FloatArray, out: FloatArray) -> None:
        for k in range(1, out.shape[1]):
            for m in range(out.shape[2]):
                out[:, k, m] = learner.predict(models[k][m][f], Xf)

    return _by_fold(block, "dr", len(models[1][0]), effect, dr_targets=None)


def _x_targets(block: Block, models: list[list[list[Any]]], base_params: Any) -> Block:
    """Imputed effects for each held-out fold f (``XLearner.fit``): on a treated row of arm k,
    ``Y - mu_0``; on a control row, ``mu_k - Y`` for every k; both from fold f's models."""
    assert block.folds is not None
    learner = LightGBMLearner(base_params, 1)
    n_folds, n_treat, n_out = len(models), len(models[0]), len(models[0][0])
    T, Y = block.treatment, block.outcomes
    targets = np.full((n_folds, T.shape[0], n_treat, n_out), np.nan)
    for f in range(n_folds):
        out = block.folds != f
        control = np.flatnonzero(out & (T == 0))
        for k in range(1, n_treat):
            treated = np.flatnonzero(out & (k == T))
            for m in range(n_out):
                if treated.size:
                    mu0 = learner.predict(models[f][0][m], block.X[treated])
                    targets[f, treated, k, m] = Y[treated, m] - mu0
                if control.size:
                    muk = learner.predict(models[f][k][m], block.X[control])
                    targets[f, control, k, m] = muk - Y[control, m]
    return replace(block, x_targets=targets)


def _x_rows(block: Block, f: int, k: int, arm: int) -> tuple[FloatArray, FloatArray]:
    """Rows of ``arm`` (k: the treated model; 0: the control model) outside fold f."""
    assert block.folds is not None and block.x_targets is not None
    keep = (block.folds != f) & (block.treatment == arm)
    return block.X[keep], block.x_targets[f][keep][:, k, :]


def _x_oof(block: Block, models: list[list[list[tuple[Any, Any]]]], weights: FloatArray,
           base_params: Any) -> Block:
    learner = LightGBMLearner(base_params, 1)

    def effect(f: int, Xf: FloatArray, out: FloatArray) -> None:
        for k in range(1, out.shape[1]):
            g = weights[k]
            for m in range(out.shape[2]):
                tau0, tau1 = models[k][m][f]
                out[:, k, m] = (g * learner.predict(tau0, Xf)
                                + (1 - g) * learner.predict(tau1, Xf))

    return _by_fold(block, "x", len(models[1][0]), effect, x_targets=None)


def _with_arm_column(block: Block) -> FloatArray:
    return np.column_stack([block.X, block.treatment.astype(np.float64)])


def _s_rows(block: Block, f: int) -> tuple[FloatArray, FloatArray]:
    assert block.folds is not None
    keep = block.folds != f
    return _with_arm_column(block)[keep], block.outcomes[keep]


def _s_oof(block: Block, models: list[list[Any]], base_params: Any) -> Block:
    learner = LightGBMLearner(base_params, 1)

    def effect(f: int, Xf: FloatArray, out: FloatArray) -> None:
        at = [with_arm(Xf, k) for k in range(out.shape[1])]
        for m in range(out.shape[2]):
            base = learner.predict(models[m][f], at[0])
            for k in range(1, out.shape[1]):
                out[:, k, m] = learner.predict(models[m][f], at[k]) - base

    return _by_fold(block, "s", len(models[0]), effect)


def _oof(block: Block, models: list[list[list[Any]]], base: str, params: Any) -> Block:
    assert block.folds is not None
    learner = make_base_learner(base, params, 1)
    n_folds, n_treat, n_out = len(models), len(models[0]), len(models[0][0])
    mu = np.zeros((block.X.shape[0], n_treat, n_out))
    for f in range(n_folds):
        rows = np.flatnonzero(block.folds == f)
        if rows.size:
            Xf = block.X[rows]
            for k in range(n_treat):
                for m in range(n_out):
                    mu[rows, k, m] = learner.predict(models[f][k][m], Xf)
    scores = doubly_robust_scores(mu, block.treatment, block.propensity, block.outcomes)
    return replace(block, mu=mu, scores=scores, oof={"t": mu - mu[:, :1, :]})


def share(client: Any, obj: Any) -> Any:
    """``obj`` on one worker, as one future that tasks take as an argument (workers fetch it
    when they need it). Not ``scatter(..., broadcast=True)``: that hung sporadically in the
    test suite (a 20-minute stall in ``Client.scatter``, as in dask/distributed#4907), and the
    active memory manager drops the extra replicas anyway; ``hash=False`` skips tokenizing
    the boosters."""
    return client.scatter([obj], hash=False)[0]


def _gather_models(client: Any, futures: list[Any]) -> list[list[Any]]:
    return [list(models) for models in client.gather(futures)]


def fit_cluster(model: EffectModel, data: DistributedLog, learners: tuple[str, ...]) -> EffectModel:
    """Fit ``model`` on a :class:`DistributedLog` (learners ``t`` and ``dr``, chosen per cell as
    in one process); see the module docstring."""
    spec = data.spec
    client = _as_any(data.client)
    n_treat, n_out, n_folds = spec.n_treatments, spec.n_outcomes, model.n_folds
    seed = int(model.random_state)
    if model.base != "lightgbm":
        raise InvalidParameterError(
            f"on a cluster, EffectModel fits base='lightgbm' so far; got base={model.base!r}."
        )
    params = model.base_params
    arms = client.map(_treatment, data.blocks)
    folds = client.submit(_global_folds, n_folds, seed, *arms, pure=False)
    blocks = [client.submit(_with_folds, b, folds, i) for i, b in enumerate(data.blocks)]
    del arms
    categorical = data.encoder.categorical_indices
    sample = client.submit(_bin_sample, boosting.BIN_SAMPLE,
                           *client.map(_features, data.blocks), pure=False)
    # outcome models per (fold, arm): the T-learner, the DR scores, the DR chain
    cells = [(f, k) for f in range(n_folds) for k in range(n_treat)]
    futures = [
        client.submit(_fit_models, params, categorical,
                      [seed + 7919 * f + 31 * k + m for m in range(n_out)], sample,
                      *client.map(_rows_for, blocks, fold=f, arm=k), binary=data.binary,
                      pure=False)
        for f, k in cells
    ]
    models: list[list[list[Any]]] = [[[] for _ in range(n_treat)] for _ in range(n_folds)]
    for (f, k), fold_models in zip(cells, _gather_models(client, futures), strict=True):
        models[f][k] = fold_models
    blocks = client.map(_oof, blocks, models=share(client, models),
                        base=model.base, params=params)
    state: dict[str, Any] = {"t": None}
    if "dr" in learners:
        blocks, state["dr"] = _fit_dr(client, blocks, models, model, categorical, sample,
                                      data.binary)
    if "x" in learners:
        weights = np.array([0.0] + [x_weight(data.arm_totals / data.n_units, k)
                                    for k in range(1, n_treat)])
        blocks, state["x"] = _fit_x(client, blocks, models, model, categorical, sample, weights)
    if "s" in learners:
        blocks, state["s"] = _fit_s(client, blocks, data, model)
    chosen, selection, blocks = _select(client, blocks, learners, spec, data.n_units)
    from distributed import wait

    _as_any(wait)(blocks)
    model.spec_ = spec
    model.encoder_ = data.encoder
    model.outcome_models_ = models
    model.learners_fitted_ = {name: state[name] for name in learners}
    model.arm_shares_ = data.arm_totals / data.n_units
    model.chosen_ = chosen
    model.selection_ = selection
    model.selection_probe_ = None
    # the per-unit arrays stay on the workers, in the blocks
    for name in ("folds_", "mu_oof_", "scores_", "effects_"):
        setattr(model, name, None)
    model.distributed_ = DistributedFit(data=data, blocks=blocks)
    model.data_ = data  # a weak reference to the DistributedLog
    model._base = make_base_learner(model.base, params, model.n_jobs)
    return model


def _fit_dr(
    client: Any, blocks: list[Any], models: list[list[list[Any]]], model: EffectModel,
    categorical: list[int], sample: Any, binary: Sequence[bool] = (),
) -> tuple[list[Any], list[list[list[Any]]]]:
    """The DR-learner's honest chain (``DRLearner.fit``), one task per model group."""
    n_folds, n_treat, n_out = len(models), len(models[0]), len(models[0][0])
    seed, params = int(model.random_state), model.base_params
    if n_folds >= 3:  # outcome models that saw neither the held-out fold nor the target's
        keys = [(f, g, k) for f in range(n_folds) for g in range(f + 1, n_folds)
                for k in range(n_treat)]
        futures = [
            client.submit(_fit_models, params, categorical,
                          [seed + 104729 + 7919 * f + 613 * g + 31 * k + m for m in range(n_out)],
                          sample, *client.map(_rows_pair, blocks, f=f, g=g, arm=k),
                          binary=binary, pure=False)
            for f, g, k in keys
        ]
        pairs: dict[tuple[int, int], list[list[Any]]] = {}
        for (f, g, k), fitted in zip(keys, _gather_models(client, futures), strict=True):
            pairs.setdefault((f, g), [[] for _ in range(n_treat)])[k] = fitted
        sources = {(f, g): pairs[(min(f, g), max(f, g))]
                   for f in range(n_folds) for g in range(n_folds) if f != g}
    else:
        sources = {(f, g): models[f] for f in range(n_folds) for g in range(n_folds) if f != g}
    blocks = client.map(_dr_targets, blocks, sources=share(client, sources),
                        n_folds=n_folds, base_params=params)
    cells = [(k, m) for k in range(1, n_treat) for m in range(n_out)]
    futures = [
        client.submit(_fit_models, final_stage_params(params), categorical,
                      [seed + 101 * f + 13 * k + m for k, m in cells], sample,
                      *client.map(_dr_rows, blocks, f=f), pure=False)
        for f in range(n_folds)
    ]
    dr: list[list[list[Any]]] = [[[] for _ in range(n_out)] for _ in range(n_treat)]
    for fitted in _gather_models(client, futures):  # fold order
        for (k, m), md in zip(cells, fitted, strict=True):
            dr[k][m].append(md)
    blocks = client.map(_dr_oof, blocks, models=share(client, dr),
                        base_params=params)
    return blocks, dr


def _fit_x(
    client: Any, blocks: list[Any], models: list[list[list[Any]]], model: EffectModel,
    categorical: list[int], sample: Any, weights: FloatArray,
) -> tuple[list[Any], list[list[list[tuple[Any, Any]]]]]:
    """The X-learner (``XLearner.fit``): imputed effects where the rows are, two models per
    (fold, arm, outcome) fitted in one task per (fold, arm, side)."""
    n_folds, n_treat, n_out = len(models), len(models[0]), len(models[0][0])
    seed, params = int(model.random_state), model.base_params
    blocks = client.map(_x_targets, blocks, models=share(client, models),
                        base_params=params)
    keys = [(f, k, side) for f in range(n_folds) for k in range(1, n_treat) for side in (1, 0)]
    futures = [
        client.submit(
            _fit_models, final_stage_params(params), categorical,
            [seed + 211 * f + 17 * k + m + (0 if side else 1) for m in range(n_out)], sample,
            *client.map(_x_rows, blocks, f=f, k=k, arm=k if side else 0), pure=False,
        )
        for f, k, side in keys
    ]
    fitted = dict(zip(keys, _gather_models(client, futures), strict=True))
    xs: list[list[list[tuple[Any, Any]]]] = [[[] for _ in range(n_out)] for _ in range(n_treat)]
    for f in range(n_folds):
        for k in range(1, n_treat):
            for m in range(n_out):
                xs[k][m].append((fitted[(f, k, 0)][m], fitted[(f, k, 1)][m]))  # (tau0, tau1)
    blocks = client.map(_x_oof, blocks, models=share(client, xs),
                        weights=weights, base_params=params)
    return blocks, xs


def _fit_s(
    client: Any, blocks: list[Any], data: DistributedLog, model: EffectModel
) -> tuple[list[Any], tuple[Any, list[list[Any]]]]:
    """The S-learner (``SLearner.fit``): one model per (fold, outcome) on x and the arm."""
    n_folds, n_out = model.n_folds, data.n_outcomes
    seed, params = int(model.random_state), model.base_params
    p = data.encoder.categorical_indices
    n_features = len(data.spec.features)
    categorical = [*p, n_features]
    sample = client.submit(_bin_sample, boosting.BIN_SAMPLE,
                           *client.map(_with_arm_column, blocks), pure=False)
    futures = [
        client.submit(_fit_models, params, categorical,
                      [seed + 307 * f + m for m in range(n_out)], sample,
                      *client.map(_s_rows, blocks, f=f), pure=False)
        for f in range(n_folds)
    ]
    per_fold = _gather_models(client, futures)
    models = [[per_fold[f][m] for f in range(n_folds)] for m in range(n_out)]
    blocks = client.map(_s_oof, blocks, models=share(client, models),
                        base_params=params)
    s_base = make_base_learner(model.base, params, model.n_jobs)
    return blocks, (s_base, models)


def _loss_sums(block: Block, learners: tuple[str, ...]) -> FloatArray:
    assert block.scores is not None and block.oof is not None
    pseudo = block.scores - block.scores[:, :1, :]
    out = [((pseudo - block.oof[name]) ** 2).sum(axis=0) for name in learners]
    return np.stack([*out, pseudo.sum(axis=0), (pseudo**2).sum(axis=0)])


def _diff_sums(block: Block, overall: str, best: dict[tuple[int, int], str]) -> FloatArray:
    assert block.scores is not None and block.oof is not None
    pseudo = block.scores - block.scores[:, :1, :]
    out = np.zeros((2, *pseudo.shape[1:]))
    for (k, m), name in best.items():
        diff = ((pseudo[:, k, m] - block.oof[overall][:, k, m]) ** 2
                - (pseudo[:, k, m] - block.oof[name][:, k, m]) ** 2)
        out[0, k, m] = diff.sum()
        out[1, k, m] = (diff**2).sum()
    return out


def _choose(block: Block, chosen: NDArray[Any]) -> Block:
    assert block.oof is not None and block.mu is not None
    effects = np.zeros_like(block.mu)
    for k in range(1, chosen.shape[0]):
        for m in range(chosen.shape[1]):
            effects[:, k, m] = block.oof[str(chosen[k, m])][:, k, m]
    return replace(block, effects=effects, oof=None)


def _select(
    client: Any, blocks: list[Any], learners: tuple[str, ...], spec: ExperimentSpec, n: int
) -> tuple[NDArray[Any], pd.DataFrame, list[Any]]:
    """``EffectModel.fit``'s choice per cell (DR-pseudo-outcome loss, 2-SE rule) from block sums."""
    n_treat, n_out = spec.n_treatments, spec.n_outcomes
    sums = np.sum(client.gather(client.map(_loss_sums, blocks, learners=learners)), axis=0)
    cells = [(k, m) for k in range(1, n_treat) for m in range(n_out)]
    loss = {name: sums[i] / n for i, name in enumerate(learners)}
    p_mean, p_sq = sums[-2] / n, sums[-1] / n
    scale = {c: float(p_sq[c] - p_mean[c] ** 2) or 1.0 for c in cells}
    overall = min(learners, key=lambda name: sum(loss[name][c] / scale[c] for c in cells))
    best = {c: min(learners, key=lambda name: float(loss[name][c])) for c in cells}
    differs = {c: b for c, b in best.items() if b != overall}
    z = np.zeros((n_treat, n_out))
    if differs:
        d = np.sum(client.gather(client.map(_diff_sums, blocks, overall=overall, best=differs)),
                   axis=0)
        for c in differs:
            mean = d[0][c] / n
            sd = np.sqrt(max(d[1][c] - n * mean**2, 0.0) / (n - 1))
            z[c] = mean / (sd / np.sqrt(n) + 1e-300)
    chosen = np.empty((n_treat, n_out), dtype=object)
    rows = []
    for k, m in cells:
        pick = best[(k, m)] if z[k, m] > 2.0 else overall
        chosen[k, m] = pick
        rows.append({
            "treatment": spec.arms[k], "outcome": spec.outcome_names[m], "learner": pick,
            "best_in_cell": best[(k, m)], "overall_best": overall,
            "z_vs_overall": float(z[k, m]) if best[(k, m)] != overall else 0.0,
            **{f"loss_{name}": float(loss[name][k, m]) for name in learners},
        })
    blocks = client.map(_choose, blocks, chosen=chosen)
    return chosen, pd.DataFrame(rows), blocks


@dataclass
class DistributedFit:
    """A distributed fit's per-unit arrays: one :class:`Block` (with ``mu`` and ``scores``) per part."""

    data: DistributedLog
    blocks: list[Any]


# ------------------------------------------------------------- map-reduce
def _pseudo_sums(block: Block) -> FloatArray:
    assert block.scores is not None
    pseudo = block.scores - block.scores[:, :1, :]
    return np.stack([pseudo.sum(axis=0), (pseudo**2).sum(axis=0)])


def ate(model: EffectModel, alpha: float) -> pd.DataFrame:
    """:meth:`EffectModel.ate` from per-block sums of the DR pseudo-outcomes."""
    from scipy import stats

    fit: DistributedFit = model.distributed_
    client = fit.data.client
    sums = np.sum(client.gather(client.map(_pseudo_sums, fit.blocks)), axis=0)
    n = fit.data.n_units
    z = float(stats.norm.ppf(1 - alpha / 2))
    rows = []
    for k in range(1, model.spec_.n_treatments):
        for m, name in enumerate(model.spec_.outcome_names):
            est = float(sums[0, k, m] / n)
            var = max(float(sums[1, k, m]) - n * est**2, 0.0) / max(n - 1, 1)
            se = float(np.sqrt(var / n))
            rows.append({"treatment": model.spec_.arms[k], "outcome": name, "estimate": est,
                         "se": se, "ci_low": est - z * se, "ci_high": est + z * se})
    return pd.DataFrame(rows)


def _snips_block(block: Block, policy: Any) -> FloatArray:
    from pexkit.evaluation.estimators import snips_weights

    assert block.effects is not None
    actions = np.asarray(policy.choose(block.effects), dtype=np.int64)
    w_pi, w_0 = snips_weights(block.treatment, block.propensity,
                              (actions == block.treatment).astype(np.float64))
    y = block.outcomes
    return np.concatenate([[w_pi.sum()], (w_pi[:, None] * y).sum(axis=0), [w_0.sum()],
                           (w_0[:, None] * y).sum(axis=0)])


def _policy_block(
    block: Block, policy: Any, spec: ExperimentSpec, estimator: str, snips: Any,
    group: IntArray | None, keep_rows: bool,
) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """(sums of v, v^2, d, d^2 and arm counts; bootstrap group sums or rows; group sizes)."""
    from pexkit.evaluation.estimators import get_estimator, snips_terms, snips_weights
    from pexkit.evaluation.evaluate import group_sums
    from pexkit.evaluation.kernels import policy_sums
    from pexkit.evaluation.scores import PolicyScores

    assert block.mu is not None and block.scores is not None and block.effects is not None
    actions = np.asarray(policy.choose(block.effects), dtype=np.int64)
    n_treat = block.mu.shape[1]
    counts = np.bincount(actions, minlength=n_treat).astype(np.float64)
    y = block.outcomes
    if estimator == "snips":
        (m_pi, v_pi), (m_0, v_0) = snips
        w_pi, w_0 = snips_weights(block.treatment, block.propensity,
                                  (actions == block.treatment).astype(np.float64))
        value = snips_terms(w_pi, y, v_pi, m_pi)
        lift = value - snips_terms(w_0, y, v_0, m_0)
        sums = np.concatenate([value.sum(0), (value**2).sum(0), lift.sum(0), (lift**2).sum(0)])
    else:
        table = get_estimator(estimator).table(PolicyScores(
            block.scores, block.mu, block.treatment, block.propensity, y, spec))
        sums = policy_sums(table, actions)
        if group is not None or keep_rows:
            value = table[np.arange(actions.shape[0]), actions]
            lift = value - table[:, 0, :]
    head = np.concatenate([sums, counts])
    if group is not None:
        boot, sizes = group_sums(group, np.concatenate([value, lift], axis=1))
        return head, boot, sizes
    if keep_rows:
        return head, np.concatenate([value, lift], axis=1), None
    return head, None, None


def evaluate_policy(policy: Any, data: DistributedLog, model: EffectModel, alpha: float,
                    estimator: str = "dr", n_bootstrap: int = 0, random_state: int = 0
                    ) -> PolicyValue:
    """A :class:`LinearPolicy`'s value and lift on the training log (DR, IPS, DM or SNIPS;
    normal or bootstrap CIs), from sums over blocks."""

    from pexkit.evaluation.estimators import snips_value
    from pexkit.evaluation.evaluate import (
        BOOT_GROUP_ROWS,
        BOOT_GROUPS,
        PolicyValue,
        _moments,
        resample,
    )
    from pexkit.policy.linear import LinearPolicy

    fit: DistributedFit | None = getattr(model, "distributed_", None)
    if fit is None or fit.data is not data:
        raise InvalidParameterError(
            "on a cluster, evaluate_policy evaluates on the log the model was fitted on; "
            "pass the same DistributedLog as model.fit(data) was given."
        )
    if not isinstance(policy, LinearPolicy):
        raise InvalidParameterError(
            f"on a cluster, 'policy' must be a LinearPolicy (applied to each block's "
            f"effects where the block lives); got {type(policy).__name__}."
        )
    client = data.client
    n_out = data.n_outcomes
    n = data.n_units
    snips = None
    if estimator == "snips":  # the ratio's global value first, then each row's terms
        s = np.sum(client.gather(client.map(_snips_block, fit.blocks, policy=policy)), axis=0)
        snips = (snips_value(n, s[0], s[1:1 + n_out]), snips_value(n, s[1 + n_out],
                                                                    s[2 + n_out:]))
    rng = np.random.default_rng(random_state)
    groups: list[IntArray | None] = [None] * len(fit.blocks)
    keep_rows = n_bootstrap > 0 and n <= BOOT_GROUP_ROWS
    if n_bootstrap > 0 and not keep_rows:  # the single process's random groups
        group = rng.integers(0, BOOT_GROUPS, n)
        starts = np.concatenate([[0], np.cumsum(data.part_sizes)])
        groups = [group[starts[i]:starts[i + 1]] for i in range(len(fit.blocks))]
        del group
    parts = client.gather([
        client.submit(_policy_block, b, policy, data.spec, estimator, snips, g, keep_rows,
                      pure=False)
        for b, g in zip(fit.blocks, groups, strict=True)
    ])
    sums = np.sum([p[0] for p in parts], axis=0)
    value, value_se, lift, lift_se = (
        a[0] for a in _moments(sums[: 4 * n_out].reshape(1, -1), n, n_out)
    )
    out = PolicyValue.normal(data.spec, value, value_se, lift, lift_se, sums[4 * n_out:] / n,
                             estimator, alpha, n)
    if n_bootstrap > 0:
        if keep_rows:
            rows = np.concatenate([p[1] for p in parts])
            boot_sums, sizes = rows, np.ones(n)
        else:
            boot_sums = np.sum([p[1] for p in parts], axis=0)
            sizes = np.sum([p[2] for p in parts], axis=0)
        value_ci, lift_ci = resample(boot_sums, sizes, n_bootstrap, alpha, rng, n_out)
        out = replace(out, value_ci=value_ci, lift_ci=lift_ci, extra={"n_bootstrap": n_bootstrap})
    return out


# ----------------------------------------------------------- policy search
def _effect_sums(block: Block) -> FloatArray:
    assert block.effects is not None and block.scores is not None
    tau = block.effects
    control = np.zeros_like(tau[0])
    control[0] = block.scores[:, 0, :].sum(axis=0)
    return np.stack([tau.sum(axis=0), (tau**2).sum(axis=0), control])


def _batch_block(block: Block, sw: FloatArray, const: FloatArray) -> FloatArray:
    from pexkit.evaluation.kernels import batch_sums

    assert block.effects is not None and block.scores is not None
    return batch_sums(block.effects, block.scores, sw, const)


def _single_block(block: Block) -> FloatArray:
    assert block.scores is not None
    G = block.scores
    n_treat = G.shape[1]
    rows = []
    for k in range(n_treat):
        v = G[:, k, :]
        d = v - G[:, 0, :]
        counts = np.zeros(n_treat)
        counts[k] = G.shape[0]
        rows.append(np.concatenate([v.sum(0), (v**2).sum(0), d.sum(0), (d**2).sum(0), counts]))
    return np.stack(rows)


class ClusterEvaluator:
    """Policy values for :func:`~pexkit.optimize_policies` on a cluster: sums over the blocks.

    ``tau_mean`` / ``tau_sq_mean`` (K, M) bound the policy space
    (:meth:`~pexkit.optimize.space.PolicySpace.from_moments`); :meth:`evaluate`
    gives a batch of policies' DR values from each block's compiled batch sums.
    """

    def __init__(self, model: EffectModel, data: DistributedLog) -> None:
        fit: DistributedFit | None = getattr(model, "distributed_", None)
        if fit is None or fit.data is not data:
            raise InvalidParameterError(
                "on a cluster, policies are searched on the log the model was fitted on; "
                "pass the same DistributedLog as model.fit(data) was given (or data=None)."
            )
        self.spec = data.spec
        self.client = _as_any(data.client)
        self.blocks = fit.blocks
        self.n = data.n_units
        sums = np.sum(self.client.gather(self.client.map(_effect_sums, self.blocks)), axis=0)
        self.tau_mean = sums[0] / self.n
        self.tau_sq_mean = sums[1] / self.n
        self.control_value = sums[2, 0] / self.n

    def _values(self, sums: FloatArray) -> Any:
        from pexkit.evaluation.evaluate import PolicyValues, _moments

        n_out = self.spec.n_outcomes
        value, value_se, lift, lift_se = _moments(sums, self.n, n_out)
        return PolicyValues(outcomes=self.spec.outcome_names, value=value, value_se=value_se,
                            lift=lift, lift_se=lift_se, shares=sums[:, 4 * n_out:] / self.n,
                            estimator="dr", alpha=0.05)

    def evaluate(self, policies: Any) -> Any:
        """``PolicyValues`` of a list of :class:`LinearPolicy` (or flat parameter vectors)."""
        from pexkit.policy.linear import _batch_params

        sw, const = _batch_params(self.spec, policies)
        parts = self.client.map(_batch_block, self.blocks, sw=sw, const=const)
        return self._values(np.sum(self.client.gather(parts), axis=0))

    def single_treatments(self) -> Any:
        """``PolicyValues`` of sending every unit to arm k, for each k."""
        parts = self.client.map(_single_block, self.blocks)
        return self._values(np.sum(self.client.gather(parts), axis=0))


# ------------------------------------------------------------------ outputs
def _write_effects(block: Block, path: str, arms: list[str], columns: list[str]) -> int:
    assert block.effects is not None
    n = int(block.treatment.shape[0])
    frame = pd.DataFrame(block.effects[:, 1:, :].reshape(n, -1), columns=columns)
    frame.insert(0, "unit", block.units)
    frame.insert(1, "treatment", np.asarray(arms)[block.treatment])
    frame.to_parquet(path, index=False)
    return n


def write_effects(model: EffectModel, folder: str, columns: list[str]) -> list[str]:
    """Each part's out-of-fold effects written by the worker that holds it (one file per part)."""
    fit: DistributedFit = model.distributed_
    client = _as_any(fit.data.client)
    paths = [f"{folder}/part-{i:05d}.parquet" for i in range(len(fit.blocks))]
    client.gather([
        client.submit(_write_effects, b, p, list(model.spec_.arms), columns, pure=False)
        for b, p in zip(fit.blocks, paths, strict=True)
    ])
    return paths


def single_treatment_values(model: EffectModel, data: DistributedLog, alpha: float = 0.05
                            ) -> list[PolicyValue]:
    """The DR value of sending everyone to each arm, one :class:`PolicyValue` per arm."""

    from pexkit.evaluation.evaluate import PolicyValue

    values = ClusterEvaluator(model, data).single_treatments()
    return [
        PolicyValue.normal(data.spec, values.value[k], values.value_se[k], values.lift[k],
                           values.lift_se[k], values.shares[k], "dr", alpha, data.n_units)
        for k in range(data.n_treatments)
    ]


def connect(address: str) -> tuple[Any, Any]:
    """``(client, cluster)`` for ``tcp://HOST:PORT`` (cluster None) or ``local:N`` (N workers)."""
    import distributed

    Client: Any = distributed.Client
    LocalCluster: Any = distributed.LocalCluster
    if address.startswith("local:"):
        try:
            n = int(address.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise InvalidParameterError(
                f"--cluster {address!r}: expected local:N with N >= 1 worker processes, e.g. "
                "local:2, or tcp://HOST:PORT of a running dask scheduler."
            )
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0", host="127.0.0.1")
        return Client(cluster), cluster
    if not address.startswith(("tcp://", "tls://", "ucx://", "ws://", "wss://")):
        raise InvalidParameterError(
            f"--cluster {address!r}: expected tcp://HOST:PORT of a dask scheduler (started with "
            "`dask scheduler`) or local:N for N local worker processes."
        )
    try:
        return Client(address, timeout="20s"), None
    except OSError as exc:
        raise InvalidParameterError(
            f"--cluster {address!r}: could not reach a dask scheduler there ({exc}). Start one "
            "with `dask scheduler` and workers with `dask worker tcp://HOST:8786`, or use local:N."
        ) from None


# ------------------------------------------------------------ auto's probe
def _probe_split(selection_rows: int, n_folds: int, seed: int, n_treat: int,
                 *treatments: NDArray[np.int8]) -> list[IntArray]:
    from pexkit.effects.model import probe_rows

    every = np.concatenate(treatments).astype(np.int64)
    rows = probe_rows(every, n_treat, selection_rows, n_folds, seed)
    bounds = np.cumsum([0, *[t.shape[0] for t in treatments]])
    return [rows[(rows >= lo) & (rows < hi)] - lo for lo, hi in zip(bounds[:-1], bounds[1:],
                                                                      strict=True)]


def _block_rows(block: Block, rows: list[IntArray], i: int) -> Block:
    r = rows[i]
    return Block(X=block.X[r], treatment=block.treatment[r], outcomes=block.outcomes[r],
                 propensity=block.propensity[r], unit_hash=block.unit_hash[r],
                 units=None if block.units is None else block.units[r])


def _as_logged(spec: ExperimentSpec, encoder: FeatureEncoder, *blocks: Block) -> LoggedData:
    """The blocks' rows as one in-memory LoggedData (on the worker that runs this)."""
    X = np.concatenate([b.X for b in blocks])
    n_num = len(spec.numeric)
    cols: dict[str, Any] = {col: X[:, j] for j, col in enumerate(spec.numeric)}
    for j, col in enumerate(spec.categorical):
        raw = X[:, n_num + j]
        codes: NDArray[np.int64] = np.where(np.isnan(raw), -1, raw).astype(np.int64)
        # the encoder's own construction: unseen or missing levels are NaN
        levels = list(encoder.categories[col])
        values = np.full(codes.shape[0], None, dtype=object)
        if levels:
            values = np.asarray(levels, dtype=object)[np.maximum(codes, 0)]
            values[codes < 0] = None
        cols[col] = pd.Categorical(values, categories=levels)
    frame = pd.DataFrame(cols, index=pd.RangeIndex(X.shape[0]))
    units = np.concatenate([np.asarray(b.units) for b in blocks])
    return LoggedData(spec, frame, np.concatenate([b.treatment for b in blocks]),
                      np.concatenate([b.outcomes for b in blocks]),
                      np.concatenate([b.propensity for b in blocks]), units, encoder, None)


def _compare(params: dict[str, Any], sample: LoggedData) -> tuple[pd.DataFrame, set[str]]:
    from pexkit.effects.model import EffectModel

    return EffectModel(**params).compare_on(sample)


def probe_on_cluster(model: EffectModel, data: DistributedLog) -> tuple[pd.DataFrame, set[str]]:
    """``learner="auto"``'s comparison on the single process's stratified subsample, fitted in
    one process on a worker (``selection_rows`` units, 200,000 by default)."""
    client = _as_any(data.client)
    arms = client.map(_treatment, data.blocks)
    rows = client.submit(_probe_split, int(model.selection_rows or 0), model.n_folds,
                         int(model.random_state), data.n_treatments, *arms, pure=False)
    pieces = [client.submit(_block_rows, b, rows, i) for i, b in enumerate(data.blocks)]
    sample = client.submit(_as_logged, data.spec, data.encoder, *pieces, pure=False)
    params = {**model.get_params(), "progress": False}
    result: tuple[pd.DataFrame, set[str]] = client.submit(_compare, params, sample,
                                                          pure=False).result()
    return result
