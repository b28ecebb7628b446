"""Where the tests find Redis: the machine's own at 127.0.0.1:6379 unless ``WAVE_TEST_REDIS`` names another
server (``redis://127.0.0.1:6390``), so two checkouts can run their suites at once without flushing each
other's databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

SERVER = os.environ.get("WAVE_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")


def database(number: int) -> str:
    return f"{SERVER}/{number}"


@contextmanager
def flushed(number: int) -> Iterator[redis.Redis]:
    """A client of Redis database ``number``, emptied before and after; the test is skipped, naming the
    package, when no Redis answers."""
    client = redis.Redis.from_url(database(number))
    try:
        client.flushdb()
    except redis.ConnectionError:
        client.close()
        pytest.skip(f"no Redis at {SERVER} (apt-get install redis-server)")
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
