"""The build directory: ``<build_dir>/<build_id>/`` with the build file and ``context/``.

It lives under ``settings.build_dir`` so the Kubernetes launcher finds it on the shared volume at the same
path. Files are world-readable: rootless builders run as another user. Everything here is blocking file
I/O, so the service calls it in a thread — except layer downloads, which are async and go through wave's
one HTTP session (``wave.http``), whose connector refuses internal addresses on every hop.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp

from wave.builds.definition import BuildDefinition
from wave.builds.freeze import LayerDownload
from wave.http import refused_address

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=15, sock_read=60)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3  # hops followed by hand, each checked like the submitted URL


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


async def download_layers(context: Path, downloads: tuple[LayerDownload, ...],
                          session: aiohttp.ClientSession) -> None:
    """Fetch http(s) layers into the context, checking size and digest while streaming. ``session`` is wave's
    guarded session: the address of the first host and of each redirect's is checked as it is connected to
    (the submitted URL was checked at submit time, but DNS may have changed since)."""
    for item in downloads:
        await _download(session, context / item.filename, item)


def _check_url(url: str, item: LayerDownload) -> None:
    parts = urlsplit(url)
    try:
        _ = parts.port
    except ValueError:
        raise LayerDownloadError(f"layer {item.url}: {url[:200]!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LayerDownloadError(f"layer {item.url} redirected to {url[:200]!r}, which is not an http(s) URL")


async def _download(session: aiohttp.ClientSession, path: Path, item: LayerDownload) -> None:
    digest, size = hashlib.sha256(), 0
    out = await asyncio.to_thread(path.open, "wb")
    try:
        url = item.url
        for hops in range(MAX_REDIRECTS + 1):
            _check_url(url, item)
            # redirects are followed here, not by aiohttp, so that each hop's URL is checked too
            async with session.get(url, allow_redirects=False, timeout=DOWNLOAD_TIMEOUT) as response:
                if response.status in REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise LayerDownloadError(f"layer {item.url} answered HTTP {response.status} "
                                                 "without a Location")
                    if hops == MAX_REDIRECTS:
                        raise LayerDownloadError(f"layer {item.url} redirected more than {MAX_REDIRECTS} times")
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise LayerDownloadError(f"layer {item.url} answered HTTP {response.status}")
                async for chunk in response.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > item.gzip_size:
                        raise LayerDownloadError(f"layer {item.url} is larger than its gzipSize {item.gzip_size}")
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
                break
    except (aiohttp.ClientError, TimeoutError) as exc:
        refused = refused_address(exc)
        if refused is not None:
            raise LayerDownloadError(f"layer {item.url}: host {refused.where} is an internal address, which wave "
                                     "does not download from; trust it with WAVE_TRUSTED_HOSTS") from None
        raise LayerDownloadError(f"layer {item.url} could not be downloaded: {exc}") from None
    finally:
        await asyncio.to_thread(out.close)
    if size != item.gzip_size or "sha256:" + digest.hexdigest() != item.gzip_digest:
        raise LayerDownloadError(f"layer {item.url} does not match its gzipDigest/gzipSize")
