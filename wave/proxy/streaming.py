"""Sending blobs to clients: bytes wave holds (with Range), or upstream's response streamed through.

:func:`relay` copies the body of a plain-TCP upstream straight between the two sockets through one reused 1 MiB
buffer (no per-chunk objects, no stream reader, few system calls: as fast here as a C relay such as socat, and
faster than ``splice(2)`` through a pipe, which was tried); anything else (TLS on either side, chunked upstream
bodies, small blobs) goes chunk by chunk through aiohttp, as read. Memory stays bounded either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from typing import BinaryIO

import aiohttp
from aiohttp import web

from wave.proxy.blobcache import Fill, FillFailed
from wave.proxy.cache import API_VERSION, CachedObject

log = logging.getLogger("wave.proxy")
PASSED_BLOB_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges", "Docker-Content-Digest", "ETag",
                       "Content-Type")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
BLOB_TYPE = "application/octet-stream"


async def send_upstream_blob(request: web.Request, upstream: aiohttp.ClientResponse, digest: str,
                             read_timeout: float | None, registry: str) -> web.StreamResponse:
    """Upstream's blob response passed on: status, the headers that describe the bytes, then the bytes."""
    try:
        response = web.StreamResponse(status=upstream.status, headers=API_VERSION)
        for name in PASSED_BLOB_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        response.headers.setdefault("Docker-Content-Digest", digest)
        if request.method == "HEAD":
            response.content_length = upstream.content_length
            await response.prepare(request)
            return response
        await response.prepare(request)
        try:
            await relay(upstream, request, response, read_timeout)
        except ConnectionResetError:  # the client went away (aiohttp's own reset error is a ClientError too)
            return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status line is sent: all that is left is to cut the connection, so the client sees a short
            # body (and its digest check fails) instead of waiting for bytes that will never come.
            log.warning("upstream %s broke off blob %s: %s", registry, digest, type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        upstream.release()


_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def send_local_blob(obj: CachedObject, range_header: str | None) -> web.Response:
    """A blob wave holds, whole or one byte range of it (clients resume downloads with Range)."""
    size = len(obj.data)
    match = _RANGE_RE.fullmatch(range_header.strip()) if range_header else None
    if match is None or match.group(1) == match.group(2) == "":
        return web.Response(body=obj.data, headers=obj.headers)  # no (usable) range: the whole blob
    first, last = match.group(1), match.group(2)
    start, end = (int(first), min(int(last or size - 1), size - 1)) if first else (max(size - int(last), 0), size - 1)
    if start > end or start >= size:
        return web.Response(status=416, headers={**API_VERSION, "Content-Range": f"bytes */{size}"})
    headers = {**obj.headers, "Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"}
    return web.Response(status=206, body=obj.data[start:end + 1], headers=headers)


DIRECT_MIN = 1 << 20  # smaller bodies go through aiohttp: taking the sockets over costs more than it saves
BUFFER_SIZE = 1 << 20  # bytes read from upstream per system call, at most, and held per stream
YIELD_EVERY = 4 << 20  # bytes moved without waiting before other requests get a turn on the loop


async def relay(upstream: aiohttp.ClientResponse, request: web.Request, response: web.StreamResponse,
                read_timeout: float | None) -> None:
    """Send the rest of ``upstream``'s body to the client; the caller prepared ``response`` and ends it."""
    sockets = _direct_sockets(upstream, request, response)
    if sockets is None:
        async for chunk, _ in upstream.content.iter_chunks():  # each as read: no re-slicing, no joining
            if chunk:
                await response.write(chunk)
        return
    up_transport, down_transport = sockets
    assert upstream.content_length is not None
    # What aiohttp read already goes first; then upstream's socket is ours (nothing runs in between).
    head = upstream.content.read_nowait()
    remaining = max(0, upstream.content_length - upstream.content.total_bytes)
    up_transport.pause_reading()
    # Our own descriptors: the loop's selector refuses a transport's, and closing ours never closes theirs.
    up, down = os.dup(_fd(up_transport)), -1
    upstream.close()  # its bytes are ours now: the connection can never go back to the pool
    try:
        down = os.dup(_fd(down_transport))
        await response.write(head)  # also sends the headers aiohttp may still hold
        await _flush(request, down_transport)
        await _copy(up, down, remaining, read_timeout)
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
    for transport in (up, down):
        if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None \
                or transport.get_extra_info("ssl_object") is not None:
            return None
        sock = transport.get_extra_info("socket")  # what the transport reads and writes: no TLS above it
        if sock is None or sock.type != socket.SOCK_STREAM or sock.fileno() < 0:
            return None
    return up, down  # type: ignore[return-value]


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


async def _copy(up: int, down: int, remaining: int, read_timeout: float | None) -> None:
    """Move ``remaining`` bytes from one non-blocking socket to the other, waiting on the event loop."""
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


def send_cached_file(path: str, digest: str) -> web.FileResponse:
    """A blob from the directory cache: sendfile, with aiohttp's Range, HEAD and conditional requests."""
    return web.FileResponse(path, headers={**API_VERSION, "Docker-Content-Digest": digest,
                                           "Content-Type": BLOB_TYPE})


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
        loop = asyncio.get_running_loop()
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
                    await loop.sendfile(transport, reader, offset, end - offset)
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
        await asyncio.to_thread(reader.close)
