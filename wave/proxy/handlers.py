"""``/v2/`` handlers: parse, call a service, render. Every response carries the distribution headers."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
from aiohttp import web

from wave import keys
from wave.errors import DigestInvalid, NameUnknown
from wave.oci.digest import is_digest
from wave.oci.mediatypes import IMAGE_MANIFEST_TYPES, parse_accept
from wave.oci.reference import TAG_RE
from wave.proxy.blobs import RedirectBlob
from wave.proxy.cache import API_VERSION, CachedObject
from wave.proxy.streaming import relay
from wave.tokens import ContainerRequest

log = logging.getLogger("wave.proxy")
_background: set[asyncio.Task[None]] = set()
_PASSED_BLOB_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges", "Docker-Content-Digest", "ETag",
                        "Content-Type")


async def ping(request: web.Request) -> web.Response:
    return web.Response(status=200, content_type="application/json", body=b"{}", headers=API_VERSION)


async def _container(request: web.Request) -> ContainerRequest:
    """The token's request, if the token is live and the path names its repository."""
    token, name = request.match_info["token"], request.match_info["name"]
    container = await request.app[keys.TOKENS].get(token)
    if container is None:
        raise NameUnknown("unknown or expired wave token", detail={"name": f"wt/{token[:8]}…/{name}"})
    if name != container.image.repository:
        raise NameUnknown(f"repository {name} is not served by this token")
    return container


async def manifest(request: web.Request) -> web.Response:
    container = await _container(request)
    reference = request.match_info["reference"]
    manifests = request.app[keys.MANIFESTS]
    if is_digest(reference):
        obj = await manifests.by_digest(container, reference)
    elif TAG_RE.fullmatch(reference):
        obj = await manifests.by_tag(container, reference, parse_accept(request.headers.getall("Accept", [])))
    else:
        raise DigestInvalid(f"invalid manifest reference {reference!r}")
    if request.method == "GET" and obj.media_type in IMAGE_MANIFEST_TYPES:
        _record_pull(request, container)
    return web.Response(body=obj.data, headers=obj.headers)  # aiohttp sends no body for HEAD


def _record_pull(request: web.Request, container: ContainerRequest) -> None:
    """Count an image pull in the background: usage metrics never slow a pull down or fail it."""
    events = request.app.get(keys.EVENTS)
    if events is not None:
        task = asyncio.create_task(events.image_pulled(container, request.remote))
        _background.add(task)
        task.add_done_callback(_pull_recorded)


def _pull_recorded(task: asyncio.Task[None]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not record a pull: %s", task.exception())


async def blob(request: web.Request) -> web.StreamResponse:
    container = await _container(request)
    digest = request.match_info["digest"]
    if not is_digest(digest):
        raise DigestInvalid(f"invalid blob digest {digest!r}")
    source = await request.app[keys.BLOBS].open(container, digest, request.headers.get("Range"), request.method)
    if isinstance(source, RedirectBlob):
        raise web.HTTPTemporaryRedirect(source.location, headers=API_VERSION)
    if isinstance(source, CachedObject):
        return _local_blob(source, request.headers.get("Range"))
    upstream = source.response
    try:
        response = web.StreamResponse(status=upstream.status, headers=API_VERSION)
        for name in _PASSED_BLOB_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        response.headers.setdefault("Docker-Content-Digest", digest)
        if request.method == "HEAD":
            response.content_length = upstream.content_length
            await response.prepare(request)
            return response
        await response.prepare(request)
        try:
            await relay(upstream, request, response, request.app[keys.SETTINGS].upstream_read_timeout)
        except ConnectionResetError:  # the client went away (aiohttp's own reset error is a ClientError too)
            return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status line is sent: all that is left is to cut the connection, so the client sees a short
            # body (and its digest check fails) instead of waiting for bytes that will never come.
            log.warning("upstream %s broke off blob %s: %s", container.image.registry, digest, type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        upstream.release()


_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def _local_blob(obj: CachedObject, range_header: str | None) -> web.Response:
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


async def tags(request: web.Request) -> web.Response:
    container = await _container(request)
    query = {k: v for k, v in request.query.items() if k in ("n", "last")}
    body, link = await request.app[keys.REGISTRY].get_tags(container.image, query)
    headers = {**API_VERSION}
    if link:
        headers["Link"] = link.replace(f"/v2/{container.image.repository}/",
                                       f"/v2/wt/{container.token}/{container.image.repository}/")
    return web.Response(body=body, content_type="application/json", headers=headers)
