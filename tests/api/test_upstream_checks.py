"""Source checks of container requests, counted at a counting upstream: identical checks share one (single
flight), "does not exist" and upstream 5xx are remembered briefly (negative cache), and retries honour
``Retry-After`` within the deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.scripted import ScriptedRegistry
from tests.support.wave import WaveServer


@pytest.fixture
def scripted() -> Iterator[ScriptedRegistry]:
    upstream = ScriptedRegistry().start()
    yield upstream
    upstream.stop()


def burst(wave: WaveServer, body: dict[str, Any], n: int) -> list[int]:
    with ThreadPoolExecutor(16) as pool:
        return [r.status for r in pool.map(lambda _: wave.request("POST", "/v1alpha2/container", body), range(n))]


def test_a_burst_for_a_missing_image_costs_one_upstream_check(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory(negative_cache_ttl=60.0)
    body = {"containerImage": scripted.ref("library/missing")}
    statuses = burst(wave, body, 200)
    assert set(statuses) == {400}
    assert scripted.script.counts[("HEAD", "manifest")] == 1


def test_a_burst_against_a_failing_registry_costs_one_check_with_its_retries(wave_factory: Any,
                                                                            scripted: ScriptedRegistry) -> None:
    wave = wave_factory(negative_cache_ttl=60.0, upstream_retries=3)
    scripted.script.mode = "unavailable"
    statuses = burst(wave, {"containerImage": scripted.ref()}, 200)
    assert all(s >= 500 for s in statuses)
    assert scripted.script.counts[("HEAD", "manifest")] == 3  # 1 check x 3 attempts, not 200 x 3


def test_the_negative_cache_is_short(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory(negative_cache_ttl=0.5)
    body = {"containerImage": scripted.ref()}
    scripted.script.mode = "unavailable"
    assert wave.request("POST", "/v1alpha2/container", body).status >= 500
    scripted.script.mode = "normal"
    deadline = time.monotonic() + 10
    while wave.request("POST", "/v1alpha2/container", body).status != 200:  # the registry is back
        assert time.monotonic() < deadline, "the failure was remembered past its ttl"
    assert scripted.script.counts[("HEAD", "manifest")] >= 2


def test_identical_successful_checks_share_one(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory()
    statuses = burst(wave, {"containerImage": scripted.ref()}, 100)
    assert set(statuses) == {200}
    assert scripted.script.counts[("HEAD", "manifest")] == 1


def test_a_retry_after_within_the_deadline_is_honoured(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory(upstream_deadline=10.0, upstream_retries=3)
    scripted.script.unavailable_for, scripted.script.retry_after = 1, "1"
    started = time.monotonic()
    assert wave.request("POST", "/v1alpha2/container", {"containerImage": scripted.ref()}).status == 200
    assert time.monotonic() - started >= 1.0  # it waited as asked
    assert scripted.script.counts[("HEAD", "manifest")] == 2


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory(upstream_deadline=3.0, upstream_retries=3)
    scripted.script.mode, scripted.script.retry_after = "unavailable", "120"
    started = time.monotonic()
    assert wave.request("POST", "/v1alpha2/container", {"containerImage": scripted.ref()}).status >= 500
    assert time.monotonic() - started < 3.0
    assert scripted.script.counts[("HEAD", "manifest")] == 1
