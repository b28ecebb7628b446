"""Manifests through a token: resolve a tag upstream once, augment it, and serve the same bytes after.

A token's tag resolves to a :class:`Resolution` (the digests of what wave serves for it), stored as long as
the token lives; the objects themselves are stored by digest in a scope (``wave.proxy.cache``): upstream's
per registry, repository and credentials, wave's own served only to the token whose resolution made them.
Both can be re-derived from the token's request at any time, because augmentation is deterministic.
Concurrent cold requests share one resolution.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from wave.bounded import BoundedCache
from wave.config import Settings
from wave.errors import ManifestInvalid, ManifestUnknown, RegistryError
from wave.oci import augment
from wave.oci.mediatypes import INDEX_TYPES, is_index
from wave.proxy.cache import MADE, CachedObject, ObjectCache, upstream_scope
from wave.registry.auth import UpstreamAuth
from wave.registry.client import Manifest, RegistryClient
from wave.store import KeyValueStore
from wave.tokens import ContainerRequest

log = logging.getLogger("wave.proxy")

MAX_CONFIG_SIZE = 8 << 20
STALE_RETRY = 30.0  # seconds a resolution made from stale upstream answers is served before upstream is asked again
STALE_WARNING = '110 - "Response is Stale: registry {registry} is failing; this is the last manifest it served"'
MAX_RESOLUTIONS = 4096  # in process memory; the store keeps them all

# Waits for the build behind a token (if any) to finish; raises when it failed.
BuildGate = Callable[[ContainerRequest], Awaitable[None]]
# What a token presents upstream: its user's own credentials (Seqera Platform), or None for wave's.
AuthOf = Callable[[ContainerRequest], Awaitable[UpstreamAuth | None]]


class PlatformUnavailable(RegistryError):
    code = "MANIFEST_UNKNOWN"
    status = 404


@dataclass(frozen=True)
class Resolution:
    """What a token's tag serves: the top manifest, and the platform image manifest inside an index."""

    digest: str
    media_type: str
    image_digest: str | None = None
    created: tuple[str, ...] = ()  # digests of the objects wave made for it (index, manifest, config)
    source: str | None = None  # upstream's digest for the tag when it was resolved
    stale: bool = False  # resolved from upstream's last good answers while it failed: retried soon

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, data: bytes) -> Resolution:
        record = orjson.loads(data)
        record["created"] = tuple(record.get("created") or ())
        return cls(**record)


def _needs_image_manifest(resolution: Resolution, accept: Sequence[str]) -> bool:
    """The client cannot read the index a tag resolved to: it gets the image manifest for the token's platform."""
    return bool(accept and resolution.media_type not in accept and resolution.image_digest
                and not INDEX_TYPES.intersection(accept))


async def _static_auth(request: ContainerRequest) -> UpstreamAuth | None:
    return None


