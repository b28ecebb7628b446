"""The one factory that picks an object storage backend from the settings (apart from the backends, which
depend only on the protocol)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from wave.config import Settings
from wave.storage.base import ObjectStorage


def open_storage(settings: Settings) -> ObjectStorage:
    """The backend ``settings.storage_location`` names (validated by the settings): ``s3://bucket[/prefix]``
    selects S3 (endpoint and region from ``WAVE_S3_ENDPOINT`` / ``WAVE_S3_REGION``, credentials from the
    standard AWS chain); a directory path or ``file://`` URL selects local files. Opening does no I/O: call
    ``ping()`` to check."""
    location = settings.storage_location
    if location.startswith("s3://"):
        from wave.storage.s3 import S3Storage

        url = urlsplit(location)
        return S3Storage(
            bucket=url.netloc,
            prefix=url.path.strip("/"),
            endpoint_url=settings.s3_endpoint or None,
            region=settings.s3_region or None,
        )
    from wave.storage.local import LocalStorage

    if location.startswith("file://"):
        return LocalStorage(Path(unquote(urlsplit(location).path)))
    return LocalStorage(Path(location).expanduser())


@asynccontextmanager
async def opened_storage(settings: Settings) -> AsyncIterator[ObjectStorage]:
    """The object storage for the application's lifetime, closed on the way out."""
    storage = open_storage(settings)
    try:
        yield storage
    finally:
        await storage.close()
