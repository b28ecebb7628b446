"""Limits per caller, on both stores and across two replicas sharing Redis: pulls (container requests and
manifest requests by tag) and builds per period, refused with 429 and Retry-After; anonymous callers refused
altogether when the service asks for a Platform token; nothing counted (or stored) while limits are off."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.redis_url import database, flushed
from tests.support.scripted import ScriptedRegistry
from tests.support.wave import WaveServer
from wave.builds.launchers.local import LocalLauncher
from wave.config import load_settings, parse_rate

LIMITS_REDIS = database(12)


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedRegistry]:
    upstream = ScriptedRegistry().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def limits_redis() -> Iterator[str]:
    with flushed(12):
        yield LIMITS_REDIS


@pytest.fixture(params=["embedded", "redis"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "embedded":
        return {}
    return {"redis_url": request.getfixturevalue("limits_redis")}


def post(wave: WaveServer, body: dict[str, Any]) -> Any:
    return wave.request("POST", "/v1alpha2/container", body)


def test_rates_are_read_as_n_per_period_or_off() -> None:
    assert parse_rate("250/1h") is not None and parse_rate("250/1h").period == 3600  # type: ignore[union-attr]
    assert parse_rate("25/day").period == 86400  # type: ignore[union-attr]
    assert parse_rate("off") is None and parse_rate("") is None
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate("lots")
    assert load_settings(environ={}).rate_limit_anon_pulls is None  # off on a laptop


def test_container_requests_past_the_pull_limit_are_429_naming_the_limit(wave_factory: Any, scripted: ScriptedRegistry,
                                                                          store_settings: dict[str, Any]) -> None:
    wave = wave_factory(rate_limit_anon_pulls=parse_rate("3/1h"), **store_settings)
    body = {"containerImage": scripted.ref()}
    assert [post(wave, body).status for _ in range(3)] == [200, 200, 200]
    refused = post(wave, body)
    assert refused.status == 429
    retry_after = int(refused.headers["retry-after"])
    assert 0 < retry_after <= 3600
    message = refused.json()["message"]  # type: ignore[index]
    assert "3/1h pulls" in message and "resets at" in message and re.search(r"in \d+s", message)


def test_manifest_pulls_count_and_are_refused_the_oci_way(wave_factory: Any, scripted: ScriptedRegistry,
                                                          store_settings: dict[str, Any]) -> None:
    wave = wave_factory(rate_limit_anon_pulls=parse_rate("4/1m"), **store_settings)
    token = wave.submit({"containerImage": scripted.ref()})["containerToken"]  # pull 1
    base = f"/v2/wt/{token}/library/busybox/manifests/"
    assert wave.request("GET", base + "latest").status == 200  # pull 2
    assert wave.request("HEAD", base + "latest").status == 200  # a HEAD is not a pull
    digest = wave.request("HEAD", base + "latest").headers["docker-content-digest"]
    assert wave.request("GET", base + digest).status == 200  # by digest: part of the same pull
    assert [wave.request("GET", base + "latest").status for _ in range(3)] == [200, 200, 429]
    refused = wave.request("GET", base + "latest")
    assert refused.status == 429 and 0 < int(refused.headers["retry-after"]) <= 60
    error = refused.json()["errors"][0]  # type: ignore[index]
    assert error["code"] == "TOOMANYREQUESTS" and error["detail"]["limit"] == "4/1m"
    assert 'wave_rate_limit_refusals_total{limit="anon_pulls"} 2' in wave.request("GET", "/metrics").body.decode()


def test_a_burst_gets_exactly_the_limit(wave_factory: Any, scripted: ScriptedRegistry,
                                        store_settings: dict[str, Any]) -> None:
    wave = wave_factory(rate_limit_anon_pulls=parse_rate("10/1h"), **store_settings)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: post(wave, {"containerImage": scripted.ref()}).status, range(30)))
    assert statuses.count(200) == 10 and statuses.count(429) == 20


def test_two_replicas_on_redis_share_one_count(wave_factory: Any, scripted: ScriptedRegistry,
                                               limits_redis: str, tmp_path: Any) -> None:
    replicas = [wave_factory(state_dir=tmp_path / f"replica-{i}", redis_url=limits_redis,
                             rate_limit_anon_pulls=parse_rate("5/1h")) for i in range(2)]
    body = {"containerImage": scripted.ref()}
    statuses = [post(replicas[i % 2], body).status for i in range(10)]
    assert statuses == [200] * 5 + [429] * 5


def test_build_requests_have_their_own_limit(wave_factory: Any, scripted: ScriptedRegistry,
                                             store_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_builder(self: LocalLauncher, fmt: str) -> str:
        return "no builder in this test"

    monkeypatch.setattr(LocalLauncher, "unavailable", no_builder)
    wave = wave_factory(rate_limit_anon_builds=parse_rate("2/1d"), build_repo=f"{scripted.authority}/builds",
                        **store_settings)
    build = {"containerFile": "RlJPTSBidXN5Ym94Cg=="}  # FROM busybox
    assert [post(wave, build).status for _ in range(2)] == [400, 400]  # counted, then refused by the builder
    refused = post(wave, build)
    assert refused.status == 429 and "2/1d builds" in refused.json()["message"]  # type: ignore[index]
    assert post(wave, {"containerImage": scripted.ref()}).status == 200  # pulls are not builds
    assert post(wave, {**build, "dryRun": True}).status == 200  # a dry run builds nothing: not counted


def test_anonymous_requests_can_be_refused(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory(allow_anonymous=False)
    refused = post(wave, {"containerImage": scripted.ref()})
    assert refused.status == 401 and "towerAccessToken" in refused.json()["message"]  # type: ignore[index]
    with_token = post(wave, {"containerImage": scripted.ref(), "towerAccessToken": "a-platform-token"})
    # past the door: the Platform is asked about the token next (no Platform is paired here, hence 400)
    assert with_token.status != 401 and "anonymous" not in with_token.body.decode()


def test_limits_off_store_nothing(wave_factory: Any, scripted: ScriptedRegistry, tmp_path: Any) -> None:
    wave = wave_factory(state_dir=tmp_path / "off")
    token = wave.submit({"containerImage": scripted.ref()})["containerToken"]
    for _ in range(5):
        assert wave.request("GET", f"/v2/wt/{token}/library/busybox/manifests/latest").status == 200
    with sqlite3.connect(tmp_path / "off" / "wave.db") as db:
        assert db.execute("SELECT count(*) FROM kv WHERE key LIKE 'limits/%'").fetchone() == (0,)
