"""Where work runs: in this process, or on a Dask cluster (:mod:`pexkit.execution.dask`).

Only :mod:`pexkit.execution.dask` imports dask; this package's root does not,
so the rest of pexkit can ask :func:`is_distributed` without the import.
"""

from typing import Any

__all__ = ["is_distributed"]


def is_distributed(data: Any) -> bool:
    """Whether ``data`` is a :class:`~pexkit.execution.dask.DistributedLog`."""
    return type(data).__name__ == "DistributedLog" and type(data).__module__ == (
        "pexkit.execution.dask"
    )
