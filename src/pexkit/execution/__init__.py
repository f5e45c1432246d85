"""Where work runs: in this process, or on a Dask cluster (:mod:`pexkit.execution.dask`).

:mod:`pexkit.execution.dask` holds the log and fits on a cluster;
:mod:`pexkit.execution.trees` searches policy trees there and
:mod:`pexkit.execution.explain` distills, segments and predicts there. Only these
import dask; this package's root does not, so the rest of pexkit can ask
:func:`is_distributed` without the import.
"""

from typing import Any

__all__ = ["is_dask_array", "is_distributed", "refuse_distributed"]


def is_distributed(data: Any) -> bool:
    """Whether ``data`` is a :class:`~pexkit.execution.dask.DistributedLog`."""
    return type(data).__name__ == "DistributedLog" and type(data).__module__ == (
        "pexkit.execution.dask"
    )


def is_dask_array(x: Any) -> bool:
    """Whether ``x`` is a ``dask.array.Array`` (checked without importing dask)."""
    return type(x).__name__ == "Array" and type(x).__module__.startswith("dask.array")


def refuse_distributed(data: Any, what: str) -> None:
    """Raise a clear error when ``what`` is asked of a log that lives on a cluster."""
    if is_distributed(data):
        from pexkit.exceptions import InvalidParameterError

        raise InvalidParameterError(
            f"{what} does not run on a cluster yet: its per-unit arrays would have to come "
            "to this process. On a DistributedLog, fit EffectModel, then use model.ate(), "
            "model.predict, px.evaluate_policy, px.evaluate_policies, px.optimize_policies, "
            f"px.distill, px.segments and px.distill_effects there; for {what}, load a "
            "sample of the log with LoggedData.from_frame."
        )