class ManifestService:
    def __init__(self, settings: Settings, client: RegistryClient, store: KeyValueStore, cache: ObjectCache,
                 build_gate: BuildGate, auth_of: AuthOf = _static_auth) -> None:
        self._settings = settings
        self.auth_of = auth_of
        self._client = client
        self._store = store
        self._cache = cache
        self._build_gate = build_gate
        self._resolutions: BoundedCache[tuple[str, str], Resolution] = BoundedCache(MAX_RESOLUTIONS)
        self._inflight: dict[tuple[str, str], asyncio.Future[Resolution]] = {}
        self._listed: BoundedCache[tuple[str, str], frozenset[str]] = BoundedCache(MAX_RESOLUTIONS)
        # (token, digest) -> tag, for each object wave made for a resolution in memory: which objects a
        # token may be served, without a store look-up for every upstream blob
        self._made: BoundedCache[tuple[str, str], str] = BoundedCache(4 * MAX_RESOLUTIONS)
        self.upstream_resolutions = 0  # how many resolutions reached upstream (benchmarks read it)

    # --- serving ------------------------------------------------------------------------------------

    def held_for_tag(self, request: ContainerRequest, tag: str, accept: Sequence[str]) -> CachedObject | None:
        """What :meth:`by_tag` answers, when this process holds all of it in memory (a resolution, and the
        manifest wave made for it): the warm path of every pull, without an await. None: ask :meth:`by_tag`."""
        resolution = self._resolutions.get((request.token, tag))
        if resolution is None or resolution.stale or resolution.digest not in resolution.created:
            return None
        if _needs_image_manifest(resolution, accept):
            return None
        return self._cache.held(MADE, resolution.digest)

    async def by_tag(self, request: ContainerRequest, tag: str, accept: Sequence[str]) -> CachedObject:
        resolution = await self.resolve(request, tag)
        top = await self._object(request, tag, resolution)
        if _needs_image_manifest(resolution, accept):
            assert resolution.image_digest is not None
            top = await self.by_digest(request, resolution.image_digest)
        if resolution.stale:
            return replace(top, warning=STALE_WARNING.format(registry=request.image.registry))
        return top

    async def by_digest(self, request: ContainerRequest, digest: str) -> CachedObject:
        """A manifest wave made for this token, else upstream's in the token's repository (cached in the
        scope of that repository and credentials: never another repository's object of the same digest)."""
        obj = await self.made_object(request, digest)
        if obj is not None:
            return obj
        scope = await self.upstream_scope(request)
        obj = await self._cache.get(scope, digest)
        if obj is not None:
            return obj
        manifest = await self._client.get_manifest(request.image.with_reference(digest),
                                                   auth=await self.auth_of(request))
        obj = CachedObject(manifest.media_type, manifest.data, manifest.digest)
        await self._cache.put(scope, obj, self._settings.token_ttl)
        return obj

    async def upstream_scope(self, request: ContainerRequest) -> str:
        """Where upstream's objects for this token are cached: its registry, repository and credentials (the
        token's user's, or wave's)."""
        return upstream_scope(self._client.scope(request.image, await self.auth_of(request)))

    async def made_object(self, request: ContainerRequest, digest: str) -> CachedObject | None:
        """An object wave made for this token's request (index, manifest or config), derived again when the
        cache lost it; None for anything else (upstream's own objects, what wave made for other tokens)."""
        if not request.augments:
            return None
        tag = self._made.get((request.token, digest))
        if tag is None:  # not in memory: the token's own tag, resolved (from memory, the store or upstream)
            tag = request.image.tag
            if not tag or digest not in (await self.resolve(request, tag)).created:
                return None
        obj = await self._cache.get(MADE, digest)
        if obj is None:
            await self._rederive(request, tag)
            obj = await self._cache.get(MADE, digest)
        return obj

    async def _object(self, request: ContainerRequest, tag: str, resolution: Resolution) -> CachedObject:
        digest = resolution.digest
        scope = MADE if digest in resolution.created else await self.upstream_scope(request)
        obj = await self._cache.get(scope, digest)
        if obj is None:  # the store lost the object but kept the resolution: derive both again
            resolution = await self._rederive(request, tag)
            scope = MADE if resolution.digest in resolution.created else await self.upstream_scope(request)
            obj = await self._cache.get(scope, resolution.digest)
            if obj is None:
                raise ManifestUnknown(f"manifest {digest} is no longer available")
        return obj

    async def _rederive(self, request: ContainerRequest, tag: str) -> Resolution:
        self._resolutions.pop((request.token, tag))
        await self._store.delete(self._key(request, tag))
        return await self.resolve(request, tag)

    async def listed_blobs(self, request: ContainerRequest) -> frozenset[str]:
        """The blobs the manifests resolved for this token list (layers and configs, of every image of an
        index that wave holds): upstream showed them to the token's repository, with its credentials. Empty
        until the token's tag is resolved; computed once per token and resolution."""
        resolution = await self.resolution_of(request)
        if resolution is None:
            return frozenset()
        memo_key = (request.token, resolution.digest)
        listed = self._listed.get(memo_key)
        if listed is not None:
            return listed
        blobs: set[str] = set()
        manifests = [d for d in (resolution.source, resolution.digest, resolution.image_digest) if d]
        seen: set[str] = set()
        while manifests:
            digest = manifests.pop()
            if digest in seen:
                continue
            seen.add(digest)
            scope = MADE if digest in resolution.created else await self.upstream_scope(request)
            obj = await self._cache.get(scope, digest)
            if obj is not None:
                children, layers = _references(obj.data)
                manifests += children
                blobs |= layers
        listed = frozenset(blobs)
        self._listed.put(memo_key, listed)
        return listed

    # --- resolution ---------------------------------------------------------------------------------

    @staticmethod
    def _key(request: ContainerRequest, tag: str) -> str:
        return f"resolved/{request.token}/{tag}"

    async def resolution_of(self, request: ContainerRequest) -> Resolution | None:
        """What the token's own tag resolved to, if a client pulled it already (wave resolves on first pull)."""
        tag = request.image.tag
        if not tag:
            return None
        hit = self._resolutions.get((request.token, tag))
        if hit is not None:
            return hit
        stored = await self._store.get(self._key(request, tag))
        return Resolution.from_json(stored) if stored is not None else None

    async def resolve(self, request: ContainerRequest, tag: str) -> Resolution:
        """What the token serves for a tag: from memory, the store, or upstream — once for concurrent callers.

        The work runs in its own task, joined before the store read: concurrent cold requests reach upstream
        once, and a caller that goes away (a client hanging up) never cancels it for the others."""
        key = (request.token, tag)
        hit = self._resolutions.get(key)
        if hit is not None:
            return hit
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(request, tag))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, request: ContainerRequest, tag: str) -> Resolution:
        stored = await self._store.get(self._key(request, tag))
        resolution = Resolution.from_json(stored) if stored is not None else await self._resolve_upstream(request, tag)
        # before the waiters wake, so later requests hit memory; one made from stale upstream answers is kept
        # STALE_RETRY seconds only, then upstream is asked again
        self._resolutions.put((request.token, tag), resolution, ttl=STALE_RETRY if resolution.stale else None)
        for digest in resolution.created:
            self._made.put((request.token, digest), tag)
        return resolution

    async def _resolve_upstream(self, request: ContainerRequest, tag: str) -> Resolution:
        await self._build_gate(request)
        self.upstream_resolutions += 1
        ref = request.image.with_reference(tag)
        auth = await self.auth_of(request)
        top = await self._client.get_manifest(ref, auth=auth)
        objects: list[augment.Blob] = [augment.Blob(top.media_type, top.data)]
        image: Manifest | None = None
        entry_digest: str | None = None
        if is_index(top.media_type):
            entry_digest = self._platform_entry(request, top)["digest"]
            if request.augments:
                image = await self._client.get_manifest(ref.with_reference(entry_digest), auth=auth)
        elif request.augments:
            image = top
        stale = top.stale or (image is not None and image.stale)
        if image is None:
            resolution = Resolution(top.digest, top.media_type, entry_digest, source=top.digest, stale=stale)
        else:
            augmented = await self._augment(request, image, auth)
            objects += [augmented.manifest, augmented.config]
            served = augmented.manifest
            if entry_digest is not None:
                served = augment.replace_index_entry(top.data, top.media_type, entry_digest, augmented.manifest)
                objects.append(served)
            resolution = Resolution(served.digest, served.media_type,
                                    augmented.manifest.digest if entry_digest else None,
                                    tuple(blob.digest for blob in objects[1:]), top.digest, stale)
        # Objects live as long as any token can (never shortened by a token with less time left); the
        # resolution lives as long as its token. Upstream's top object goes in its repository's scope.
        ttl = self._settings.token_ttl
        upstream_object = CachedObject(top.media_type, top.data, top.digest)
        await self._cache.put(await self.upstream_scope(request), upstream_object, ttl)
        for blob in objects[1:]:
            await self._cache.put(MADE, CachedObject(blob.media_type, blob.data, blob.digest), ttl)
        await self._store.put(self._key(request, tag), resolution.to_json(),
                              ttl=STALE_RETRY if stale else max(request.expires - time.time(), 1))
        log.info("resolved %s for token %s… -> %s", ref, request.token[:8], resolution.digest)
        return resolution

    def _platform_entry(self, request: ContainerRequest, index: Manifest) -> dict[str, Any]:
        try:
            return augment.select_platform(index.data, request.platform)
        except augment.NoMatchingPlatform as exc:
            raise PlatformUnavailable(str(exc), detail={"available": exc.available}) from None
        except augment.InvalidManifest as exc:
            raise ManifestInvalid(f"upstream index of {request.image}: {exc}") from None

    async def _augment(self, request: ContainerRequest, image: Manifest,
                       auth: UpstreamAuth | None) -> augment.AugmentedImage:
        try:
            descriptor = augment.config_descriptor(image.data)
            config = await self._client.get_blob(request.image, descriptor["digest"], MAX_CONFIG_SIZE, auth=auth)
            return augment.augment_manifest(image.data, image.media_type, config, request.config)
        except augment.InvalidManifest as exc:
            raise ManifestInvalid(f"cannot augment {request.image}: {exc}") from None


def _references(data: bytes) -> tuple[list[str], set[str]]:
    """The manifests an index lists, and the blobs (config, layers) an image manifest lists."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return [], set()
    if not isinstance(document, dict):
        return [], set()
    children = [entry["digest"] for entry in document.get("manifests") or () if isinstance(entry, dict)
                and isinstance(entry.get("digest"), str)]
    blobs = {entry["digest"] for entry in [document.get("config"), *(document.get("layers") or ())]
             if isinstance(entry, dict) and isinstance(entry.get("digest"), str)}
    return children, blobs
