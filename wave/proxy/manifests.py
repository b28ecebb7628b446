"""Manifests through a token: resolve a tag upstream once, augment it, and serve the same bytes after.

A token's tag resolves to a :class:`Resolution` (the digests of what wave serves for it), stored as long as
the token lives; the objects themselves are stored by digest. Both can be re-derived from the token's
request at any time, because augmentation is deterministic. Concurrent cold requests share one resolution.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from wave.config import Settings
from wave.errors import ManifestInvalid, ManifestUnknown, RegistryError
from wave.oci import augment
from wave.oci.mediatypes import INDEX_TYPES, is_index
from wave.proxy.cache import CachedObject, ObjectCache
from wave.registry.client import Manifest, RegistryClient
from wave.store import KeyValueStore
from wave.tokens import ContainerRequest

log = logging.getLogger("wave.proxy")

MAX_CONFIG_SIZE = 8 << 20

# Waits for the build behind a token (if any) to finish; raises when it failed.
BuildGate = Callable[[ContainerRequest], Awaitable[None]]


class PlatformUnavailable(RegistryError):
    code = "MANIFEST_UNKNOWN"
    status = 404


@dataclass(frozen=True)
class Resolution:
    """What a token's tag serves: the top manifest, and the platform image manifest inside an index."""

    digest: str
    media_type: str
    image_digest: str | None = None
    image_media_type: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, data: bytes) -> Resolution:
        return cls(**orjson.loads(data))


async def _no_build(request: ContainerRequest) -> None:
    return None


