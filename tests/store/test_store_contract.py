"""What every state backend promises; run against the embedded store and Redis alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from wave.errors import Unavailable
from wave.store import HIncr, Incr, KeyValueStore, Put
from wave.store.embedded import EmbeddedStore


async def test_values_round_trip_and_missing_keys_are_none(store: KeyValueStore) -> None:
    await store.put("a/1", b"\x00binary\xff")
    assert await store.get("a/1") == b"\x00binary\xff"
    assert await store.get("a/2") is None
    await store.put("a/1", b"replaced")
    assert await store.get("a/1") == b"replaced"
    await store.delete("a/1")
    assert await store.get("a/1") is None


async def test_values_expire(store: KeyValueStore) -> None:
    await store.put("short", b"x", ttl=0.05)
    await store.put("long", b"y", ttl=60)
    deadline = time.monotonic() + 5
    while await store.get("short") is not None:
        assert time.monotonic() < deadline, "value did not expire"
        await asyncio.sleep(0.02)
    assert await store.get("long") == b"y"


async def test_put_if_absent_has_exactly_one_winner(store: KeyValueStore) -> None:
    results = await asyncio.gather(*(store.put_if_absent("build/lock", str(i).encode(), ttl=60) for i in range(20)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await store.get("build/lock") == str(winner).encode()


async def test_put_if_absent_succeeds_again_once_the_value_expired(store: KeyValueStore) -> None:
    assert await store.put_if_absent("lock", b"first", ttl=0.05)
    deadline = time.monotonic() + 5
    while not await store.put_if_absent("lock", b"second", ttl=60):
        assert time.monotonic() < deadline, "expired lock was never released"
        await asyncio.sleep(0.02)
    assert await store.get("lock") == b"second"


async def test_counters_are_atomic(store: KeyValueStore) -> None:
    values = await asyncio.gather(*(store.incr("counter/x") for _ in range(50)))
    assert sorted(values) == list(range(1, 51))
    assert await store.incr("counter/x", 10) == 60


async def test_counter_groups(store: KeyValueStore) -> None:
    assert await store.hgetall("pulls/day") == {}
    await asyncio.gather(*(store.hincr("pulls/day", "10.0.0.1") for _ in range(3)))
    await store.hincr("pulls/day", "10.0.0.2", 5)
    assert await store.hgetall("pulls/day") == {"10.0.0.1": 3, "10.0.0.2": 5}


async def test_ping_answers_when_the_backend_is_up(store: KeyValueStore) -> None:
    await store.ping()


async def test_embedded_state_survives_reopening(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = await EmbeddedStore.open(tmp_path / "wave.db")
    await first.put("token/abc", b"request", ttl=3600)
    await first.incr("builds/n")
    await first.close()
    second = await EmbeddedStore.open(tmp_path / "wave.db")
    assert await second.get("token/abc") == b"request"
    assert await second.incr("builds/n") == 2
    await second.close()


async def test_delete_if_deletes_only_the_expected_live_value(store: KeyValueStore) -> None:
    assert not await store.delete_if("claim/img", b"x")  # missing
    await store.put("claim/img", b"\x00build-x\xff", ttl=60)
    assert not await store.delete_if("claim/img", b"build-y")
    assert not await store.delete_if("claim/img", b"\x00build-x")  # a prefix is not equal
    assert await store.get("claim/img") == b"\x00build-x\xff"
    assert await store.delete_if("claim/img", b"\x00build-x\xff")
    assert await store.get("claim/img") is None
    assert not await store.delete_if("claim/img", b"\x00build-x\xff")  # already gone


async def test_delete_if_never_removes_a_newer_claim(store: KeyValueStore) -> None:
    assert await store.put_if_absent("claim/img", b"x", ttl=0.05)
    deadline = time.monotonic() + 5
    while not await store.put_if_absent("claim/img", b"y", ttl=60):  # x expired; y claims
        assert time.monotonic() < deadline, "expired claim was never released"
        await asyncio.sleep(0.02)
    assert not await store.delete_if("claim/img", b"x")  # x's late release
    assert await store.get("claim/img") == b"y"


async def test_delete_if_ignores_an_expired_value(store: KeyValueStore) -> None:
    await store.put("claim/old", b"x", ttl=0.05)
    deadline = time.monotonic() + 5
    while await store.get("claim/old") is not None:
        assert time.monotonic() < deadline, "value did not expire"
        await asyncio.sleep(0.02)
    assert not await store.delete_if("claim/old", b"x")


async def test_delete_if_has_exactly_one_winner(store: KeyValueStore) -> None:
    await store.put("claim/race", b"x")
    results = await asyncio.gather(*(store.delete_if("claim/race", b"x") for _ in range(20)))
    assert results.count(True) == 1
    assert await store.get("claim/race") is None


async def test_write_all_applies_puts_and_counters_together(store: KeyValueStore) -> None:
    await store.incr("batch/n", 2)
    await store.write_all([Put("batch/a", b"1"), Put("batch/b", b"2", ttl=60), Put("batch/short", b"x", ttl=0.05),
                           Incr("batch/n", 3), Incr("batch/new", 1, ttl=60), HIncr("batch/h", "f"),
                           HIncr("batch/h", "f", 4), HIncr("batch/h", "g")])
    assert await store.get("batch/a") == b"1" and await store.get("batch/b") == b"2"
    assert await store.get("batch/n") == b"5" and await store.get("batch/new") == b"1"
    assert await store.hgetall("batch/h") == {"f": 5, "g": 1}
    deadline = time.monotonic() + 5
    while await store.get("batch/short") is not None:  # a ttl in a batch expires like any other
        assert time.monotonic() < deadline, "value did not expire"
        await asyncio.sleep(0.02)
    await store.write_all([])  # nothing to do is no error


async def test_concurrent_write_alls_all_land_and_a_failing_one_fails_alone(store: KeyValueStore) -> None:
    """Calls that arrive together are committed together (group commit); one that cannot be applied fails
    on its own, leaving nothing behind, and the others land."""
    await store.put("counter/bad", b"not a number")
    calls = [store.write_all([Put(f"many/{i}", str(i).encode()), HIncr("many/h", "n")]) for i in range(20)]
    calls.insert(7, store.write_all([Put("many/bad", b"x"), Incr("counter/bad")]))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, BaseException)] == [7]
    assert [await store.get(f"many/{i}") for i in range(20)] == [str(i).encode() for i in range(20)]
    assert await store.hgetall("many/h") == {"n": 20}
    assert await store.get("many/bad") is None


async def test_write_all_is_all_or_none(store: KeyValueStore) -> None:
    await store.put("counter/bad", b"not a number")
    with pytest.raises((ValueError, Unavailable)):  # the embedded store's own error; Redis's, as a 503
        await store.write_all([Put("batch/kept?", b"1"), HIncr("batch/h?", "f"), Incr("counter/bad")])
    assert await store.get("batch/kept?") is None and await store.hgetall("batch/h?") == {}
