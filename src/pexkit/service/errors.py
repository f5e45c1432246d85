"""Domain errors of the decision service; ``app.py`` alone maps them to HTTP codes.

::

    PexkitError
    └── ServiceRequestError          a request the service refuses
        ├── InvalidRequestError      malformed or out-of-range input        (422)
        ├── NotFoundError            unknown experiment, version or job     (404)
        ├── ConflictError            not possible in the current state      (409)
        ├── PayloadTooLargeError     body or batch over its limit           (413)
        ├── TooManyRequestsError     a bounded queue is full                (429)
        ├── UnauthenticatedError     missing, unknown or revoked key        (401)
        ├── ForbiddenError           the key lacks the scope or experiment  (403)
        └── UnavailableError         the store is gone; retry later         (503)
"""

from __future__ import annotations

from pexkit.exceptions import PexkitError

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServiceRequestError",
    "TooManyRequestsError",
    "UnauthenticatedError",
    "UnavailableError",
]


class ServiceRequestError(PexkitError):
    """A request the decision service refuses; ``message`` says why and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(ServiceRequestError, ValueError):
    """Malformed or out-of-range input."""


class NotFoundError(ServiceRequestError, LookupError):
    """An unknown experiment, policy version or job."""


class ConflictError(ServiceRequestError):
    """The request is not possible in the experiment's current state."""


class PayloadTooLargeError(ServiceRequestError):
    """A body, batch or id over its documented limit."""


class TooManyRequestsError(ServiceRequestError):
    """A bounded queue (jobs) is full; retry later."""


class UnauthenticatedError(ServiceRequestError):
    """No key, or an unknown or revoked one."""


class ForbiddenError(ServiceRequestError):
    """The key lacks the scope, or is limited to other experiments."""


class UnavailableError(ServiceRequestError):
    """The store is unreachable or gone; nothing was written."""
