"""The build directory: ``<build_dir>/<build_id>/`` with the build file and ``context/``.

It lives under ``settings.build_dir`` so the Kubernetes launcher finds it on the shared volume at the same
path. Files are world-readable: rootless builders run as another user. Everything here is blocking file
I/O, so the service calls it in a thread — except layer downloads, which are async.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import aiohttp

from wave.builds.definition import BuildDefinition
from wave.builds.freeze import LayerDownload

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=15, sock_read=60)


class LayerDownloadError(Exception):
    """A freeze layer could not be fetched or did not match its digest; the message says which."""


def write_workspace(root: Path, build_id: str, definition: BuildDefinition) -> Path:
    workdir = root / build_id
    context = workdir / "context"
    if workdir.exists():
        shutil.rmtree(workdir)
    context.mkdir(parents=True, mode=0o755)
    workdir.chmod(0o755)
    (workdir / definition.build_file_name).write_text(definition.build_file, encoding="utf-8")
    for name, data in definition.context.items():
        (context / name).write_bytes(data)
    for path in (workdir / definition.build_file_name, *(context / n for n in definition.context)):
        path.chmod(0o644)
    return workdir


def remove_workspace(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


async def download_layers(context: Path, downloads: tuple[LayerDownload, ...]) -> None:
    """Fetch http(s) layers into the context, checking size and digest while streaming."""
    if not downloads:
        return
    async with aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as session:
        for item in downloads:
            await _download(session, context / item.filename, item)


async def _download(session: aiohttp.ClientSession, path: Path, item: LayerDownload) -> None:
    digest, size = hashlib.sha256(), 0
    out = await asyncio.to_thread(path.open, "wb")
    try:
        async with session.get(item.url) as response:
            if response.status != 200:
                raise LayerDownloadError(f"layer {item.url} answered HTTP {response.status}")
            async for chunk in response.content.iter_chunked(1 << 20):
                size += len(chunk)
                if size > item.gzip_size:
                    raise LayerDownloadError(f"layer {item.url} is larger than its gzipSize {item.gzip_size}")
                digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise LayerDownloadError(f"layer {item.url} could not be downloaded: {exc}") from None
    finally:
        await asyncio.to_thread(out.close)
    if size != item.gzip_size or "sha256:" + digest.hexdigest() != item.gzip_digest:
        raise LayerDownloadError(f"layer {item.url} does not match its gzipDigest/gzipSize")
