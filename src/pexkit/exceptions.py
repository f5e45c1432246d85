"""Exceptions and warnings raised by pexkit.

Every error derives from one root, :class:`PexkitError`, and also from the
matching builtin so that ``except ValueError`` keeps working::

    PexkitError(Exception)
    ├── SpecError(PexkitError, ValueError)         the experiment spec is malformed
    ├── InvalidDataError(PexkitError, ValueError)  a logged table fails validation
    ├── NotFittedError(PexkitError, AttributeError) a model is used before ``fit``
    ├── InvalidParameterError(PexkitError, ValueError) an argument is out of range
    └── ModelFormatError(PexkitError, ValueError)  a stored model's format is unknown or corrupt

    PexkitWarning(UserWarning)
    └── SampleRatioMismatchWarning(PexkitWarning)  arm shares differ from the design

Messages say which input was wrong, what was expected, what was found, and how
to fix it.
"""

from __future__ import annotations

__all__ = [
    "InvalidDataError",
    "InvalidParameterError",
    "ModelFormatError",
    "NotFittedError",
    "OverlapWarning",
    "PexkitError",
    "PexkitWarning",
    "SampleRatioMismatchWarning",
    "SpecError",
]


class PexkitError(Exception):
    """Root of every error raised by pexkit."""


class SpecError(PexkitError, ValueError):
    """The experiment spec is malformed (YAML or Python form)."""


class InvalidDataError(PexkitError, ValueError):
    """A logged experiment table failed validation."""


class NotFittedError(PexkitError, AttributeError):
    """A model was used before ``fit`` was called."""


class InvalidParameterError(PexkitError, ValueError):
    """A function argument is outside its allowed range."""


class ModelFormatError(PexkitError, ValueError):
    """A stored model (archive bytes) has an unknown format or version, or is corrupt."""


class PexkitWarning(UserWarning):
    """Root of every warning emitted by pexkit."""


class SlowSearchWarning(PexkitWarning):
    """An optimizer budget that will take long (e.g. qNParEGO beyond a few hundred policies)."""


class SampleRatioMismatchWarning(PexkitWarning):
    """The arm shares in a log differ from the design's shares (p < 0.001)."""


class OverlapWarning(PexkitWarning):
    """Estimated propensities near 0: some units had almost no chance of their logged arm."""
