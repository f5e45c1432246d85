"""Deprecated location: the service core now lives in :mod:`pexkit.service.core`."""

from __future__ import annotations

from pexkit.service.core import DecisionService
from pexkit.service.errors import ServiceRequestError as RequestError

__all__ = ["DecisionService", "RequestError"]
