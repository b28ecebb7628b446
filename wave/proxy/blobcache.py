"""The blob cache: each upstream blob fetched once, kept by digest, served to every client allowed to see it.

A blob is filled while the first client streams it: one task reads upstream's body, hashes it and appends it to
a spool file; every client that wants the blob meanwhile (the first one included) reads that file as it grows,
so concurrent cold requests make one upstream fetch and all of them get their first bytes at once. The file
is committed (renamed into the cache, or uploaded to S3) only when size and digest match; on a mismatch it is
deleted and every client's connection is cut before its last byte, so no client takes a wrong blob for whole.

The fill belongs to no client: a client hanging up never stops it for the others. Which client may be served
a cached blob is the caller's decision (wave.proxy.blobs): content addressing makes the bytes right for
anyone, but only a repository known to hold the blob may learn that wave has it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from wave.config import Settings
from wave.storage.blobcache import BlobBackend, StoredBlob, open_blob_backend

log = logging.getLogger("wave.proxy")

MIN_CACHED = 1  # bytes: an empty blob is not worth a file
FOLLOW_POLL = 0.005  # seconds between looks at a spool file another process fills
# (event, amount): "hit"/"miss" with the bytes served or expected, "filled" with the bytes committed,
# "evicted" with the number of blobs removed, "fetch" for each upstream fetch, "rejected" for a bad digest.
CacheEvents = Callable[[str, int], None]


class FillFailed(Exception):
    """The blob being filled did not arrive whole and right: whoever reads it must cut its client off."""


class Fill:
    """One blob on its way from upstream into a spool file; readers follow ``written`` as it grows."""

    def __init__(self, digest: str, size: int, scope: str, spool: Path) -> None:
        self.digest = digest
        self.size = size
        self.scope = scope  # registry, repository and credentials it is fetched with
        self.spool = spool
        self.written = 0
        self.outcome: bool | None = None  # True: verified; False: failed
        self._changed = asyncio.Event()
        self._created = asyncio.Event()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _advance(self, count: int) -> None:
        self.written += count
        self._wake()

    def _finish(self, ok: bool) -> None:
        self.outcome = ok
        self._created.set()
        self._wake()

    async def available(self, offset: int) -> int:
        """How many bytes can be read, once more than ``offset`` are or the fill ended; FillFailed if it
        failed."""
        while self.written <= offset and self.outcome is None:
            await self._changed.wait()
        if self.outcome is False:
            raise FillFailed(self.digest)
        return self.written

    async def verified(self) -> bool:
        while self.outcome is None:
            await self._changed.wait()
        return self.outcome

    async def open_reader(self) -> BinaryIO:
        """The spool file, open for reading; FileNotFoundError once the fill is over and the file moved on."""
        await self._created.wait()
        if self.outcome is False:
            raise FillFailed(self.digest)
        return await asyncio.to_thread(open, self.spool, "rb")


class BlobCache:
    def __init__(self, backend: BlobBackend, events: CacheEvents | None = None) -> None:
        self.backend = backend
        self._events = events or (lambda event, amount: None)
        self._fills: dict[str, Fill] = {}
        self._opening: dict[str, asyncio.Future[Fill | None]] = {}  # upstream asked, no answer yet
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"BlobCache({self.backend!r})"

    def count(self, event: str, amount: int = 1) -> None:
        self._events(event, amount)

    async def find(self, digest: str, *, signed: bool = True) -> StoredBlob | None:
        return await self.backend.find(digest, signed=signed)

    def filling(self, digest: str) -> Fill | None:
        return self._fills.get(digest)

    async def fill_or_join(self, digest: str, scope: str, fetch: Callable[[], Awaitable[aiohttp.ClientResponse]],
                           size_of: Callable[[], Awaitable[int | None]]) -> Fill | aiohttp.ClientResponse:
        """The fill of ``digest`` under way, or a new one from ``fetch()``'s response — one fetch however many
        ask at once, in this process and in the others sharing a cache directory (whose fill is followed, its
        size learnt from ``size_of()``: a HEAD upstream, which also confirms the caller's repository holds the
        blob). When the response cannot fill the cache (not a 200 with a length) it is returned to its caller,
        and those who waited for it fetch for themselves."""
        while True:
            fill = self._fills.get(digest)
            if fill is not None:
                return fill
            pending = self._opening.get(digest)
            if pending is None:
                break
            if await asyncio.shield(pending) is None:
                return await fetch()
        opening: asyncio.Future[Fill | None] = asyncio.get_running_loop().create_future()
        self._opening[digest] = opening
        fill = None
        try:
            spool, fd = await asyncio.to_thread(self.backend.claim, digest)
            if fd is None:  # another process fills it: follow its file
                size = await size_of()
                if size is None:
                    return await fetch()
                fill = self._follow(digest, size, scope, spool)
                return fill
            try:
                response = await fetch()
            except BaseException:
                await asyncio.to_thread(_give_up, spool, fd)
                raise
            if response.status == 200 and response.content_length:
                fill = self.start_fill(digest, scope, response, spool, fd)
                self.count("miss", fill.size)
                return fill
            await asyncio.to_thread(_give_up, spool, fd)
            return response
        finally:
            del self._opening[digest]
            opening.set_result(fill)

    def start_fill(self, digest: str, scope: str, upstream: aiohttp.ClientResponse, spool: Path, fd: int) -> Fill:
        """Fill ``digest`` from ``upstream`` (a 200 with a Content-Length) into the claimed ``spool`` file, in
        the background."""
        assert upstream.content_length is not None
        fill = Fill(digest, upstream.content_length, scope, spool)
        self._fills[digest] = fill
        self.count("fetch")
        self._spawn(self._run(fill, upstream, fd))
        return fill

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _follow(self, digest: str, size: int, scope: str, spool: Path) -> Fill:
        """A fill another process runs, followed by polling its spool file: there is no notification between
        processes. It succeeded when the blob is committed, failed when its lock is free without that."""
        fill = Fill(digest, size, scope, spool)
        self._fills[digest] = fill
        self._spawn(self._watch(fill))
        return fill

    async def _watch(self, fill: Fill) -> None:
        committed = self.backend.commit_path(fill.digest)
        try:
            fd = await asyncio.to_thread(os.open, fill.spool, os.O_RDONLY)
        except FileNotFoundError:  # done already, or given up
            fill._finish(committed is not None and await asyncio.to_thread(committed.exists))
            return
        fill._created.set()
        try:
            while True:
                written, state = await asyncio.to_thread(_progress, fd, committed)
                if written > fill.written:
                    fill._advance(min(written, fill.size) - fill.written)
                if state is not None:
                    fill._finish(state and fill.written == fill.size)
                    return
                await asyncio.sleep(FOLLOW_POLL)
        except BaseException:
            fill._finish(False)
            raise
        finally:
            os.close(fd)
            if self._fills.get(fill.digest) is fill:
                del self._fills[fill.digest]

    async def _run(self, fill: Fill, upstream: aiohttp.ClientResponse, fd: int) -> None:
        sha = hashlib.sha256()
        try:
            fill._created.set()
            async for chunk in upstream.content.iter_any():
                if fill.written + len(chunk) > fill.size:
                    raise FillFailed(f"upstream sent more than the {fill.size} bytes it announced")
                await asyncio.to_thread(_append, fd, chunk, sha)  # hashlib drops the GIL: overlaps the loop
                fill._advance(len(chunk))
            got = "sha256:" + sha.hexdigest()
            if fill.written != fill.size or got != fill.digest:
                log.warning("blob %s from upstream: %d of %d bytes, digest %s: not cached, clients cut off",
                            fill.digest, fill.written, fill.size, got)
                self.count("rejected")
                raise FillFailed(fill.digest)
            fill._finish(True)  # readers may send their last bytes now; committing can take a while (S3)
            try:
                await self.backend.commit(fill.spool, fill.digest, fill.size)
                self.count("filled", fill.size)
            except Exception as exc:
                log.warning("blob %s could not be committed to the cache: %s", fill.digest, exc)
        except (aiohttp.ClientError, TimeoutError, OSError, FillFailed) as exc:
            if not isinstance(exc, FillFailed):
                log.warning("blob %s: upstream broke off after %d bytes (%s)", fill.digest, fill.written,
                            type(exc).__name__)
            fill._finish(False)
        except BaseException:
            fill._finish(False)
            raise
        finally:
            upstream.release()
            # The lock goes last: followers in other processes then find the blob committed, or no blob.
            if fill.outcome is not True:
                await asyncio.to_thread(_give_up, fill.spool, fd)
            else:
                os.close(fd)
            if self._fills.get(fill.digest) is fill:
                del self._fills[fill.digest]

    async def idle(self) -> None:
        """Until every fill under way has ended (committed or thrown away)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self.backend.close()


