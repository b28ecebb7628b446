"""Objects wave serves, by scope and digest: the shared store, fronted by a small in-process LRU.

Objects are content-addressed and so immutable: a copy in process memory can never be stale, which makes
the warm path of a manifest request a dictionary look-up.

A digest alone does not say who may read an object: a manifest wave fetched from repository B must not be
served through a token for repository A (upstream answers 404 there), nor an object fetched with one user's
credentials to another user. So every object lives in a *scope*:

- :func:`upstream_scope` — objects wave fetched from upstream, per registry, repository and credentials
  (``RegistryClient.scope``: wave's configured credentials today; per-user credentials must give each
  user's credentials their own scope there, and nothing here changes);
- :data:`MADE` — objects wave made (augmented manifests, indexes, configs). They are shared by digest,
  because only a token whose own resolution lists a digest is ever served it (``ManifestService.made_object``)
  and the digest fixes the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wave.bounded import BoundedCache
from wave.store import KeyValueStore

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}  # on every /v2/ response
MADE = "made"  # the scope of what wave made; served only to tokens whose resolution lists the digest


def upstream_scope(client_scope: str) -> str:
    """The scope of objects fetched upstream by ``RegistryClient.scope`` (registry, repository, credentials)."""
    return f"up/{client_scope}"


@dataclass(frozen=True)
class CachedObject:
    media_type: str
    data: bytes
    digest: str
    warning: str | None = None  # a ``Warning`` header: served stale while upstream fails
    # What a response serving this object carries, built once: a warm manifest GET copies it and sends. A plain
    # dict (never mutated): aiohttp copies one into its headers faster than a multidict proxy.
    headers: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        headers = {**API_VERSION, "Docker-Content-Digest": self.digest, "Content-Type": self.media_type,
                   "ETag": f'"{self.digest}"'}
        if self.warning:
            headers["Warning"] = self.warning
        object.__setattr__(self, "headers", headers)


class ObjectCache:
    def __init__(self, store: KeyValueStore, memory_items: int = 2048,
                 on_lookup: Callable[[bool], None] | None = None) -> None:
        self._store = store
        self._memory: BoundedCache[str, CachedObject] = BoundedCache(memory_items)
        self._on_lookup = on_lookup or (lambda hit: None)  # hit/miss accounting (Prometheus)

    def held(self, scope: str, digest: str) -> CachedObject | None:
        """The object if this process holds it in memory (the warm path: no await), else None."""
        hit = self._memory.get(f"object/{scope}/{digest}")
        if hit is not None:
            self._on_lookup(True)
        return hit

    async def get(self, scope: str, digest: str) -> CachedObject | None:
        hit = self.held(scope, digest)
        if hit is not None:
            return hit
        key = f"object/{scope}/{digest}"
        data = await self._store.get(key)
        self._on_lookup(data is not None)
        if data is None:
            return None
        media_type, _, body = data.partition(b"\n")
        obj = CachedObject(media_type.decode(), body, digest)
        self._memory.put(key, obj)
        return obj

    async def put(self, scope: str, obj: CachedObject, ttl: float) -> None:
        key = f"object/{scope}/{obj.digest}"
        await self._store.put(key, obj.media_type.encode() + b"\n" + obj.data, ttl=ttl)
        self._memory.put(key, obj)
