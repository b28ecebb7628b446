"""Blobs through a token: objects wave made, injected layers, or upstream's bytes streamed through."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from yarl import URL

from wave.errors import BlobUnknown
from wave.oci.models import Layer
from wave.proxy.cache import CachedObject, ObjectCache
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


BlobSource = CachedObject | RedirectBlob | UpstreamBlob  # bytes wave holds, a redirect, or upstream's


class BlobService:
    def __init__(self, client: RegistryClient, cache: ObjectCache, manifests: ManifestService,
                 tokens: TokenStore) -> None:
        self._client = client
        self._cache = cache
        self._manifests = manifests
        self._tokens = tokens

    async def open(self, request: ContainerRequest, digest: str, range_header: str | None,
                   method: str) -> BlobSource:
        local = await self._cache.get(digest)  # a config wave made
        if local is not None:
            return local
        layer = _injected_layer(request, digest)
        if layer is not None:
            if not layer.is_inline:
                return RedirectBlob(layer.location)
            data = await self._tokens.layer(digest)  # stored when the token was issued, as long as it lives
            if data is None:
                raise BlobUnknown(f"inline layer {digest} is no longer available; request a new token")
            return CachedObject(INLINE_LAYER_TYPE, data, digest)
        made = await self._manifests.made_object(request, digest)  # a config wave made, re-derived
        if made is not None:
            return made
        response = await self._client.open_blob(request.image, digest, range_header, method)
        if response.status in (301, 302, 303, 307, 308):
            location = response.headers.get("Location", "")
            response.release()
            return RedirectBlob(str(response.url.join(URL(location))))
        return UpstreamBlob(response)


def _injected_layer(request: ContainerRequest, digest: str) -> Layer | None:
    return next((layer for layer in request.config.layers if layer.gzip_digest == digest), None)
