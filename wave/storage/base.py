"""The object storage protocol and its key rules (the factory that picks a backend is wave.storage.factory).

Object storage holds things too big or too long-lived for the key-value store: build logs now, a blob cache
later. Every backend implements :class:`ObjectStorage` and passes the same test suite.
"""

from __future__ import annotations

from typing import Protocol


class ObjectStorage(Protocol):
    """Bytes under relative, slash-separated keys (``builds/<id>.log``).

    Backends raise :class:`wave.errors.Unavailable` when the storage cannot be reached or used, so callers
    fail fast with 503, and ``ValueError`` for a key that could escape the storage root (:func:`check_key`).
    """

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing what was there; readers see the old or the new bytes."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when there are none."""
        ...

    async def append(self, key: str, data: bytes) -> None:
        """Add ``data`` at the end of ``key`` (created when missing): build logs grow while a build runs.

        Cost and guarantees differ by backend (S3 rewrites the object), so append in chunks, not per line.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def ping(self) -> None:
        """Raise Unavailable when the storage cannot serve requests (start-up and readiness checks)."""
        ...

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    """Return ``key`` when it is a safe relative path, else raise ValueError.

    Keys become file paths and S3 object names: an absolute key, a ``..`` or ``.`` segment, an empty segment
    or a backslash could address something outside the storage root or alias another key.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"object key must be relative, not {key!r}")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"object key may not contain a backslash or NUL: {key!r}")
    if any(part in {"", ".", ".."} for part in key.split("/")):
        raise ValueError(f"object key may not contain '..', '.' or empty segments: {key!r}")
    return key
