"""Several replicas on one Redis, and what happens when Redis goes away and comes back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.clients import skopeo_copy
from tests.support.registry import Registry, free_port
from tests.support.wave import WaveServer

ROOT = Path(__file__).resolve().parents[2]


class PrivateRedis:
    """A redis-server of the test's own on a free port, so it can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        if not shutil.which("redis-server"):
            pytest.skip("redis-server missing (apt-get install redis-server)")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_token_issued_by_one_replica_pulls_through_another(wave_factory: Any, registry: Registry,
                                                           shared_redis: str, tmp_path: Path) -> None:
    a: WaveServer = wave_factory(redis_url=shared_redis)
    b: WaveServer = wave_factory(redis_url=shared_redis)
    answer = a.submit({"containerImage": registry.ref("library/busybox:multi-oci"),
                       "containerConfig": {"env": ["REPLICA=a"]}})
    through_b = answer["targetImage"].replace(a.host, b.host)
    skopeo_copy(through_b, tmp_path / "b")
    from_a = a.request("GET", "/v2/" + answer["targetImage"].split("/", 1)[1].replace(":multi-oci",
                                                                                       "/manifests/multi-oci"))
    from_b = b.request("GET", "/v2/" + through_b.split("/", 1)[1].replace(":multi-oci", "/manifests/multi-oci"))
    assert from_a.body == from_b.body


def test_revocation_on_one_replica_is_seen_by_the_other_at_once(wave_factory: Any, registry: Registry,
                                                                shared_redis: str) -> None:
    from wave import keys

    a: WaveServer = wave_factory(redis_url=shared_redis)
    b: WaveServer = wave_factory(redis_url=shared_redis)
    answer = a.submit({"containerImage": registry.ref("library/busybox:latest")})
    path = "/v2/" + answer["targetImage"].split("/", 1)[1].replace(":latest", "/manifests/latest")
    assert b.request("GET", path).status == 200
    assert a.call(a.app[keys.TOKENS].revoke(answer["containerToken"]))
    assert b.request("GET", path).status == 404


def test_redis_lost_while_serving_fails_fast_with_503_and_recovers(wave_factory: Any, registry: Registry,
                                                                   private_redis: PrivateRedis) -> None:
    wave: WaveServer = wave_factory(redis_url=private_redis.url)
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    path = "/v2/" + answer["targetImage"].split("/", 1)[1].replace(":latest", "/manifests/latest")
    private_redis.stop()
    started = time.monotonic()
    pull = wave.request("GET", path)
    assert pull.status == 503
    assert pull.json()["errors"][0]["code"] == "UNAVAILABLE"  # type: ignore[index]
    submit = wave.request("POST", "/v1alpha2/container", {"containerImage": registry.ref("library/busybox:latest")})
    assert submit.status == 503 and "redis" in submit.json()["message"]  # type: ignore[index]
    assert time.monotonic() - started < 10  # fails fast rather than hanging on the store
    private_redis.start()  # an empty Redis: the token is gone, but the service works again by itself
    deadline = time.monotonic() + 20
    while (again := wave.request("POST", "/v1alpha2/container",
                                 {"containerImage": registry.ref("library/busybox:latest")})).status == 503:
        assert time.monotonic() < deadline, "wave did not reconnect to redis"
        time.sleep(0.1)
    assert again.status == 200


def test_redis_down_at_start_up_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "WAVE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "WAVE_STATE_DIR": str(tmp_path),
           "WAVE_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "-m", "wave", "serve"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "redis" in done.stderr and "Traceback" not in done.stderr


def test_revocation_in_one_process_is_seen_by_another_on_the_same_embedded_store(
        wave_factory: Any, registry: Registry, tmp_path: Path) -> None:
    """Processes sharing a state directory (``wave serve --workers``) keep token records in memory; a
    revocation by any of them is refused by all from the moment it returns."""
    from wave import keys

    a: WaveServer = wave_factory(state_dir=tmp_path / "shared")
    b: WaveServer = wave_factory(state_dir=tmp_path / "shared")
    answer = a.submit({"containerImage": registry.ref("library/busybox:latest")})
    path = "/v2/" + answer["targetImage"].split("/", 1)[1].replace(":latest", "/manifests/latest")
    assert b.request("GET", path).status == 200
    assert b.request("GET", path).status == 200  # now from b's memory
    assert a.call(a.app[keys.TOKENS].revoke(answer["containerToken"]))
    assert b.request("GET", path).status == 404
    assert a.request("GET", path).status == 404
