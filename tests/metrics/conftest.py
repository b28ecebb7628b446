"""Fixtures for usage metrics and operations tests: both store backends, and wave apps with metrics wired.

Why: the metrics must count the same on the embedded store and on Redis (the real one, database 13, flushed
before and after each test), so every store-backed test runs on both.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.support.redis_url import database
from tests.support.registry import basic_auth
from wave.config import Settings, load_settings
from wave.store import KeyValueStore
from wave.store.embedded import EmbeddedStore
from wave.store.redis import RedisStore

REDIS_URL = database(13)
USER, PASSWORD = "operator", "pässword: with colon"
ACCOUNTS = {USER: hashlib.sha256(PASSWORD.encode()).hexdigest()}
AUTH = {"Authorization": basic_auth(USER, PASSWORD)}
BACKENDS = ["embedded", "redis"]


async def _flush_redis() -> None:
    """Empty database 13, or skip the test when no Redis answers on this machine."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.flushdb()
    except (RedisError, OSError) as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyValueStore]:
    """An open store of each backend, empty."""
    opened: KeyValueStore
    if request.param == "redis":
        await _flush_redis()
        opened = await RedisStore.connect(REDIS_URL)
    else:
        opened = await EmbeddedStore.open(tmp_path / "wave.db")
    try:
        yield opened
    finally:
        await opened.close()
        if request.param == "redis":
            await _flush_redis()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """Settings overrides selecting each backend (Redis: database 13, emptied before and after)."""
    if request.param == "redis":
        await _flush_redis()
        yield {"redis_url": REDIS_URL}
        await _flush_redis()
    else:
        yield {}


@pytest.fixture
def settings(backend: dict[str, Any], tmp_path: Path) -> Settings:
    """Settings of a fresh wave on each backend, with one metrics account (USER/PASSWORD)."""
    return load_settings(environ={}, state_dir=tmp_path / "state", metrics_accounts=ACCOUNTS, **backend)
