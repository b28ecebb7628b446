"""The one protocol every state backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from wave.store.writes import Write

if TYPE_CHECKING:
    from wave.config import Settings


class KeyValueStore(Protocol):
    """Byte values under string keys, with optional expiry (seconds), plus atomic counters.

    Backends raise :class:`wave.errors.Unavailable` when they cannot be reached, so callers fail fast with
    503 instead of hanging.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def put_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store only if no live value exists; True when this call stored it (races have one winner)."""
        ...

    async def delete(self, key: str) -> None: ...

    async def delete_if(self, key: str, value: bytes) -> bool:
        """Delete only when the live value equals ``value``; True when deleted (compare-and-delete: releasing
        a claim never removes the claim someone else took after ours expired)."""
        ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to an integer counter atomically and return the new value (ttl set on first creation)."""
        ...

    async def hincr(self, key: str, field: str, amount: int = 1) -> None:
        """Add to one counter of a group of counters (a hash) atomically."""
        ...

    async def hgetall(self, key: str) -> dict[str, int]:
        """Every counter of a group; empty when the group does not exist."""
        ...

    async def write_all(self, writes: Sequence[Write]) -> None:
        """Every write at once, all or none: one transaction on the embedded store, one pipeline (MULTI/EXEC,
        one round trip) on Redis. A request that writes several keys pays for one store call."""
        ...

    async def ping(self) -> None:
        """Raise Unavailable when the backend cannot serve requests (readiness)."""
        ...

    async def close(self) -> None: ...


async def open_store(settings: Settings) -> KeyValueStore:
    """The backend the settings select: Redis when ``WAVE_REDIS_URL`` is set, else embedded SQLite."""
    if settings.redis_url:
        from wave.store.redis import RedisStore

        return await RedisStore.connect(settings.redis_url)
    from wave.store.embedded import EmbeddedStore

    return await EmbeddedStore.open(settings.state_dir / "wave.db")


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[KeyValueStore]:
    """The state store for the application's lifetime, closed on the way out."""
    store = await open_store(settings)
    try:
        yield store
    finally:
        await store.close()
