"""Operations endpoints through a real server: liveness, readiness that follows a real Redis going away, and
Prometheus text that counts requests, latencies and upstream errors by route family."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support.clients import missing_tools
from tests.support.registry import free_port
from wave import keys
from wave.app import create_app
from wave.config import load_settings
from wave.errors import Unavailable
from wave.oci.models import ContainerConfig
from wave.oci.platform import parse_platform
from wave.oci.reference import parse_reference
from wave.storage.local import LocalStorage
from wave.tokens import ContainerRequest, new_token

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse_prometheus(text: str) -> dict[str, float]:
    """Every sample of an exposition, keyed by ``name{labels}`` as written; fails on a malformed line."""
    samples: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE_RE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path) -> TestClient:
    settings = load_settings(environ={}, state_dir=tmp_path, upstream_retries=0)
    return await aiohttp_client(create_app(settings))


async def test_health_is_ok(client: TestClient) -> None:
    response = await client.get("/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_ready_when_the_embedded_store_answers(client: TestClient) -> None:
    response = await client.get("/ready")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_ready_follows_the_object_storage(aiohttp_client, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    root.mkdir()
    app = create_app(load_settings(environ={}, state_dir=tmp_path / "state"))

    async def local_storage(app: web.Application) -> AsyncIterator[None]:
        app[keys.STORAGE] = LocalStorage(root)
        yield

    app.cleanup_ctx.append(local_storage)
    client = await aiohttp_client(app)
    assert (await client.get("/ready")).status == 200
    shutil.rmtree(root)
    root.write_text("not a directory")
    response = await client.get("/ready")
    assert response.status == 503
    assert "object storage" in (await response.json())["message"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test alone, so the test can stop it."""
    reason = missing_tools("redis-server")
    if reason:
        pytest.skip(reason)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout != b"PONG\n":
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.terminate()
        proc.wait(10)


async def test_ready_follows_the_redis_store(aiohttp_client, tmp_path: Path,
                                             private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = private_redis
    client = await aiohttp_client(create_app(load_settings(environ={}, state_dir=tmp_path, redis_url=url)))
    assert (await client.get("/ready")).status == 200
    proc.terminate()
    proc.wait(10)
    response = await client.get("/ready")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable" and "redis" in body["message"]
    assert (await client.get("/health")).status == 200  # liveness does not depend on the store


async def test_prometheus_counts_requests_latency_and_upstream_errors(client: TestClient) -> None:
    now = time.time()
    dead_upstream = f"127.0.0.1:{free_port()}/library/busybox:latest"  # nothing listens there
    request = ContainerRequest(token=new_token(), image=parse_reference(dead_upstream), config=ContainerConfig(),
                               platform=parse_platform("linux/amd64"), created=now, expires=now + 600)
    await client.app[keys.TOKENS].save(request)

    assert (await client.get("/health")).status == 200
    assert (await client.get("/service-info")).status == 200
    assert (await client.get("/no/such/route")).status == 404
    assert (await client.get("/v1alpha2/metrics/pulls?date=2024-01-01")).status == 401
    assert (await client.get(f"/v2/wt/{new_token()}/library/busybox/manifests/latest")).status == 404
    assert (await client.head(f"/v2/wt/{new_token()}/library/busybox/blobs/sha256:{'0' * 64}")).status == 404
    assert (await client.get(f"/v2/wt/{request.token}/library/busybox/manifests/latest")).status == 502
    assert (await client.get("/v2/")).status == 200

    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_prometheus(await response.text())

    def requests(family: str, method: str, status: int) -> float:
        return samples.get(f'wave_http_requests_total{{family="{family}",method="{method}",status="{status}"}}', 0)

    assert requests("ops", "GET", 200) == 1  # /health; this scrape is counted once it is answered
    assert requests("api", "GET", 200) == 1
    assert requests("api", "GET", 404) == 1
    assert requests("metrics", "GET", 401) == 1
    assert requests("v2-manifest", "GET", 404) == 1
    assert requests("v2-manifest", "GET", 502) == 1
    assert requests("v2-blob", "HEAD", 404) == 1
    assert requests("v2-other", "GET", 200) == 1
    assert samples['wave_upstream_errors_total{code="UNAVAILABLE",status="502"}'] == 1
    assert samples['wave_manifest_upstream_resolutions_total'] == 1
    family = 'family="v2-manifest"'
    assert samples[f'wave_http_request_duration_seconds_count{{{family}}}'] == 2
    assert samples[f'wave_http_request_duration_seconds_bucket{{{family},le="+Inf"}}'] == 2
    buckets = [v for k, v in samples.items() if k.startswith(f"wave_http_request_duration_seconds_bucket{{{family}")]
    assert buckets == sorted(buckets)  # cumulative
    assert any(k.startswith("wave_info{") for k in samples)

    again = parse_prometheus(await (await client.get("/metrics")).text())
    assert again['wave_http_requests_total{family="ops",method="GET",status="200"}'] == 2


def test_label_values_are_escaped() -> None:
    from wave.prometheus import OpsMetrics

    ops = OpsMetrics()
    ops.cache_lookup('we"ird\\cache\nname', hit=True)
    ops.observe_request("api", "BREW", 418, 0.001)
    samples = parse_prometheus(ops.render())
    assert samples['wave_cache_lookups_total{cache="we\\"ird\\\\cache\\nname",result="hit"}'] == 1
    assert samples['wave_http_requests_total{family="api",method="OTHER",status="418"}'] == 1


async def test_a_resource_that_fails_to_open_closes_those_opened_before_it(tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(load_settings(environ={}, state_dir=tmp_path, redis_url=dead_redis))
    runner = web.AppRunner(app)
    with pytest.raises(Unavailable, match="cannot reach redis"):
        await runner.setup()
    assert app[keys.HTTP].closed  # opened before the store, closed when the store failed
