"""Decide with an exported pexkit policy using numpy alone.

This file imports only the Python standard library and numpy: copy it next to
your application and load the JSON written by ``pexkit export`` (or
:func:`pexkit.serving.artifact.write_artifact`); pexkit, LightGBM and pandas need
not be installed where decisions are made.

Two kinds of artifact:

* ``"linear"``: a linear policy over the effect models, compiled to flat tree
  arrays. The score of arm k is ``base[k] + sum_t scale[t] * leaf_t(x)`` over
  the trees of arm k, and the choice is the first arm of largest score. When
  ``linear.shifted`` is true, arm 0's trees are the terms every treated arm
  subtracts, computed once: the utilities are the scores minus
  ``score[0] - base[0]`` in every arm (the choice is the same).
  Trees follow LightGBM's decision rules: numeric splits send ``x <= threshold``
  left; a missing value (NaN) counts as 0 unless the split's missing type is
  "NaN"; splits of missing type "Zero" (values within 1e-35 of 0) and "NaN"
  (missing values) follow ``default_left``; categorical splits send the
  listed category codes left and everything else, missing or unseen levels
  included, right.
* ``"tree"``: a distilled policy tree; ``x > threshold`` goes right, everything
  else (missing values included) left.

Both are evaluated level by level over all rows at once (vectorized numpy).

Features come as dicts (:meth:`PolicyEvaluator.choose`), one per unit, keyed by
the feature names of the experiment's spec: numeric values become floats
(``None`` is missing), categorical values are looked up by their string form
among the categories seen in training (unseen levels and ``None`` are missing).

Examples
--------
>>> ev = PolicyEvaluator.load({
...     "format": "pexkit.policy-artifact", "version": 1, "kind": "tree",
...     "arms": ["control", "treat"],
...     "features": {"numeric": ["age"], "categorical": []}, "categories": {},
...     "tree": {"feature": [0, -1, -1], "threshold": [30.0, 0.0, 0.0],
...              "left": [1, -1, -1], "right": [2, -1, -1], "action": [-1, 0, 1]},
... })
>>> ev.choose([{"age": 25}, {"age": 40}, {"age": None}]).tolist()
[0, 1, 0]
>>> [ev.arms[k] for k in ev.choose([{"age": 40}])]
['treat']
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

__all__ = ["FORMAT", "VERSIONS", "PolicyEvaluator"]

FORMAT = "pexkit.policy-artifact"
VERSIONS = (1,)
_PAIRS_PER_PASS = 4_000_000  # (row, tree) pairs traversed at once, bounding memory


def _floats(values: Any) -> np.ndarray:
    """JSON numbers (non-finite ones as "nan", "inf", "-inf"; None as NaN) to float64."""
    return np.asarray([float("nan") if v is None else float(v) for v in values], dtype=np.float64)


def _ints(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


class PolicyEvaluator:
    """An exported pexkit policy: records or encoded rows in, arm indices out.

    Build it with :meth:`load`.

    Attributes
    ----------
    kind : str
        "linear" or "tree".
    arms : list of str
        Arm names; :meth:`choose` returns indices into this list.
    features : list of str
        Columns of the encoded matrix: the numeric features, then the categorical ones.
    """

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.kind = str(doc["kind"])
        self.arms = [str(a) for a in doc["arms"]]
        self.numeric = [str(f) for f in doc["features"]["numeric"]]
        self.categorical = [str(f) for f in doc["features"]["categorical"]]
        self.features = self.numeric + self.categorical
        self._lookups = [
            {str(c): float(i) for i, c in enumerate(doc["categories"][col])}
            for col in self.categorical
        ]
        if self.kind == "linear":
            self._init_linear(doc["linear"])
        elif self.kind == "tree":
            t = doc["tree"]
            self._t_feature = _ints(t["feature"])
            self._t_threshold = _floats(t["threshold"])
            self._t_left, self._t_right = _ints(t["left"]), _ints(t["right"])
            self._t_action = _ints(t["action"])
        else:
            raise ValueError(
                f"policy artifact: expected kind 'linear' or 'tree'; found {self.kind!r}. "
                "Use the evaluator.py shipped with the pexkit that exported it."
            )

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, source: str | os.PathLike[str] | dict[str, Any]) -> PolicyEvaluator:
        """Read an artifact from a JSON file path, or take its already parsed dict.

        Raises
        ------
        ValueError
            The file is not a pexkit policy artifact, or names a format
            version this evaluator does not know.
        """
        if isinstance(source, dict):
            doc, where = source, "the artifact dict"
        else:
            where = repr(os.fspath(source))
            try:
                with open(source, encoding="utf-8") as fh:
                    doc = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"policy artifact {where}: expected JSON written by `pexkit export`; the "
                    f"file is not valid JSON ({exc}). Export the policy again."
                ) from None
        if not isinstance(doc, dict):
            raise ValueError(
                f"policy artifact {where}: expected a JSON object; found {type(doc).__name__}."
            )
        fmt, version = doc.get("format"), doc.get("version")
        if fmt != FORMAT:
            raise ValueError(
                f"policy artifact {where}: expected format {FORMAT!r}; found {fmt!r}. Pass the "
                "JSON written by `pexkit export` (a stored model is not an artifact)."
            )
        if version not in VERSIONS:
            raise ValueError(
                f"policy artifact {where}: format version {version!r} is not one this "
                f"evaluator reads (versions {list(VERSIONS)}). Copy the evaluator.py of the "
                "pexkit that exported it, or export the policy again with this one."
            )
        try:
            return cls(doc)
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(
                f"policy artifact {where}: incomplete or malformed ({type(exc).__name__}: "
                f"{exc}). Export the policy again."
            ) from None

    def _init_linear(self, lin: dict[str, Any]) -> None:
        a = lin["arrays"]
        self._base = _floats(lin["base"])
        self._feature = _ints(a["feature"])
        self._threshold = _floats(a["threshold"])
        self._kind = _ints(a["kind"])
        self._missing = _ints(a["missing"])
        self._default_left = np.asarray(a["default_left"], dtype=np.bool_).reshape(-1)
        self._left, self._right = _ints(a["left"]), _ints(a["right"])
        self._leaf_value = _floats(a["leaf_value"])
        self._roots = _ints(a["roots"])
        self._tree_out = _ints(a["tree_out"])
        self._tree_scale = _floats(a["tree_scale"])
        self._tree_arm = _floats(a["tree_arm"])
        self._shifted = bool(lin.get("shifted", False))
        links = lin.get("links")
        self._link_coef = None if not links else np.asarray(
            [_floats(row) for row in links["coef"]], dtype=np.float64)
        self._link_scale = None if not links else _floats(links["scale"])
        cat_start, cat_len, cats = _ints(a["cat_start"]), _ints(a["cat_len"]), _ints(a["cats"])
        # category sets as sorted keys node * span + code (membership by binary search)
        self._span = int(cats.max(initial=0)) + 2
        nodes = np.flatnonzero(self._kind == 1)
        keys = [
            node * self._span + cats[cat_start[node]:cat_start[node] + cat_len[node]]
            for node in nodes
        ]
        self._cat_keys = np.sort(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
        # per arm: its trees, in order (sums run tree by tree, as in pexkit's compiled kernel)
        self._arm_trees = [np.flatnonzero(self._tree_out == k) for k in range(len(self._base))]

    # ------------------------------------------------------------------ encode
    def encode(self, records: list[dict[str, Any]] | dict[str, Any]) -> np.ndarray:
        """Feature dicts (one per unit) -> the encoded matrix, shape (n, len(features))."""
        if isinstance(records, dict):
            records = [records]
        n_num = len(self.numeric)
        X = np.empty((len(records), len(self.features)))
        for i, rec in enumerate(records):
            for j, col in enumerate(self.numeric):
                v = rec.get(col)
                try:
                    X[i, j] = np.nan if v is None else float(v)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"record {i}, feature {col!r}: expected a number or None; got {v!r}."
                    ) from None
            for j, col in enumerate(self.categorical):
                v = rec.get(col)
                X[i, n_num + j] = np.nan if v is None else self._lookups[j].get(str(v), np.nan)
        return X

    def choose(self, records: list[dict[str, Any]] | dict[str, Any]) -> np.ndarray:
        """Arm index per record (a dict of feature values; see the module docstring)."""
        return self.choose_matrix(self.encode(records))

    def _check(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self.features):
            raise ValueError(
                f"'X' must be an encoded matrix with {len(self.features)} columns "
                f"({self.features}); got shape {arr.shape}. Encode records with .encode()."
            )
        return arr

    def choose_matrix(self, X: Any) -> np.ndarray:
        """Arm index per row of an encoded matrix (see :meth:`encode`)."""
        arr = self._check(X)
        if self.kind == "tree":
            return self._tree_choose(arr)
        actions: np.ndarray = np.argmax(self._linked(self._scores(arr)), axis=1).astype(np.int64)
        return actions

    def _linked(self, raw: np.ndarray) -> np.ndarray:
        """The arms' sums plus the probability terms of binary outcomes' models."""
        if self._link_coef is None or self._link_scale is None:
            return raw
        K = len(self.arms)
        probs = 1.0 / (1.0 + np.exp(-self._link_scale[None, :] * raw[:, K:]))
        out: np.ndarray = raw[:, :K] + probs @ self._link_coef
        return out

    # ------------------------------------------------------------------ tree
    def _tree_choose(self, X: np.ndarray) -> np.ndarray:
        node = np.zeros(X.shape[0], dtype=np.int64)
        rows = np.arange(X.shape[0])
        while rows.size:
            f = self._t_feature[node[rows]]
            inner = f >= 0
            rows, f = rows[inner], f[inner]
            if not rows.size:
                break
            here = node[rows]
            right = X[rows, f] > self._t_threshold[here]  # missing (NaN) goes left
            node[rows] = np.where(right, self._t_right[here], self._t_left[here])
        return self._t_action[node]

    # ------------------------------------------------------------------ linear
    def utilities_matrix(self, X: Any) -> np.ndarray:
        """Utility of each arm per encoded row, shape (n, len(arms)) (linear artifacts)."""
        if self.kind != "linear":
            raise ValueError("utilities exist for linear policy artifacts only; this is a tree.")
        raw = self._scores(self._check(X))
        K = len(self.arms)
        util = raw[:, :K].copy()
        if self._shifted:
            util -= (util[:, 0] - self._base[0])[:, None]
        if self._link_coef is not None:
            util += self._linked(raw) - raw[:, :K]
        return util

    def _scores(self, arr: np.ndarray) -> np.ndarray:
        """Each arm's base plus its trees, summed tree by tree (the kernel's order)."""
        n, n_trees = arr.shape[0], self._roots.shape[0]
        util = np.empty((n, len(self._base)))
        util[:] = self._base
        if n_trees == 0 or n == 0:
            return util
        step = max(1, _PAIRS_PER_PASS // n_trees)
        for lo in range(0, n, step):
            part = arr[lo:lo + step]
            contrib = self._leaf_values(part) * self._tree_scale[None, :]
            for k, trees in enumerate(self._arm_trees):
                if trees.size:  # left-to-right running sum: the kernel's order of additions
                    acc = np.concatenate([util[lo:lo + step, k:k + 1], contrib[:, trees]], axis=1)
                    util[lo:lo + step, k] = np.add.accumulate(acc, axis=1)[:, -1]
        return util

    def _leaf_values(self, X: np.ndarray) -> np.ndarray:
        """Leaf value of every tree for every row, shape (n, n_trees)."""
        n, p = X.shape
        n_trees = self._roots.shape[0]
        Xa = np.empty((n, p + 1))  # column p: the S-learner's arm value, per tree
        Xa[:, :p] = X
        Xa[:, p] = np.nan
        node = np.tile(self._roots, n)  # (row, tree) pairs, row-major
        active = np.flatnonzero(node >= 0)
        while active.size:
            nd = node[active]
            j = self._feature[nd]
            v = Xa[active // n_trees, j]
            arm = j == p
            if arm.any():
                v = np.where(arm, self._tree_arm[active % n_trees], v)
            go_left = self._go_left(nd, v)
            node[active] = np.where(go_left, self._left[nd], self._right[nd])
            active = active[node[active] >= 0]
        values: np.ndarray = self._leaf_value[-node - 1].reshape(n, n_trees)
        return values

    def _go_left(self, nd: np.ndarray, v: np.ndarray) -> np.ndarray:
        missing = self._missing[nd]
        is_nan = np.isnan(v)
        # numeric: NaN counts as 0 unless the missing type is NaN
        vn = np.where(is_nan & (missing != 2), 0.0, v)
        use_default = ((missing == 1) & (np.abs(vn) <= 1e-35)) | ((missing == 2) & is_nan)
        go_left = np.where(use_default, self._default_left[nd], vn <= self._threshold[nd])
        cat = np.flatnonzero(self._kind[nd] == 1)
        if cat.size:  # categorical: listed codes left; missing, negative, unseen right
            vc = v[cat]
            code = np.trunc(np.clip(np.where(np.isnan(vc), -1.0, vc), -1.0, self._span - 1))
            code = code.astype(np.int64)
            key = nd[cat] * self._span + code
            pos = np.minimum(np.searchsorted(self._cat_keys, key), max(self._cat_keys.size - 1, 0))
            hit = (code >= 0) & (self._cat_keys.size > 0)
            if self._cat_keys.size:
                hit &= self._cat_keys[pos] == key
            go_left[cat] = hit
        return np.asarray(go_left, dtype=np.bool_)

    def __repr__(self) -> str:
        return f"PolicyEvaluator(kind={self.kind!r}, arms={self.arms}, features={len(self.features)})"
