"""Two wave replicas on one Redis: Platform's pairing socket is open on one, the user's request reaches the
other, which has the socket's replica make its calls (through the store, sealed with WAVE_SECRET_KEY)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.clients import skopeo_inspect
from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.platform import FakePlatform
from tests.support.redis_url import database, flushed
from tests.support.registry import Registry
from wave import keys
from wave.metrics import Window

SHARED = database(12)
SECRET = "a-long-random-operator-secret-for-the-test"


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    with flushed(12) as client:
        yield client


def test_the_replica_without_the_socket_calls_platform_through_the_one_holding_it(
        wave_factory: Any, platform: FakePlatform, basic_registry: Registry, shared_redis: redis.Redis) -> None:
    settings = {"platform_endpoints": (platform.endpoint,), "redis_url": SHARED, "secret_key": SECRET}
    holder, other = wave_factory(**settings), wave_factory(**settings)
    platform.pair(holder.url)
    alice = platform.add_user("alice", "alice@example.org")
    platform.add_credentials(alice, basic_registry.host, REG_USER, REG_PASSWORD, workspace=7)
    body = {"containerImage": basic_registry.ref("library/busybox:latest"), "towerAccessToken": alice.access_token,
            "towerEndpoint": platform.endpoint, "towerWorkspaceId": 7}

    answer = other.submit(body)
    skopeo_inspect(answer["targetImage"])  # every /v2 request on `other` too
    assert platform.direct_calls == []  # nothing reached Platform but through the socket
    assert platform.proxied >= 3  # user-info, credentials, keys
    assert other.app[keys.TUNNELS].relayed >= 3 and holder.app[keys.TUNNELS].relayed == 0
    assert other.app[keys.TUNNELS].proxied == 0
    # usage metrics on the shared Redis count alice and her org, whichever replica served
    events = holder.app[keys.EVENTS]
    deadline = time.monotonic() + 10  # pulls are counted in the background of the replica that served them
    while holder.call(events.counter("pulls", org="example.org")) < 1:
        assert time.monotonic() < deadline, "the pull was never counted for example.org"
        time.sleep(0.05)
    assert holder.call(events.grouped("pulls", "user", Window())) == {"alice@example.org": 1}

    # the store holds no secret in plain text: not the password, not the Platform token, not the private key
    for key in shared_redis.keys("*"):
        kind = shared_redis.type(key)
        value = shared_redis.get(key) if kind == b"string" else str(shared_redis.hgetall(key)).encode() \
            if kind == b"hash" else b""
        for secret in (REG_PASSWORD.encode(), alice.access_token.encode(), b"PRIVATE KEY"):
            assert secret not in (value or b""), f"{key!r} holds a secret in plain text"


def test_a_token_refreshed_on_one_replica_serves_the_other(
        wave_factory: Any, platform: FakePlatform, basic_registry: Registry, shared_redis: redis.Redis) -> None:
    """Platform rotates the refresh token: the second replica must use the pair the first one got, not
    refresh again with the old refresh token (which Platform now refuses)."""
    settings = {"platform_endpoints": (platform.endpoint,), "redis_url": SHARED, "secret_key": SECRET}
    first, second = wave_factory(**settings), wave_factory(**settings)
    platform.pair(first.url)
    alice = platform.add_user("alice", "alice@example.org")
    platform.add_credentials(alice, basic_registry.host, REG_USER, REG_PASSWORD)
    body = {"containerImage": basic_registry.ref("library/busybox:latest"), "towerAccessToken": alice.access_token,
            "towerRefreshToken": alice.refresh_token, "towerEndpoint": platform.endpoint}
    platform.expire(alice)
    first.submit(body)
    assert platform.refreshes == 1
    second.submit(body)  # the same (now stale) pair, as the pipeline's configuration still has it
    assert platform.refreshes == 1
    for key in shared_redis.keys("*refreshed*"):
        assert alice.access_token.encode() not in shared_redis.get(key)  # type: ignore[operator]
