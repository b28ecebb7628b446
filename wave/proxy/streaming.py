"""Sending blobs to clients: bytes wave holds (with Range), or upstream's response streamed through.

:func:`relay` copies the body of a plain-TCP upstream straight between the two sockets through one reused 1 MiB
buffer (no per-chunk objects, no stream reader, few system calls: as fast here as a C relay such as socat, and
faster than ``splice(2)`` through a pipe, which was tried); anything else (TLS on either side, chunked upstream
bodies, small blobs) goes chunk by chunk through aiohttp, as read. Memory stays bounded either way.

Either way every byte of a whole blob (200) passes a :class:`BlobTap` on its way: the digest check, and the
taps a caller adds (a cache fill). A tap sees each byte once, in order, and is asked to
:meth:`~BlobTap.verify` when upstream's last byte is read and before the client has it, so that a wrong blob
never reaches a client as a complete body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from typing import BinaryIO, Protocol

import aiohttp
from aiohttp import web

from wave.oci.digest import DigestMismatch, DigestVerifier
from wave.proxy.blobcache import Fill, FillFailed
from wave.proxy.cache import API_VERSION, CachedObject

log = logging.getLogger("wave.proxy")
PASSED_BLOB_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges", "Docker-Content-Digest", "ETag",
                       "Content-Type")
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # ASCII digits: \d also matches "²"
BLOB_TYPE = "application/octet-stream"


class BlobTap(Protocol):
    """What sees a streamed blob's bytes on their way to the client (:class:`DigestVerifier` is one).

    ``update`` gets every byte once, in order, on the event loop (the buffer is reused afterwards: copy what
    must be kept; do no blocking I/O there);
    ``verify`` is called once, after upstream's last byte and before the client has all of them: raising
    there (e.g. :class:`DigestMismatch`) keeps the body from ending cleanly."""

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def verify(self) -> None: ...


class TapChain:
    """Several taps as one, in order: with the digest check first, a later tap (a cache fill) is asked to
    verify, and may commit, only bytes that are the blob."""

    __slots__ = ("taps",)

    def __init__(self, *taps: BlobTap) -> None:
        self.taps = taps

    def update(self, data: bytes | bytearray | memoryview) -> None:
        for tap in self.taps:
            tap.update(data)

    def verify(self) -> None:
        for tap in self.taps:
            tap.verify()


class Progress:
    """Bytes a stream delivered to its client so far, and whether the rate watchdog cut it."""

    __slots__ = ("cut", "moved")

    def __init__(self) -> None:
        self.moved = 0
        self.cut = False


async def _watch_rate(progress: Progress, min_rate: float, window: float, request: web.Request,
                      upstream: aiohttp.ClientResponse) -> None:
    """Every ``window`` seconds the stream must have moved ``min_rate * window`` bytes; otherwise both sockets
    are shut down (which ends the copy however it is waiting), so a trickling upstream — or a client reading a
    byte at a time — cannot hold a connection and a handler for ever."""
    quota, last = min_rate * window, 0
    while True:
        await asyncio.sleep(window)
        if progress.moved - last < quota:
            progress.cut = True
            for transport in (upstream.connection.transport if upstream.connection else None, request.transport):
                sock = transport.get_extra_info("socket") if transport is not None else None
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            return
        last = progress.moved


async def send_upstream_blob(request: web.Request, upstream: aiohttp.ClientResponse, digest: str,
                             read_timeout: float | None, registry: str,
                             taps: tuple[BlobTap, ...] = (), *, min_rate: float = 0,
                             rate_window: float = 10.0) -> web.StreamResponse:
    """Upstream's blob response passed on: status, the headers that describe the bytes, then the bytes, checked
    against ``digest`` as they pass (``taps`` see a whole blob's bytes after the check). With ``min_rate``, the
    body must move that many bytes per second, checked every ``rate_window``."""
    try:
        response = web.StreamResponse(status=upstream.status, headers=API_VERSION)
        for name in PASSED_BLOB_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        response.headers.setdefault("Docker-Content-Digest", digest)
        if upstream.status == 416:
            # Not satisfiable: no body to pass on. Upstream's own may be broken (distribution 2.x declares the
            # blob's length and sends a line of text), and the client needs only Content-Range (bytes */size).
            response.content_length = 0
            response.headers.popall("Content-Type", None)
            await response.prepare(request)
            await response.write_eof()
            return response
        if request.method == "HEAD":
            response.content_length = upstream.content_length
            await response.prepare(request)
            return response
        # A 206 carries a part of the blob, which the digest (of the whole) cannot check: it is passed through
        # unverified, as are bodies of other statuses (a 416 has none worth checking). The client checks the
        # whole it assembles from its ranges.
        tap = TapChain(DigestVerifier(digest), *taps) if upstream.status == 200 else None
        await response.prepare(request)
        progress = Progress()
        watchdog = asyncio.ensure_future(_watch_rate(progress, min_rate, rate_window, request, upstream)) \
            if min_rate > 0 else None
        try:
            await relay(upstream, request, response, read_timeout, tap, progress)
        except ConnectionResetError:  # the client went away (aiohttp's own reset error is a ClientError too)
            if progress.cut:
                log.warning("blob %s: the client read %d bytes, below %g bytes/s: cut off", digest, progress.moved,
                            min_rate)
            return response
        except DigestMismatch as exc:
            # Upstream's bytes are not the blob the client asked for. The last of them are held back: cutting the
            # connection now leaves the client with a short body, never a complete wrong one.
            log.warning("upstream %s sent bytes for blob %s that hash to %s (%d bytes): cut the client off",
                        registry, digest, exc.actual, exc.size)
            if request.transport is not None:
                request.transport.close()
            return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status line is sent: all that is left is to cut the connection, so the client sees a short
            # body (and its digest check fails) instead of waiting for bytes that will never come.
            if progress.cut:
                log.warning("upstream %s sent blob %s below %g bytes/s (%d bytes moved): cut off", registry, digest,
                            min_rate, progress.moved)
            else:
                log.warning("upstream %s broke off blob %s: %s", registry, digest, type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        finally:
            if watchdog is not None:
                watchdog.cancel()
        await response.write_eof()
        return response
    finally:
        upstream.release()


def byte_range(range_header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte a ``Range`` header asks of ``size`` bytes; None for the whole (no usable range
    header), ``(size, size - 1)`` (empty) when it cannot be satisfied."""
    match = _RANGE_RE.fullmatch(range_header.strip()) if range_header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    start, end = (int(first), min(int(last or size - 1), size - 1)) if first else (max(size - int(last), 0), size - 1)
    return (start, end) if start <= end and start < size else (size, size - 1)


def send_local_blob(obj: CachedObject, range_header: str | None) -> web.Response:
    """A blob wave holds, whole or one byte range of it (clients resume downloads with Range)."""
    size = len(obj.data)
    part = byte_range(range_header, size)
    if part is None:
        return web.Response(body=obj.data, headers=obj.headers)
    start, end = part
    if start >= size:
        return web.Response(status=416, headers={**API_VERSION, "Content-Range": f"bytes */{size}"})
    headers = {**obj.headers, "Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"}
    return web.Response(status=206, body=obj.data[start:end + 1], headers=headers)


DIRECT_MIN = 1 << 20  # smaller bodies go through aiohttp: taking the sockets over costs more than it saves
BUFFER_SIZE = 1 << 20  # bytes read from upstream per system call, at most, and held per stream
YIELD_EVERY = 4 << 20  # bytes moved without waiting before other requests get a turn on the loop


async def relay(upstream: aiohttp.ClientResponse, request: web.Request, response: web.StreamResponse,
                read_timeout: float | None, tap: BlobTap | None = None, progress: Progress | None = None) -> None:
    """Send the rest of ``upstream``'s body to the client, through ``tap`` when given; the caller prepared
    ``response`` and ends it."""
    sockets = _direct_sockets(upstream, request, response)
    if sockets is None:
        held: bytes = b""  # the last chunk read, sent once the next one came or the tap passed the whole
        async for chunk, _ in upstream.content.iter_chunks():  # each as read: no re-slicing, no joining
            if chunk:
                if tap is not None:
                    tap.update(chunk)
                if held:
                    await response.write(held)
                    if progress is not None:
                        progress.moved += len(held)
                held = chunk
        if tap is not None:
            tap.verify()
        if held:
            await response.write(held)
        return
    up_transport, down_transport = sockets
    assert upstream.content_length is not None
    # What aiohttp read already goes first; then upstream's socket is ours (nothing runs in between).
    head = upstream.content.read_nowait()
    remaining = max(0, upstream.content_length - upstream.content.total_bytes)
    if tap is not None:
        tap.update(head)
        if not remaining:  # aiohttp read it all: check before the client has any of it
            tap.verify()
            tap = None
    up_transport.pause_reading()
    # Our own descriptors: the loop's selector refuses a transport's, and closing ours never closes theirs.
    up, down = os.dup(_fd(up_transport)), -1
    upstream.close()  # its bytes are ours now: the connection can never go back to the pool
    try:
        down = os.dup(_fd(down_transport))
        await response.write(head)  # also sends the headers aiohttp may still hold
        await _flush(request, down_transport)
        await _copy(up, down, remaining, read_timeout, tap, progress)
    finally:
        os.close(up)
        if down >= 0:
            os.close(down)


def _direct_sockets(upstream: aiohttp.ClientResponse, request: web.Request,
                response: web.StreamResponse) -> tuple[asyncio.Transport, asyncio.Transport] | None:
    """Both transports when the body can be copied between sockets: plain TCP both ends, a fixed length, passed
    on as is."""
    if upstream.connection is None:
        return None
    length = upstream.content_length
    if (length is None or length < DIRECT_MIN or "Transfer-Encoding" in upstream.headers
            or response.chunked or response.compression or response.content_length != length):
        return None
    up, down = upstream.connection.transport, request.transport
    if _plain_socket(up) is None or _plain_socket(down) is None:
        return None
    return up, down  # type: ignore[return-value]


def _plain_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The TCP socket under an open transport with no TLS above it: what wave may read and write itself."""
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None \
            or transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM or sock.fileno() < 0:
        return None
    return sock  # type: ignore[no-any-return]


def _fd(transport: asyncio.BaseTransport) -> int:
    return int(transport.get_extra_info("socket").fileno())


async def _flush(request: web.Request, transport: asyncio.Transport) -> None:
    """Wait until the client's transport has sent everything aiohttp gave it (headers, the first bytes)."""
    if transport.get_write_buffer_size() == 0:
        return
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0, low=0)  # paused until empty: drain() waits for exactly that
    try:
        await request.writer.drain()
    finally:
        transport.set_write_buffer_limits(high=high, low=low)


