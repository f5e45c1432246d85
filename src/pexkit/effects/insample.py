"""Which rows of a log a model was fitted on, matched by content rather than by object.

Cross-fitting gives every training row effects and outcome predictions from
models that never saw it (``effects_``, ``mu_oof_``). Whoever evaluates a policy
on those rows must use them: the fold-averaged models of ``predict`` did see
the row, so in-sample evaluation with them looks better than it is. Deciding
"this is the training data" by object identity misses a reloaded log, a subset
or a log that overlaps the training one; here each row gets a 64-bit
fingerprint of its content (unit id when the spec names one, features,
treatment, propensity, outcomes) and rows are matched one by one.

Examples
--------
>>> import pexkit as px
>>> sim = px.simulate("notifications", n_units=400, seed=0)
>>> again = px.LoggedData.from_frame(sim.frame.copy(), sim.spec)  # the same log, reloaded
>>> keys, other = row_keys(sim.data), row_keys(again)
>>> bool((keys == other).all()), len(set(keys.tolist())) == 400
(True, True)
>>> match_rows(keys, other[::-1][:3]).tolist()
[399, 398, 397]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pexkit.data.logged import LoggedData

__all__ = ["match_rows", "row_keys"]


def row_keys(data: LoggedData, chunk: int = 100_000) -> NDArray[np.uint64]:
    """A 64-bit fingerprint per row of ``data`` (equal rows, equal keys).

    Hashed ``chunk`` rows at a time, so the table of hashed columns never
    holds more than a chunk (a whole-log copy would add the log's size to the
    fit's peak memory).
    """
    n = data.n_units
    X = data.X
    ids = pd.Series(data.unit_ids).astype(str) if data.spec.unit else None
    keys: NDArray[np.uint64] = np.empty(n, dtype=np.uint64)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        part = X.iloc[rows]
        cols: dict[str, object] = {f"x{i}": part.iloc[:, i].to_numpy() if not isinstance(
            part.dtypes.iloc[i], pd.CategoricalDtype) else part.iloc[:, i].reset_index(drop=True)
            for i in range(X.shape[1])}
        if ids is not None:
            cols["unit"] = ids.iloc[rows].to_numpy()
        cols["treatment"] = data.treatment[rows]
        cols["propensity"] = data.propensity[rows]
        for m in range(data.outcomes.shape[1]):
            cols[f"y{m}"] = data.outcomes[rows, m]
        keys[rows] = pd.util.hash_pandas_object(pd.DataFrame(cols), index=False).to_numpy()
    return keys


def match_rows(reference: NDArray[np.uint64], keys: NDArray[np.uint64]) -> NDArray[np.int64]:
    """For each key, the first reference row with that key, or -1 when there is none."""
    lookup = pd.Series(np.arange(len(reference), dtype=np.int64), index=reference)
    lookup = lookup[~lookup.index.duplicated(keep="first")]
    out: NDArray[np.int64] = lookup.reindex(keys).fillna(-1).to_numpy(dtype=np.int64)
    return out
