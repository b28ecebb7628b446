"""Time budgets, with small configured values and real sockets on loopback: slow clients (slow-loris) and slow,
stalled or trickling upstreams are cut by the documented budgets, one slow registry does not starve the
others, and a client that hangs up releases its upstream connection.

Nothing here sleeps to wait for something: tests block on sockets (which wave closes) or on the scripted
upstream's condition (requests that arrived, clients that went away). Elapsed times are only checked to be
within the budget, with generous margins for a loaded machine.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.scripted import BIG_BLOB_DIGEST, CONFIG_DIGEST, ScriptedRegistry
from tests.support.wave import WaveServer, read_until_closed


@pytest.fixture
def scripted() -> Iterator[ScriptedRegistry]:
    upstream = ScriptedRegistry().start()
    yield upstream
    upstream.stop()


def manifest_path(wave: WaveServer, scripted: ScriptedRegistry) -> str:
    token = wave.submit({"containerImage": scripted.ref()})["containerToken"]
    return f"/v2/wt/{token}/library/busybox/manifests/latest"


# --- clients -------------------------------------------------------------------------------------------


def test_a_request_head_that_never_ends_is_cut_at_the_header_timeout(wave_factory: Any) -> None:
    wave = wave_factory(client_header_timeout=1.0)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", wave.port), timeout=30) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: wave\r\nX-Slow: ")  # and then nothing, as slow-loris does
        assert read_until_closed(sock) == b""  # wave closed the connection
    assert time.monotonic() - started < 10


def test_an_idle_connection_is_closed_at_the_header_timeout(wave_factory: Any) -> None:
    wave = wave_factory(client_header_timeout=1.0)
    with socket.create_connection(("127.0.0.1", wave.port), timeout=30) as sock:
        assert read_until_closed(sock) == b""


def test_a_body_that_trickles_is_answered_408_at_the_body_timeout(wave_factory: Any) -> None:
    wave = wave_factory(client_body_timeout=1.0)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", wave.port), timeout=30) as sock:
        sock.sendall(b"POST /v1alpha2/container HTTP/1.1\r\nHost: wave\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"containerImage\"")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"did not arrive within 1s" in answer
    assert time.monotonic() - started < 10


# --- upstreams -----------------------------------------------------------------------------------------


def test_a_stalled_upstream_is_cut_at_one_deadline_for_all_retries(wave_factory: Any,
                                                                  scripted: ScriptedRegistry) -> None:
    wave = wave_factory(upstream_deadline=2.0, upstream_retries=3, upstream_read_timeout=60.0)
    path = manifest_path(wave, scripted)
    scripted.script.mode = "stall"
    started = time.monotonic()
    response = wave.request("GET", path)
    elapsed = time.monotonic() - started
    assert response.status == 504, response.body
    assert 1.5 < elapsed < 2 * 3  # one deadline, not one per attempt (3 x 60 s before)


def test_a_trickling_upstream_is_cut_by_the_minimum_rate(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory(upstream_min_rate=100, upstream_rate_window=1.0, upstream_deadline=120.0)
    path = manifest_path(wave, scripted)  # HEAD only: trickling applies to GET bodies
    scripted.script.mode, scripted.script.trickle_interval = "trickle", 0.2  # 5 bytes/s, a manifest in 80 s
    started = time.monotonic()
    response = wave.request("GET", path)
    assert response.status == 504 and b"too slowly" in response.body
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("digest", [CONFIG_DIGEST, BIG_BLOB_DIGEST], ids=["relayed", "socket-to-socket"])
def test_a_trickling_blob_is_cut_by_the_minimum_rate(wave_factory: Any, scripted: ScriptedRegistry,
                                                     digest: str) -> None:
    wave = wave_factory(upstream_min_rate=1000, upstream_rate_window=1.0)
    path = manifest_path(wave, scripted).replace("manifests/latest", f"blobs/{digest}")
    scripted.script.mode, scripted.script.trickle_interval = "trickle", 0.05  # 20 bytes/s
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", wave.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200  # the status line went out before the body stalled
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()
    assert time.monotonic() - started < 10  # one window or two, not the 60 s read timeout per byte
    assert scripted.script.wait_for("gone", 1)  # and wave let go of upstream


def test_a_slow_registry_does_not_take_the_connections_of_the_others(wave_factory: Any,
                                                                     scripted: ScriptedRegistry) -> None:
    healthy = ScriptedRegistry().start()
    try:
        wave = wave_factory(upstream_connections=3, upstream_connections_per_host=2, upstream_deadline=30.0)
        slow_path = manifest_path(wave, scripted)
        healthy_token = wave.submit({"containerImage": healthy.ref()})["containerToken"]
        scripted.script.mode = "stall"
        with ThreadPoolExecutor(4) as pool:
            # four distinct tags: identical pulls would share one upstream request
            stalled = [pool.submit(wave.request, "GET", slow_path.replace("latest", f"t{i}")) for i in range(4)]
            assert scripted.script.wait_for("manifest", 1 + 2)  # the HEAD of the check, then 2 stalled GETs
            started = time.monotonic()
            response = wave.request("GET", f"/v2/wt/{healthy_token}/library/busybox/manifests/latest")
            assert response.status == 200
            assert time.monotonic() - started < 10
            assert scripted.script.total("manifest") == 3  # the per-host limit held the other two back
            scripted.script.release.set()
            assert all(f.result().status == 404 for f in stalled)  # released: the scripted registry has no t<n>
    finally:
        healthy.stop()


def test_a_client_that_hangs_up_releases_its_upstream_request(wave_factory: Any, scripted: ScriptedRegistry) -> None:
    wave = wave_factory(upstream_deadline=60.0)
    path = manifest_path(wave, scripted).replace("manifests/latest", "blobs/sha256:" + "b" * 64)
    scripted.script.mode = "stall"
    with socket.create_connection(("127.0.0.1", wave.port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: wave\r\n\r\n".encode())
        assert scripted.script.wait_for("blob", 1)  # wave's request is upstream now
    assert scripted.script.wait_for("gone", 1, timeout=10)  # and wave hung up on upstream too