async def _copy(up: int, down: int, remaining: int, read_timeout: float | None, tap: BlobTap | None,
                progress: Progress | None = None) -> None:
    """Move ``remaining`` bytes (at least one) from one non-blocking socket to the other, waiting on the event
    loop; ``tap`` sees each read as it lands (still in the CPU's cache) and verifies after the last one, whose
    bytes are written only once it passed.

    The tap runs on the loop's thread: a worker thread was measured slower here (two cores shared with the
    registry and the client: there is no idle core to hash on, and the hand-offs cost); a machine with cores
    to spare runs ``wave serve --workers N``, which spreads the hashing with the streams."""
    loop = asyncio.get_running_loop()
    view = memoryview(bytearray(BUFFER_SIZE))
    start = end = unyielded = 0  # view[start:end] is read from upstream, not yet written to the client
    while remaining or end > start:
        moved = False
        if end == start:
            start = end = 0
        if remaining and end < BUFFER_SIZE:
            try:
                n = os.readv(up, [view[end:end + min(remaining, BUFFER_SIZE - end)]])
            except BlockingIOError:
                pass
            else:
                if n == 0:
                    raise aiohttp.ClientPayloadError(f"upstream closed the connection {remaining} bytes early")
                if tap is not None:
                    tap.update(view[end:end + n])
                    if n == remaining:
                        tap.verify()  # view[start:end + n] is not written yet: a mismatch never ends cleanly
                end, remaining, moved = end + n, remaining - n, True
        if end > start:
            try:
                n = os.write(down, view[start:end])
            except BlockingIOError:
                pass
            except OSError as exc:  # the client went away
                raise ConnectionResetError(f"cannot write to the client: {exc.strerror}") from None
            else:
                start, unyielded, moved = start + n, unyielded + n, True
                if progress is not None:
                    progress.moved += n
        if unyielded >= YIELD_EVERY:  # both ends are fast: never hold the loop for a whole blob
            unyielded = 0
            await asyncio.sleep(0)
        if not moved:  # wait for whichever end can move bytes first; a slow client has no time limit
            try:
                async with asyncio.timeout(None if end > start else read_timeout):
                    await _ready(loop, up if remaining and end < BUFFER_SIZE else None,
                                 down if end > start else None)
            except TimeoutError:
                raise aiohttp.ServerTimeoutError("Timeout on reading data from socket") from None


