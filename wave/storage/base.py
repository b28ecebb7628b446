"""The object storage protocol, key rules, and the one factory that picks a backend from the settings.

Object storage holds things too big or too long-lived for the key-value store: build logs now, a blob cache
later. Every backend implements :class:`ObjectStorage` and passes the same test suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from wave.config import ConfigError

if TYPE_CHECKING:
    from wave.config import Settings


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


def open_storage(settings: Settings) -> ObjectStorage:
    """The backend ``settings.storage_location`` names: ``s3://bucket[/prefix]`` selects S3 (endpoint and
    region from ``WAVE_S3_ENDPOINT`` / ``WAVE_S3_REGION``, credentials from the standard AWS chain); a
    directory path or ``file://`` URL selects local files. Opening does no I/O: call ``ping()`` to check."""
    location = settings.storage_location
    if location.startswith("s3://"):
        from wave.storage.s3 import S3Storage

        url = urlsplit(location)
        if not url.netloc:
            raise ConfigError("WAVE_STORAGE_URL must name a bucket: s3://bucket[/prefix]")
        return S3Storage(
            bucket=url.netloc,
            prefix=url.path.strip("/"),
            endpoint_url=settings.s3_endpoint or None,
            region=settings.s3_region or None,
        )
    from wave.storage.local import LocalStorage

    if location.startswith("file://"):
        url = urlsplit(location)
        if url.netloc not in {"", "localhost"}:
            raise ConfigError(f"a file:// storage URL must be local, not on host {url.netloc!r}")
        return LocalStorage(Path(unquote(url.path)))
    if "://" in location:
        raise ConfigError(f"unsupported storage URL {location!r}: use s3://, file:// or a directory")
    return LocalStorage(Path(location).expanduser())
