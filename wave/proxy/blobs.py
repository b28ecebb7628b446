"""Blobs through a token: objects wave made, injected layers, or upstream's bytes streamed through."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from wave.oci.layers import inline_bytes
from wave.oci.models import Layer
from wave.proxy.cache import CachedObject, ObjectCache
from wave.proxy.manifests import ManifestService
from wave.registry.client import RegistryClient
from wave.tokens import ContainerRequest

LAYER_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class LocalBlob:
    """Bytes wave holds (a config it wrote, an inline layer)."""

    digest: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class RedirectBlob:
    location: str


@dataclass(frozen=True)
class UpstreamBlob:
    """An unread upstream response: the handler streams it and releases it."""

    response: aiohttp.ClientResponse


BlobSource = LocalBlob | RedirectBlob | UpstreamBlob


class BlobService:
    def __init__(self, client: RegistryClient, cache: ObjectCache, manifests: ManifestService) -> None:
        self._client = client
        self._cache = cache
        self._manifests = manifests

    async def open(self, request: ContainerRequest, digest: str, range_header: str | None,
                   method: str) -> BlobSource:
        local = await self._local(request, digest)
        if local is not None:
            return local
        layer = _injected_layer(request, digest)
        if layer is not None:
            if layer.is_inline:
                return LocalBlob(digest, LAYER_MEDIA_TYPE, inline_bytes(layer.location))
            return RedirectBlob(layer.location)
        if request.augments and request.image.tag:
            # A config wave made may have expired with the cache: re-derive it, then look again.
            before = self._manifests.upstream_resolutions
            await self._manifests.resolve(request, request.image.tag)
            if self._manifests.upstream_resolutions != before:
                local = await self._local(request, digest)
                if local is not None:
                    return local
        response = await self._client.open_blob(request.image, digest, range_header, method)
        if response.status in (301, 302, 303, 307, 308):
            location = response.headers.get("Location", "")
            response.release()
            return RedirectBlob(str(response.url.join(aiohttp.client.URL(location))))
        return UpstreamBlob(response)

    async def _local(self, request: ContainerRequest, digest: str) -> LocalBlob | None:
        obj: CachedObject | None = await self._cache.get(digest)
        if obj is None:
            return None
        return LocalBlob(digest, obj.media_type, obj.data)


def _injected_layer(request: ContainerRequest, digest: str) -> Layer | None:
    return next((layer for layer in request.config.layers if layer.gzip_digest == digest), None)
