"""Objects wave serves, by digest: the shared store, fronted by a small in-process LRU.

Objects are content-addressed and so immutable: a copy in process memory can never be stale, which makes
the warm path of a manifest request a dictionary look-up.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from multidict import CIMultiDict, CIMultiDictProxy

from wave.store import KeyValueStore

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}  # on every /v2/ response


@dataclass(frozen=True)
class CachedObject:
    media_type: str
    data: bytes
    digest: str
    warning: str | None = None  # a ``Warning`` header: served stale while upstream fails
    # What a response serving this object carries, built once: a warm manifest GET copies it and sends.
    headers: CIMultiDictProxy[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        headers = CIMultiDict(API_VERSION)
        headers["Docker-Content-Digest"] = self.digest
        headers["Content-Type"] = self.media_type
        headers["ETag"] = f'"{self.digest}"'
        if self.warning:
            headers["Warning"] = self.warning
        object.__setattr__(self, "headers", CIMultiDictProxy(headers))


class ObjectCache:
    def __init__(self, store: KeyValueStore, memory_items: int = 2048,
                 on_lookup: Callable[[bool], None] | None = None) -> None:
        self._store = store
        self._memory: OrderedDict[str, CachedObject] = OrderedDict()
        self._memory_items = memory_items
        self._on_lookup = on_lookup or (lambda hit: None)  # hit/miss accounting (Prometheus)

    async def get(self, digest: str) -> CachedObject | None:
        hit = self._memory.get(digest)
        if hit is not None:
            self._memory.move_to_end(digest)
            self._on_lookup(True)
            return hit
        data = await self._store.get(f"object/{digest}")
        self._on_lookup(data is not None)
        if data is None:
            return None
        media_type, _, body = data.partition(b"\n")
        obj = CachedObject(media_type.decode(), body, digest)
        self._remember(obj)
        return obj

    async def put(self, obj: CachedObject, ttl: float) -> None:
        await self._store.put(f"object/{obj.digest}", obj.media_type.encode() + b"\n" + obj.data, ttl=ttl)
        self._remember(obj)

    def _remember(self, obj: CachedObject) -> None:
        self._memory[obj.digest] = obj
        self._memory.move_to_end(obj.digest)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
