"""Large blobs streamed through wave: socket to socket or through aiohttp's reader, byte for byte either way."""

from __future__ import annotations

import hashlib
import http.client
import os
import time
from typing import Any

import pytest
from aiohttp import web

from tests.support.registry import Registry, http_request
from tests.support.wave import BackgroundApp, WaveServer
from wave import keys
from wave.oci.models import ContainerConfig
from wave.oci.platform import DEFAULT_PLATFORM
from wave.oci.reference import parse_reference
from wave.proxy import streaming
from wave.tokens import ContainerRequest, new_token

BLOB = os.urandom(3 << 20) + b"end"  # above the direct-copy threshold, and not a multiple of any buffer
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def upload_blob(registry: Registry, repository: str, data: bytes, digest: str) -> None:
    """A monolithic blob upload (POST, then PUT with the digest), as the distribution spec describes."""
    start = http_request("POST", f"{registry.url}/v2/{repository}/blobs/uploads/")
    assert start.status == 202, start.body
    location = start.headers["location"]
    location = location if location.startswith("http") else registry.url + location
    sep = "&" if "?" in location else "?"
    done = http_request("PUT", f"{location}{sep}digest={digest}", {"Content-Type": "application/octet-stream"},
                        body=data, timeout=60)
    assert done.status == 201, done.body


@pytest.fixture(params=["direct", "aiohttp"])
def streaming_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "aiohttp":
        monkeypatch.setattr(streaming, "DIRECT_MIN", 1 << 62)  # every blob takes the chunked path
    return str(request.param)


@pytest.fixture(scope="module")
def big_blob(registry: Registry) -> str:
    upload_blob(registry, "library/busybox", BLOB, DIGEST)
    return DIGEST


def test_large_blob_arrives_whole_and_ranges_work(streaming_path: str, wave: WaveServer, registry: Registry,
                                                  big_blob: str) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    path = "/v2/" + answer["targetImage"].split("/", 1)[1].rsplit(":", 1)[0] + f"/blobs/{big_blob}"
    whole = wave.request("GET", path)
    assert whole.status == 200 and len(whole.body) == len(BLOB)
    assert hashlib.sha256(whole.body).hexdigest() == DIGEST.split(":")[1]
    part = wave.request("GET", path, headers={"Range": f"bytes=1000-{len(BLOB) - 1}"})
    assert part.status == 206 and part.body == BLOB[1000:]
    # the connection stays usable after a streamed body: several requests on one keep-alive connection
    conn = http.client.HTTPConnection("127.0.0.1", wave.settings.port, timeout=60)
    try:
        for _ in range(3):
            conn.request("GET", path)
            response = conn.getresponse()
            assert hashlib.sha256(response.read()).hexdigest() == DIGEST.split(":")[1]
    finally:
        conn.close()


def test_upstream_closing_early_never_passes_for_a_whole_blob(streaming_path: str, wave_factory: Any) -> None:
    async def short_blob(request: web.Request) -> web.StreamResponse:
        if not request.path.endswith(f"/blobs/{DIGEST}"):
            return web.Response(body=b"{}", content_type="application/json")  # /v2/ and the manifest check
        response = web.StreamResponse(headers={"Content-Length": str(len(BLOB)), "Docker-Content-Digest": DIGEST})
        await response.prepare(request)
        await response.write(BLOB[: 1 << 20])
        assert request.transport is not None
        request.transport.close()  # the upstream dies mid-blob
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", short_blob)
    upstream = BackgroundApp(app).start()
    try:
        wave = wave_factory(upstream_retries=1)
        token = wave.call(_issue(wave, f"127.0.0.1:{upstream.port}/library/busybox:latest"))
        conn = http.client.HTTPConnection("127.0.0.1", wave.settings.port, timeout=60)
        conn.request("GET", f"/v2/wt/{token}/library/busybox/blobs/{DIGEST}")
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()
    finally:
        upstream.stop()


async def _issue(wave: WaveServer, image: str) -> str:
    """A token for an image whose upstream is a stub: stored directly, as the API would after its check."""
    now = time.time()
    request = ContainerRequest(new_token(), parse_reference(image), ContainerConfig(), DEFAULT_PLATFORM, now,
                               now + 600)
    await wave.app[keys.TOKENS].save(request)
    return request.token