class ManifestService:
    def __init__(self, settings: Settings, client: RegistryClient, store: KeyValueStore, cache: ObjectCache,
                 build_gate: BuildGate = _no_build) -> None:
        self._settings = settings
        self._client = client
        self._store = store
        self._cache = cache
        self._build_gate = build_gate
        self._resolutions: OrderedDict[tuple[str, str], Resolution] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future[Resolution]] = {}
        self.upstream_resolutions = 0  # how many resolutions reached upstream (benchmarks read it)

    # --- serving ------------------------------------------------------------------------------------

    async def by_tag(self, request: ContainerRequest, tag: str, accept: Sequence[str]) -> CachedObject:
        resolution = await self.resolve(request, tag)
        top = await self._object(request, tag, resolution.digest)
        if (accept and resolution.media_type not in accept and resolution.image_digest
                and not INDEX_TYPES.intersection(accept)):
            # The client cannot read an index: serve the image manifest for the token's platform.
            return await self.by_digest(request, resolution.image_digest)
        return top

    async def by_digest(self, request: ContainerRequest, digest: str) -> CachedObject:
        obj = await self._cache.get(digest)
        if obj is not None:
            return obj
        home_tag = request.image.tag
        if request.augments and home_tag and not await self._known(request, home_tag):
            await self.resolve(request, home_tag)  # a cold cache: re-derive what the token serves
            obj = await self._cache.get(digest)
            if obj is not None:
                return obj
        manifest = await self._client.get_manifest(request.image.with_reference(digest))
        obj = CachedObject(manifest.media_type, manifest.data, manifest.digest)
        await self._cache.put(obj, self._ttl(request))
        return obj

    async def _object(self, request: ContainerRequest, tag: str, digest: str) -> CachedObject:
        obj = await self._cache.get(digest)
        if obj is None:  # the store lost the object but kept the resolution: derive both again
            self._forget(request, tag)
            await self._store.delete(self._key(request, tag))
            resolution = await self.resolve(request, tag)
            obj = await self._cache.get(resolution.digest)
            if obj is None:
                raise ManifestUnknown(f"manifest {digest} is no longer available")
        return obj

    # --- resolution ---------------------------------------------------------------------------------

    @staticmethod
    def _key(request: ContainerRequest, tag: str) -> str:
        return f"resolved/{request.token}/{tag}"

    def _forget(self, request: ContainerRequest, tag: str) -> None:
        self._resolutions.pop((request.token, tag), None)

    def _ttl(self, request: ContainerRequest) -> float:
        return max(request.expires - time.time(), 1.0)

    async def _known(self, request: ContainerRequest, tag: str) -> bool:
        if (request.token, tag) in self._resolutions:
            return True
        return await self._store.get(self._key(request, tag)) is not None

    async def resolve(self, request: ContainerRequest, tag: str) -> Resolution:
        key = (request.token, tag)
        hit = self._resolutions.get(key)
        if hit is not None:
            return hit
        pending = self._inflight.get(key)
        if pending is not None:  # joined before the store read, so concurrent cold requests go upstream once
            return await asyncio.shield(pending)
        pending = asyncio.get_running_loop().create_future()
        self._inflight[key] = pending
        try:
            stored = await self._store.get(self._key(request, tag))
            resolution = Resolution.from_json(stored) if stored is not None else \
                await self._resolve_upstream(request, tag)
            self._resolutions[key] = resolution  # before the waiters wake: later requests hit memory
            while len(self._resolutions) > 4096:
                self._resolutions.popitem(last=False)
            pending.set_result(resolution)
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: waiters get it, nobody is warned about it
            raise
        finally:
            del self._inflight[key]
        return resolution

    async def _resolve_upstream(self, request: ContainerRequest, tag: str) -> Resolution:
        await self._build_gate(request)
        self.upstream_resolutions += 1
        ref = request.image.with_reference(tag)
        top = await self._client.get_manifest(ref)
        ttl = self._ttl(request)
        objects: list[augment.Blob] = [augment.Blob(top.media_type, top.data)]
        image: Manifest | None = None
        entry_digest: str | None = None
        if is_index(top.media_type):
            entry_digest = self._platform_entry(request, top)["digest"]
            if request.augments:
                image = await self._client.get_manifest(ref.with_reference(entry_digest))
        elif request.augments:
            image = top
        if image is None:
            resolution = Resolution(top.digest, top.media_type, entry_digest,
                                    None if entry_digest is None else self._entry_type(top, entry_digest))
        else:
            augmented = await self._augment(request, image)
            objects += [augmented.manifest, augmented.config]
            served = augmented.manifest
            if entry_digest is not None:
                served = augment.replace_index_entry(top.data, top.media_type, entry_digest, augmented.manifest)
                objects.append(served)
            resolution = Resolution(served.digest, served.media_type,
                                    augmented.manifest.digest if entry_digest else None,
                                    augmented.manifest.media_type if entry_digest else None)
        for blob in objects:
            await self._cache.put(CachedObject(blob.media_type, blob.data, blob.digest), ttl)
        await self._store.put(self._key(request, tag), resolution.to_json(), ttl=ttl)
        log.info("resolved %s for token %s… -> %s", ref, request.token[:8], resolution.digest)
        return resolution

    def _platform_entry(self, request: ContainerRequest, index: Manifest) -> dict:
        try:
            return augment.select_platform(index.data, request.platform)
        except augment.NoMatchingPlatform as exc:
            raise PlatformUnavailable(str(exc), detail={"available": exc.available}) from None
        except augment.InvalidManifest as exc:
            raise ManifestInvalid(f"upstream index of {request.image}: {exc}") from None

    @staticmethod
    def _entry_type(index: Manifest, digest: str) -> str | None:
        for entry in orjson.loads(index.data).get("manifests") or []:
            if entry.get("digest") == digest:
                return entry.get("mediaType")
        return None

    async def _augment(self, request: ContainerRequest, image: Manifest) -> augment.AugmentedImage:
        try:
            descriptor = augment.config_descriptor(image.data)
            config = await self._client.get_blob(request.image, descriptor["digest"], MAX_CONFIG_SIZE)
            return augment.augment_manifest(image.data, image.media_type, config, request.config)
        except augment.InvalidManifest as exc:
            raise ManifestInvalid(f"cannot augment {request.image}: {exc}") from None
