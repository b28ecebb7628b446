"""One store suite, two backends: the embedded SQLite store and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.redis_url import database, flushed
from wave.errors import Unavailable
from wave.store import KeyValueStore
from wave.store.embedded import EmbeddedStore
from wave.store.redis import RedisStore

REDIS_TEST_URL = database(14)
SHARED_REDIS = database(15)  # what several wave replicas share in a test


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


@pytest.fixture
def shared_redis() -> Iterator[str]:
    """A Redis database that several wave replicas share, flushed before and after."""
    with flushed(15):
        yield SHARED_REDIS
