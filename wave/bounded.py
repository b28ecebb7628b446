"""The one bounded in-process cache: least recently used entries go first, entries may expire.

Keys of wave's caches come from what users name (registries, repositories, tokens), so every cache must be
bounded; and every cache evicting the same way means one behaviour to reason about and to test.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``max_items`` entries; ``ttl`` (seconds) is the default lifetime of an entry, None for none."""

    def __init__(self, max_items: int, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_items < 1:
            raise ValueError("a bounded cache holds at least one item")
        self._items: OrderedDict[K, tuple[V, float | None]] = OrderedDict()
        self._max_items = max_items
        self._ttl = ttl
        self._clock = clock

    def get(self, key: K) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` overrides the cache's default lifetime for this entry."""
        lifetime = ttl if ttl is not None else self._ttl
        self._items[key] = (value, None if lifetime is None else self._clock() + lifetime)
        self._items.move_to_end(key)
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._items)
