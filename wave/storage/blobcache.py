"""Where cached blobs live: a local (or shared) directory with a size cap, or an S3 bucket.

Blobs are content-addressed, so a blob is written once and never changes: a backend only has to make a blob
appear whole (a rename in a directory, one upload to S3) and to find it again, after a restart or from another
replica. The bytes of a blob that is still arriving go to a *spool* file first (on the same file system as the
directory cache, so committing it is one ``rename``); clients that asked for the blob meanwhile read the spool
file as it grows. Which clients may be served a cached blob is not decided here (see wave.proxy.blobcache).

Blocking file-system and boto3 calls run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from wave.bounded import BoundedCache
from wave.storage.s3 import S3Storage

log = logging.getLogger("wave.storage.blobs")

RECOUNT_EVERY = 60.0  # seconds between counts of what the directory holds (replicas share it)
TOUCH_EVERY = 60.0  # seconds: a hit refreshes a blob's place in the LRU order at most this often
EVICT_TO = 0.9  # eviction frees space down to this fraction of the cap, so it does not run on every fill
STALE_SPOOL = 24 * 3600.0  # spool files older than this were left by a process that died mid-fill
PRESIGN_SECONDS = 900  # lifetime of a signed S3 URL handed to a client
KNOWN_FOR = 600.0  # seconds an S3 blob found once is taken to be there without asking again
KNOWN_ITEMS = 65536


@dataclass(frozen=True)
class StoredBlob:
    """A committed blob: a file to send (directory), or a URL to redirect to (S3)."""

    digest: str
    size: int
    path: Path | None = None
    url: str | None = None


class BlobBackend(Protocol):
    spool_dir: Path

    def claim(self, digest: str) -> tuple[Path, int | None]:
        """Blocking (call it in a thread). The spool file for ``digest`` and, when this process is to fill it,
        a descriptor open for writing that holds the file's lock; ``None`` when another live process (sharing
        the directory) fills it now — its readers follow that file. Backends whose spool is private to the
        process always return a descriptor."""
        ...

    def commit_path(self, digest: str) -> Path | None:
        """Where the committed blob appears in the file system (a shared directory), else None."""
        ...

    async def open(self) -> None:
        """Prepare the storage (directories, the size index); called once at start-up."""
        ...

    async def find(self, digest: str, *, signed: bool = True) -> StoredBlob | None:
        """The committed blob, or None; ``signed`` asks for a URL a client can use (S3)."""
        ...

    async def commit(self, spool: Path, digest: str, size: int) -> None:
        """Make the verified spool file the blob ``digest``; the spool file is gone afterwards."""
        ...

    async def close(self) -> None: ...


def _hex(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexpart


def new_spool(spool_dir: Path, digest: str) -> Path:
    return spool_dir / f"{_hex(digest)}.{secrets.token_hex(6)}.part"


def _create(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def claim_shared(spool_dir: Path, digest: str) -> tuple[Path, int | None]:
    """``<spool>/<hex>.part``, claimed with its file lock by one process at a time among those sharing the
    directory: created under a private name, locked, then linked into place (so nobody sees it unlocked). A
    file whose lock nobody holds was left by a process that died: it is removed and claimed anew."""
    path = spool_dir / f"{_hex(digest)}.part"
    while True:
        fresh = new_spool(spool_dir, digest).with_suffix(".new")
        fd = _create(fresh)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.link(fresh, path)
        except FileExistsError:
            os.close(fd)
        else:
            return path, fd
        finally:
            os.unlink(fresh)
        try:
            held = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # committed or given up meanwhile: look again
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return path, None  # a live process fills it
        else:
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(held).st_ino == os.stat(path).st_ino:
                    os.unlink(path)  # nobody fills it: left by a process that died
        finally:
            os.close(held)


def _sweep_spool(spool_dir: Path) -> None:
    spool_dir.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - STALE_SPOOL
    for entry in os.scandir(spool_dir):
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass


class DirectoryBlobs:
    """``<root>/sha256/<hex>`` per blob, ``<root>/spool/`` for blobs arriving; at most ``max_bytes`` in all.

    Least recently used blobs go first: a hit refreshes the file's mtime (at most once a minute), eviction
    removes the oldest mtimes. Several replicas may share the directory: commits are atomic renames, and each
    replica evicts by what it finds on disk, not by what it wrote itself.
    """

    def __init__(self, root: Path, max_bytes: int, on_evict: Callable[[int, int], None] | None = None) -> None:
        self.root = root
        self.blobs_dir = root / "sha256"
        self.spool_dir = root / "spool"
        self.max_bytes = max_bytes
        self._on_evict = on_evict or (lambda count, size: None)
        self._total = 0  # bytes under blobs_dir as last counted, plus what this process committed since
        self._counted = time.monotonic()
        self._evicting = False

    def __repr__(self) -> str:
        return f"DirectoryBlobs({str(self.root)!r}, max_bytes={self.max_bytes})"

    async def open(self) -> None:
        def prepare() -> int:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            _sweep_spool(self.spool_dir)
            return _du(self.blobs_dir)

        self._total = await asyncio.to_thread(prepare)
        if self._total > self.max_bytes:
            await self._evict()

    def path_of(self, digest: str) -> Path:
        return self.blobs_dir / _hex(digest)

    async def find(self, digest: str, *, signed: bool = True) -> StoredBlob | None:
        path = self.path_of(digest)

        def look() -> int | None:
            try:
                stat = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            now = time.time()
            if now - stat.st_mtime > TOUCH_EVERY:
                try:
                    os.utime(path, (now, now))  # recently used: last to be evicted
                except FileNotFoundError:
                    return None
            return stat.st_size

        size = await asyncio.to_thread(look)
        return StoredBlob(digest, size, path=path) if size is not None else None

    def claim(self, digest: str) -> tuple[Path, int | None]:
        return claim_shared(self.spool_dir, digest)

    def commit_path(self, digest: str) -> Path | None:
        return self.path_of(digest)

    async def commit(self, spool: Path, digest: str, size: int) -> None:
        await asyncio.to_thread(os.replace, spool, self.path_of(digest))
        self._total += size
        if time.monotonic() - self._counted > RECOUNT_EVERY:  # other replicas commit too: count them in
            self._total, self._counted = await asyncio.to_thread(_du, self.blobs_dir), time.monotonic()
        if self._total > self.max_bytes:
            await self._evict()

    async def _evict(self) -> None:
        if self._evicting:
            return
        self._evicting = True
        try:
            count, freed, self._total = await asyncio.to_thread(_evict_oldest, self.blobs_dir,
                                                                int(self.max_bytes * EVICT_TO))
        finally:
            self._evicting = False
        if count:
            log.info("blob cache %s: evicted %d blobs (%d bytes)", self.root, count, freed)
            self._on_evict(count, freed)

    async def close(self) -> None:
        return None


def _du(directory: Path) -> int:
    total = 0
    for entry in os.scandir(directory):
        with contextlib.suppress(FileNotFoundError):
            total += entry.stat().st_size
    return total


def _evict_oldest(directory: Path, target: int) -> tuple[int, int, int]:
    """Remove the least recently used files until at most ``target`` bytes remain: (count, freed, remaining)."""
    files = []
    for entry in os.scandir(directory):
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue
        files.append((stat.st_mtime, stat.st_size, entry.path))
    total = sum(size for _, size, _ in files)
    count = freed = 0
    for _, size, path in sorted(files):
        if total <= target:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a client still sending it keeps its open file
        total -= size
        count, freed = count + 1, freed + size
    return count, freed, total


class S3Blobs:
    """``<prefix>/sha256/<hex>`` in a bucket; clients are redirected to a signed URL, valid 15 minutes.

    Spool files live under the local ``spool_dir`` until the upload is done. The bucket's lifecycle rules (not
    wave) decide when blobs expire; a blob found once is remembered for a few minutes, so a hot blob costs no
    S3 request per pull.
    """

    def __init__(self, storage: S3Storage, spool_dir: Path) -> None:
        self.storage = storage
        self.spool_dir = spool_dir
        self._known: BoundedCache[str, int] = BoundedCache(KNOWN_ITEMS, ttl=KNOWN_FOR)  # digest -> size

    def __repr__(self) -> str:
        return f"S3Blobs({self.storage!r})"

    async def open(self) -> None:
        await asyncio.to_thread(_sweep_spool, self.spool_dir)

    @staticmethod
    def _key(digest: str) -> str:
        return f"sha256/{_hex(digest)}"

    def claim(self, digest: str) -> tuple[Path, int | None]:
        path = new_spool(self.spool_dir, digest)  # private to this process: replicas do not share it
        return path, _create(path)

    def commit_path(self, digest: str) -> Path | None:
        return None

    async def find(self, digest: str, *, signed: bool = True) -> StoredBlob | None:
        key = self._key(digest)
        size = self._known.get(digest)
        if size is None:
            size = await self.storage.size(key)
            if size is None:
                return None
            self._known.put(digest, size)
        url = await self.storage.signed_url(key, PRESIGN_SECONDS) if signed else None
        return StoredBlob(digest, size, url=url)

    async def commit(self, spool: Path, digest: str, size: int) -> None:
        try:
            await self.storage.put_file(self._key(digest), spool)
        finally:
            await asyncio.to_thread(spool.unlink, missing_ok=True)
        self._known.put(digest, size)

    async def close(self) -> None:
        await self.storage.close()


def open_blob_backend(location: str, max_bytes: int, state_dir: Path, *, s3_endpoint: str | None = None,
                      s3_region: str | None = None,
                      on_evict: Callable[[int, int], None] | None = None) -> BlobBackend:
    """The backend ``WAVE_BLOB_CACHE`` names: ``s3://bucket/prefix``, or a directory."""
    if location.startswith("s3://"):
        url = urlsplit(location)
        storage = S3Storage(bucket=url.netloc, prefix=url.path.strip("/"), endpoint_url=s3_endpoint or None,
                            region=s3_region or None)
        return S3Blobs(storage, state_dir / "blob-spool")
    return DirectoryBlobs(Path(location).expanduser(), max_bytes, on_evict)
