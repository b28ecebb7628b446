"""One store suite, two backends: the embedded SQLite store and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wave.errors import Unavailable
from wave.store import KeyValueStore
from wave.store.embedded import EmbeddedStore
from wave.store.redis import RedisStore

REDIS_TEST_URL = "redis://127.0.0.1:6379/14"


async def _flushed_redis() -> RedisStore:
    try:
        store = await RedisStore.connect(REDIS_TEST_URL)
    except Unavailable as exc:
        pytest.skip(f"no Redis at {REDIS_TEST_URL} (apt-get install redis-server): {exc}")
    await store._redis.flushdb()
    return store


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyValueStore]:
    backend: KeyValueStore
    if request.param == "embedded":
        backend = await EmbeddedStore.open(tmp_path / "wave.db")
    else:
        backend = await _flushed_redis()
    yield backend
    if isinstance(backend, RedisStore):
        await backend._redis.flushdb()
    await backend.close()
