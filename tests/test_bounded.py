"""The one bounded cache: least recently used entries go first, and entries expire."""

from __future__ import annotations

import pytest

from wave.bounded import BoundedCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_entry_goes_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_entries_expire_after_their_lifetime() -> None:
    clock = Clock()
    cache: BoundedCache[str, str] = BoundedCache(10, ttl=30, clock=clock)
    cache.put("default", "x")
    cache.put("short", "y", ttl=5)
    clock.now += 5
    assert "short" not in cache
    assert cache.get("default") == "x"
    clock.now += 25
    assert cache.get("default") is None
    assert len(cache) == 0  # an expired entry is dropped when it is read


def test_replacing_an_entry_renews_it() -> None:
    clock = Clock()
    cache: BoundedCache[str, int] = BoundedCache(1, ttl=10, clock=clock)
    cache.put("k", 1)
    clock.now += 9
    cache.put("k", 2)
    clock.now += 9
    assert cache.get("k") == 2
    cache.pop("k")
    cache.pop("k")  # popping a missing key is no error
    assert cache.get("k") is None


def test_a_cache_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError):
        BoundedCache(0)
