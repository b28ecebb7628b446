"""``/v2/`` handlers: parse, call a service, render. Every response carries the distribution headers."""

from __future__ import annotations

from aiohttp import web

from wave import keys
from wave.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestUnknown,
    NameUnknown,
    UnsupportedOperation,
    UpstreamUnavailable,
)
from wave.limits import caller_identity, user_key
from wave.oci.mediatypes import IMAGE_MANIFEST_TYPES, parse_accept
from wave.oci.reference import reference_kind
from wave.oci.tags import InvalidTagList, tag_page
from wave.proxy.blobs import CachedFile, CachedHead, FillingBlob, RedirectBlob
from wave.proxy.cache import API_VERSION, CachedObject
from wave.proxy.streaming import (
    send_cached_file,
    send_cached_head,
    send_filling_blob,
    send_local_blob,
    send_upstream_blob,
)
from wave.redact import redact_path
from wave.tokens import ContainerRequest


async def ping(request: web.Request) -> web.Response:
    return web.Response(status=200, content_type="application/json", body=b"{}", headers=API_VERSION)


async def unknown_route(request: web.Request) -> web.Response:
    """Every ``/v2`` path no route serves: 405 with ``Allow`` when another method would be served (a push to a
    read-only proxy), else 404 — both as OCI errors, as every ``/v2`` route answers them."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource and resource.canonical.startswith("/v2/"):
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise UnsupportedOperation(f"{request.method} is not supported: wave serves pulls only",
                                   headers={"Allow": ", ".join(sorted(allowed))})
    raise NameUnknown(f"no such /v2 endpoint: {redact_path(request.path)[:200]}")


async def read_only(request: web.Request) -> web.Response:
    """The push API's upload endpoints: a resource that allows no method here (an empty ``Allow``, RFC 9110)."""
    raise UnsupportedOperation("blob uploads are not supported: wave serves pulls only", headers={"Allow": ""})


async def _container(request: web.Request) -> ContainerRequest:
    """The token's request, if the token is live and the path names its repository."""
    match = request.match_info
    token, name = match["token"], match["name"]
    tokens = request.app[keys.TOKENS]
    container = tokens.known(token) or await tokens.get(token)
    if container is None:
        raise NameUnknown("unknown or expired wave token", detail={"name": f"wt/{token[:8]}…/{name}"})
    if name != container.image.repository:
        raise NameUnknown(f"repository {name} is not served by this token")
    return container


async def manifest(request: web.Request) -> web.Response:
    container = await _container(request)
    reference, app = request.match_info["reference"], request.app
    kind = reference_kind(reference)
    if kind == "digest":
        obj = await app[keys.MANIFESTS].by_digest(container, reference)
    elif kind == "tag":
        limits = app[keys.LIMITS]
        if limits.pulls_limited and request.method == "GET":  # a pull starts here; off costs nothing
            caller = caller_identity(request.get(keys.CLIENT_IP, request.remote), user_key(container.identity))
            await limits.count("pulls", caller)
        accept, manifests = parse_accept(tuple(request.headers.getall("Accept", ()))), app[keys.MANIFESTS]
        obj = manifests.held_for_tag(container, reference, accept) or await manifests.by_tag(container, reference,
                                                                                             accept)
    elif kind == "bad-digest":
        raise DigestInvalid(f"invalid digest {reference[:200]!r}: expected algorithm:hex, e.g. sha256:<64 hex>")
    else:
        raise ManifestUnknown(f"manifest {reference[:200]!r} unknown: a reference is a digest or a tag")
    if obj.media_type in IMAGE_MANIFEST_TYPES and request.method == "GET":
        events = app.get(keys.EVENTS)
        if events is not None:
            events.count_pull(container)
    return web.Response(body=obj.data, headers=obj.headers)  # aiohttp sends no body for HEAD


async def blob(request: web.Request) -> web.StreamResponse:
    container = await _container(request)
    digest = request.match_info["digest"]
    kind = reference_kind(digest)
    if kind == "bad-digest":
        raise DigestInvalid(f"invalid blob digest {digest[:200]!r}: expected algorithm:hex, e.g. sha256:<64 hex>")
    if kind != "digest":
        raise BlobUnknown(f"blob {digest[:200]!r} unknown: blobs are named by their digest")
    source = await request.app[keys.BLOBS].open(container, digest, request.headers.get("Range"), request.method)
    if isinstance(source, RedirectBlob):
        raise web.HTTPTemporaryRedirect(source.location, headers=API_VERSION)
    if isinstance(source, CachedObject):
        return send_local_blob(source, request.headers.get("Range"))
    if isinstance(source, CachedFile):
        return await send_cached_file(request, source.path, source.digest)
    if isinstance(source, FillingBlob):
        return await send_filling_blob(request, source.fill, source.reader)
    if isinstance(source, CachedHead):
        return send_cached_head(source.size, source.digest)
    settings = request.app[keys.SETTINGS]
    return await send_upstream_blob(request, source.response, digest, settings.upstream_read_timeout,
                                    container.image.registry, min_rate=settings.upstream_min_rate,
                                    rate_window=settings.upstream_rate_window)


async def tags(request: web.Request) -> web.Response:
    container = await _container(request)
    n_text, last = request.query.get("n"), request.query.get("last")
    n = int(n_text) if n_text is not None and n_text.isdigit() else None  # anything else: no limit
    query = {k: v for k, v in (("n", str(n) if n is not None else None), ("last", last)) if v is not None}
    body, link = await request.app[keys.REGISTRY].get_tags(container.image, query)
    try:
        page = tag_page(body, link, f"wt/{container.token}/{container.image.repository}", n, last)
    except InvalidTagList as exc:
        raise UpstreamUnavailable(f"registry {container.image.registry}: {exc}") from None
    headers = {**API_VERSION, **({"Link": page.link} if page.link else {})}
    return web.Response(body=page.body, content_type="application/json", headers=headers)
