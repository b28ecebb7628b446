"""Blobs through a token: injected layers, objects wave made for this token, the blob cache, or upstream's
bytes streamed through.

The order is the token's: an injected layer (the request names it), then an object wave made for this
token's request (a config; known from the token's resolution in memory), then the blob cache (only what this
repository is known to hold), then upstream in the token's own repository. Nothing is looked up by digest
alone, so a token never serves what wave made or fetched for another token or repository, and an upstream
blob costs no object store look-up before it streams. Where an upstream redirect sends the client is checked
against the address policy (``wave.http``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import aiohttp
from yarl import URL

from wave.bounded import BoundedCache
from wave.errors import BlobUnknown, Denied, RegistryError
from wave.http import AddressGuard, UrlRefused
from wave.oci.models import Layer
from wave.proxy.blobcache import BlobCache, Fill, FillFailed
from wave.proxy.cache import CachedObject
from wave.proxy.manifests import ManifestService
from wave.registry.client import RegistryClient
from wave.tokens import ContainerRequest, TokenStore

INLINE_LAYER_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class RedirectBlob:
    location: str


@dataclass(frozen=True)
class UpstreamBlob:
    """An unread upstream response: the handler streams it and releases it."""

    response: aiohttp.ClientResponse


@dataclass(frozen=True)
class CachedFile:
    """A blob in the directory cache: sent with sendfile (Range and HEAD included)."""

    path: str
    size: int
    digest: str


@dataclass(frozen=True)
class CachedHead:
    """A HEAD of a blob in the S3 cache: answered here (a signed URL is good for GET only)."""

    size: int
    digest: str


@dataclass(frozen=True)
class FillingBlob:
    """A blob arriving in the cache: the handler sends the spool file as it grows, and closes ``reader``."""

    fill: Fill
    reader: BinaryIO


# bytes wave holds, a redirect, upstream's response, or the blob cache's
BlobSource = CachedObject | RedirectBlob | UpstreamBlob | CachedFile | CachedHead | FillingBlob
CONFIRMED_FOR = 600.0  # seconds a repository's HEAD-confirmed blob is taken as still there
CONFIRMED_ITEMS = 65536


class BlobService:
    def __init__(self, client: RegistryClient, manifests: ManifestService, tokens: TokenStore,
                 guard: AddressGuard, blob_cache: BlobCache | None = None) -> None:
        self._client = client
        self._manifests = manifests
        self._tokens = tokens
        self._guard = guard  # where an upstream redirect may send the client
        self._blobs = blob_cache
        self._confirmed: BoundedCache[tuple[str, str], bool] = BoundedCache(CONFIRMED_ITEMS, ttl=CONFIRMED_FOR)

    async def open(self, request: ContainerRequest, digest: str, range_header: str | None,
                   method: str) -> BlobSource:
        layer = _injected_layer(request, digest)
        if layer is not None:
            if not layer.is_inline:
                return RedirectBlob(layer.location)  # checked when the token was issued
            data = await self._tokens.layer(digest)  # stored when the token was issued, as long as it lives
            if data is None:
                raise BlobUnknown(f"inline layer {digest} is no longer available; request a new token")
            return CachedObject(INLINE_LAYER_TYPE, data, digest)
        made = await self._manifests.made_object(request, digest)  # a config wave made for this token
        if made is not None:
            return made
        if self._blobs is not None:
            cached = await self._from_cache(self._blobs, request, digest, range_header, method)
            if cached is not None:
                return cached
        auth = await self._manifests.auth_of(request)  # the token's user's credentials, or wave's
        response = await self._client.open_blob(request.image, digest, range_header, method, auth=auth)
        return await self._source(request, digest, response)

    async def _from_cache(self, blobs: BlobCache, request: ContainerRequest, digest: str, range_header: str | None,
                          method: str) -> BlobSource | None:
        """The blob from the cache, or arriving into it; None to go upstream as without a cache."""
        auth = await self._manifests.auth_of(request)  # the token's user's credentials, or wave's
        for _ in range(3):  # a fill that ends while we look moves its file: look again
            stored = await blobs.find(digest, signed=method == "GET")
            if stored is not None:
                if not await self.may_serve(request, digest):
                    return None  # not known to be this repository's: upstream decides
                blobs.count("hit", stored.size)
                if stored.path is not None:
                    return CachedFile(str(stored.path), stored.size, digest)
                if method == "HEAD":
                    return CachedHead(stored.size, digest)
                assert stored.url is not None
                return RedirectBlob(stored.url)
            if method != "GET" or range_header:
                return None  # parts and HEADs of a blob not cached yet: upstream answers them
            scope = self._client.scope(request.image, auth)
            got = await blobs.fill_or_join(
                digest, scope, lambda: self._client.open_blob(request.image, digest, None, method, follow=True,
                                                              auth=auth),
                lambda: self._client.blob_size(request.image, digest, auth=auth))
            if isinstance(got, aiohttp.ClientResponse):
                return await self._source(request, digest, got)
            fill = got
            if fill.scope != scope and not await self.may_serve(request, digest):
                return None  # another repository's fill: this one is not known to hold the blob
            try:
                return FillingBlob(fill, await fill.open_reader())
            except (FileNotFoundError, FillFailed):
                continue
        return None

    async def may_serve(self, request: ContainerRequest, digest: str) -> bool:
        """Whether the token's repository, with its credentials, is known to hold ``digest``: a manifest
        resolved for the token lists it, or upstream confirmed it (a HEAD, remembered a few minutes)."""
        if digest in await self._manifests.listed_blobs(request):
            return True
        auth = await self._manifests.auth_of(request)
        scope = self._client.scope(request.image, auth)
        if (scope, digest) in self._confirmed:
            return True
        try:
            exists = await self._client.blob_exists(request.image, digest, auth=auth)
        except RegistryError:  # upstream down, rate limiting, denying: nothing is confirmed
            return False
        if exists:
            self._confirm(scope, digest)
        return exists

    def _confirm(self, scope: str, digest: str) -> None:
        self._confirmed.put((scope, digest), True)


    async def _source(self, request: ContainerRequest, digest: str, response: aiohttp.ClientResponse) -> BlobSource:
        """Upstream's answer: its bytes, or its redirect — which the client follows, so it must be http(s)
        and not lead to an internal address unless trusted (else an OCI error that says why)."""
        if response.status not in (301, 302, 303, 307, 308):
            return UpstreamBlob(response)
        location = str(response.url.join(URL(response.headers.get("Location", ""))))
        response.release()
        try:
            await self._guard.check_url(location)
        except UrlRefused as exc:
            raise Denied(f"registry {request.image.registry} redirected blob {digest} to a URL that {exc}",
                         detail={"digest": digest}) from None
        return RedirectBlob(location)


def _injected_layer(request: ContainerRequest, digest: str) -> Layer | None:
    return next((layer for layer in request.config.layers if layer.gzip_digest == digest), None)