async def _ready(loop: asyncio.AbstractEventLoop, readable: int | None, writable: int | None) -> None:
    """Until ``readable`` can be read or ``writable`` written (either may be None)."""
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if readable is not None:
        loop.add_reader(readable, wake)
    if writable is not None:
        loop.add_writer(writable, wake)
    try:
        await ready
    finally:
        if readable is not None:
            loop.remove_reader(readable)
        if writable is not None:
            loop.remove_writer(writable)


# --- the blob cache -----------------------------------------------------------------------------------


async def send_cached_file(request: web.Request, path: str, digest: str) -> web.StreamResponse:
    """A blob from the directory cache, whole or one byte range of it (HEAD too)."""
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        headers = {**API_VERSION, "Docker-Content-Digest": digest, "Content-Type": BLOB_TYPE, "Accept-Ranges": "bytes",
                   "ETag": f'"{digest}"'}
        part = byte_range(request.headers.get("Range"), size)
        start, end = part if part is not None else (0, size - 1)
        if start >= size and part is not None:
            response = web.StreamResponse(status=416, headers={**API_VERSION, "Content-Range": f"bytes */{size}"})
            response.content_length = 0
            await response.prepare(request)
            await response.write_eof()
            return response
        response = web.StreamResponse(status=200 if part is None else 206, headers=headers)
        if part is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response.content_length = end + 1 - start
        await response.prepare(request)
        if request.method != "HEAD" and end >= start:
            try:
                await _send_file_part(request, response, fd, start, end + 1 - start)
            except (ConnectionError, RuntimeError):  # the client went away
                return response
        await response.write_eof()
        return response
    finally:
        os.close(fd)