@asynccontextmanager
async def opened_blob_cache(settings: Settings, events: CacheEvents | None = None) -> AsyncIterator[BlobCache | None]:
    """The blob cache ``WAVE_BLOB_CACHE`` names (None when it is off), open for the life of the app; fills
    under way are stopped (and their spool files removed) when it closes."""
    if not settings.blob_cache:
        yield None
        return
    count = events or (lambda event, amount: None)
    backend = open_blob_backend(settings.blob_cache, settings.blob_cache_size, settings.state_dir,
                                s3_endpoint=settings.s3_endpoint, s3_region=settings.s3_region,
                                on_evict=lambda blobs, size: count("evicted", blobs))
    await backend.open()
    cache = BlobCache(backend, count)
    try:
        yield cache
    finally:
        await cache.close()


def _give_up(spool: Path, fd: int) -> None:
    spool.unlink(missing_ok=True)  # before the lock goes: followers find no file, or a free lock and no blob
    os.close(fd)


def _progress(fd: int, committed: Path | None) -> tuple[int, bool | None]:
    """Bytes in a followed spool file, and whether its fill ended: True (committed), False (given up), None."""
    written = os.fstat(fd).st_size
    if committed is not None and committed.exists():
        return os.fstat(fd).st_size, True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return written, None  # its filler holds the lock: still going
    fcntl.flock(fd, fcntl.LOCK_UN)
    return os.fstat(fd).st_size, committed is not None and committed.exists()


def _append(fd: int, chunk: bytes, sha: hashlib._Hash) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]
    sha.update(chunk)
