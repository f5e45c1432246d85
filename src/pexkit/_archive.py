"""The container behind pexkit's stored models: a zip of a JSON manifest, text and npy members.

Nothing in an archive is executable: the manifest is JSON, boosters are their
libraries' own text formats, and arrays are ``.npy`` members of plain numeric
dtypes read with ``allow_pickle=False``. Every archive names its ``format`` and
``version`` in ``manifest.json``; a reader refuses any other, so an archive
written by a newer pexkit fails with a clear message instead of loading wrong.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pexkit.exceptions import ModelFormatError

__all__ = ["ArchiveReader", "ArchiveWriter", "decode_float", "encode_float"]

MANIFEST = "manifest.json"
_PICKLE_PROTOCOLS = (2, 3, 4, 5)


def encode_float(x: float) -> float | str:
    """A float for JSON: finite values as numbers, others as "nan", "inf" or "-inf"."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def decode_float(x: Any) -> float:
    """Inverse of :func:`encode_float` (None reads as NaN)."""
    return float("nan") if x is None else float(x)


class ArchiveWriter:
    """Collects members, then :meth:`finish` returns the zip bytes.

    Parameters
    ----------
    fmt : str
        The archive's ``format`` (e.g. ``"pexkit.effect-model"``).
    version : int
        The format version.
    """

    def __init__(self, fmt: str, version: int) -> None:
        self.header: dict[str, Any] = {"format": fmt, "version": version}
        self._buffer = io.BytesIO()
        self._zip = zipfile.ZipFile(self._buffer, "w", compression=zipfile.ZIP_DEFLATED)
        self._n = 0

    def _name(self, prefix: str, ext: str) -> str:
        self._n += 1
        return f"{prefix}/{self._n:05d}.{ext}"

    def text(self, prefix: str, ext: str, content: str | bytes) -> str:
        """Store a text member (a booster's model text); return its name."""
        name = self._name(prefix, ext)
        self._zip.writestr(name, content.encode() if isinstance(content, str) else content)
        return name

    def array(self, name: str, values: Any) -> str:
        """Store a numeric array as ``name`` (``.npy``, never pickled); return its name."""
        arr = np.asarray(values)
        if arr.dtype.hasobject or arr.dtype.kind not in "biuf":
            raise ModelFormatError(
                f"array {name!r}: expected a numeric array to store; found dtype {arr.dtype}. "
                "Store strings and objects in the JSON manifest instead."
            )
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        self._zip.writestr(name, buf.getvalue())
        return name

    def finish(self, manifest: dict[str, Any]) -> bytes:
        """Write ``manifest.json`` (the header first) and return the archive's bytes."""
        doc = {**self.header, **manifest}
        try:
            text = json.dumps(doc, indent=1, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"the model's manifest cannot be written as JSON ({exc}); constructor "
                "parameters (e.g. base_params) must be plain numbers, strings, lists and dicts."
            ) from exc
        self._zip.writestr(MANIFEST, text)
        self._zip.close()
        return self._buffer.getvalue()


class ArchiveReader:
    """Opens archive bytes and checks their format and version.

    Parameters
    ----------
    blob : bytes
    fmt : str
        The expected ``format``.
    versions : tuple of int
        The versions this pexkit reads.
    what : str
        What the blob should be, for messages (e.g. "an effect model").

    Raises
    ------
    ModelFormatError
        The blob is not a zip archive, has no readable manifest, or names
        another format or an unknown version.
    """

    def __init__(self, blob: bytes, fmt: str, versions: tuple[int, ...], what: str) -> None:
        self.what = what
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise ModelFormatError(
                f"{what}: expected the bytes of a pexkit archive; got {type(blob).__name__}."
            )
        data = bytes(blob)
        if len(data) >= 2 and data[0] == 0x80 and data[1] in _PICKLE_PROTOCOLS:
            raise ModelFormatError(
                f"{what}: expected a pexkit archive (format {fmt!r}); found a Python pickle, "
                "the storage of older pexkit versions, which is no longer loaded because "
                "unpickling runs arbitrary code. Re-train the model (or re-run the job) with "
                "this pexkit version."
            )
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            raw = self._zip.read(MANIFEST)
            doc = json.loads(raw)
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
            raise ModelFormatError(
                f"{what}: expected a pexkit archive (a zip holding {MANIFEST}, format "
                f"{fmt!r}); found {len(data)} bytes that are not one ({type(exc).__name__}: "
                f"{exc}). The stored blob is corrupt or not a pexkit model: re-train it."
            ) from None
        if not isinstance(doc, dict):
            raise ModelFormatError(
                f"{what}: expected {MANIFEST} to hold a JSON object; found "
                f"{type(doc).__name__}. The archive is corrupt: re-train the model."
            )
        found_fmt, version = doc.get("format"), doc.get("version")
        if found_fmt != fmt:
            raise ModelFormatError(
                f"{what}: expected format {fmt!r}; found {found_fmt!r}. Load it with the "
                "loader of its own format, or re-train the model."
            )
        if version not in versions:
            raise ModelFormatError(
                f"{what}: format {fmt!r} version {version!r} is not one this pexkit reads "
                f"(it reads versions {list(versions)}). Upgrade pexkit to read it, or "
                "re-train the model with this version."
            )
        self.manifest: dict[str, Any] = doc

    def _read(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except (KeyError, zipfile.BadZipFile, ValueError) as exc:
            raise ModelFormatError(
                f"{self.what}: the manifest names member {name!r}, which the archive lacks or "
                f"cannot read ({exc}). The archive is corrupt: re-train the model."
            ) from None

    def text(self, name: str) -> str:
        """A text member."""
        return self._read(name).decode()

    def raw(self, name: str) -> bytes:
        """A member's bytes."""
        return self._read(name)

    def array(self, name: str) -> NDArray[Any]:
        """A ``.npy`` member, read with ``allow_pickle=False``."""
        try:
            arr: NDArray[Any] = np.load(io.BytesIO(self._read(name)), allow_pickle=False)
        except ValueError as exc:
            raise ModelFormatError(
                f"{self.what}: member {name!r}: expected a numeric .npy array; it cannot be "
                f"read without pickle ({exc}). The archive is corrupt or unsafe: re-train the model."
            ) from None
        return arr