def send_cached_head(size: int, digest: str) -> web.StreamResponse:
    """HEAD of a blob in the S3 cache: what a GET would send, without the redirect (signed for GET only)."""
    response = web.StreamResponse(headers={**API_VERSION, "Docker-Content-Digest": digest, "Content-Type": BLOB_TYPE,
                                     "Accept-Ranges": "bytes"})
    response.content_length = size
    return response


async def send_filling_blob(request: web.Request, fill: Fill, reader: BinaryIO) -> web.StreamResponse:
    """A blob while it arrives in the cache: the spool file sent as it grows, its last byte only once the
    digest matched; when it does not (or upstream broke off) the connection is cut, so the client sees a short
    body and never takes the blob for whole."""
    try:
        response = web.StreamResponse(headers={**API_VERSION, "Docker-Content-Digest": fill.digest,
                                               "Content-Type": BLOB_TYPE})
        response.content_length = fill.size
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        transport = request.transport
        offset, size = 0, fill.size
        try:
            while offset < size:
                limit = size if fill.outcome else size - 1  # the last byte waits for the digest check
                if offset >= limit:
                    if not await fill.verified():
                        raise FillFailed(fill.digest)
                    continue
                end = min(await fill.available(offset), size if fill.outcome else size - 1)
                if end > offset:
                    if transport is None or transport.is_closing():
                        return response
                    await _send_file_part(request, response, reader.fileno(), offset, end - offset)
                    offset = end
        except FillFailed:
            if request.transport is not None:
                request.transport.close()
            return response
        except (ConnectionError, RuntimeError):  # the client went away
            return response
        await response.write_eof()
        return response
    finally:
        reader.close()  # at once: a cancelled handler (the client hung up) cannot wait for a thread here


async def _send_file_part(request: web.Request, response: web.StreamResponse, fd: int, offset: int,
                          count: int) -> None:
    """``count`` bytes of a file from ``offset`` to the client. Read from the page cache without blocking the
    loop (``RWF_NOWAIT``; a thread reads what is not there) into one buffer and written to the client's
    socket, waiting on the loop: on loopback here this ran at 1.15-1.45x ``sendfile(2)``, which asyncio's
    ``loop.sendfile`` and aiohttp's ``FileResponse`` use. Through aiohttp where the socket is not plain TCP."""
    transport = request.transport
    sock = _plain_socket(transport)
    buffer = memoryview(bytearray(min(count, BUFFER_SIZE)))
    if transport is None or sock is None:
        while count > 0:
            n = await _read_file(fd, buffer[:min(count, len(buffer))], offset)
            await response.write(bytes(buffer[:n]))
            offset, count = offset + n, count - n
        return
    await _flush(request, transport)  # the headers aiohttp may still hold go first
    loop = asyncio.get_running_loop()
    down = os.dup(sock.fileno())
    try:
        while count > 0:
            n = await _read_file(fd, buffer[:min(count, len(buffer))], offset)
            sent = 0
            while sent < n:
                try:
                    sent += os.write(down, buffer[sent:n])
                except BlockingIOError:
                    await _ready(loop, None, down)
                except OSError as exc:
                    raise ConnectionResetError(f"cannot write to the client: {exc.strerror}") from None
            offset, count = offset + n, count - n
    finally:
        os.close(down)


async def _read_file(fd: int, into: memoryview, offset: int) -> int:
    """Bytes of the file at ``offset`` (at least one): from the page cache at once, else read in a thread."""
    try:
        n = os.preadv(fd, [into], offset, os.RWF_NOWAIT)
    except OSError:  # not in the page cache (a disk read would block the loop), or no RWF_NOWAIT here
        n = 0
    if n == 0:
        n = await asyncio.to_thread(os.preadv, fd, [into], offset)
        if n == 0:
            raise FillFailed("the file is shorter than its size")
    return n
