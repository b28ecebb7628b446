"""Large blobs streamed through wave: socket to socket or through aiohttp's reader, byte for byte either way."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.support.clients import missing_tools, skopeo_copy
from tests.support.registry import Registry, http_request
from tests.support.wave import BackgroundApp, WaveServer, issue_plain_token
from wave.oci.digest import DigestMismatch, DigestVerifier, sha256_digest
from wave.oci.mediatypes import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
from wave.proxy import streaming

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
        token = wave.call(issue_plain_token(wave, f"127.0.0.1:{upstream.port}/library/busybox:latest"))
        conn = http.client.HTTPConnection("127.0.0.1", wave.settings.port, timeout=60)
        conn.request("GET", f"/v2/wt/{token}/library/busybox/blobs/{DIGEST}")
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()
    finally:
        upstream.stop()



class LyingRegistry:
    """A registry on loopback that serves one image whose layer bytes are not the ones its digest names.

    Everything else about the layer is right (its size, its headers), as with a corrupt cache or storage behind
    a registry: only hashing the bytes tells. ``good`` blobs are served as they are."""

    def __init__(self, true_layer: bytes, lie: bytes, good: tuple[bytes, ...] = ()) -> None:
        assert len(true_layer) == len(lie) and true_layer != lie
        self.config = orjson.dumps({"architecture": "amd64", "os": "linux",
                                    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}})
        self.layer_digest = sha256_digest(true_layer)
        self.blobs = {sha256_digest(self.config): self.config, self.layer_digest: lie,
                      **{sha256_digest(blob): blob for blob in good}}
        self.manifest = orjson.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(self.config), "digest": sha256_digest(self.config)},
            "layers": [{"mediaType": DOCKER_LAYER_GZIP, "size": len(lie), "digest": self.layer_digest}],
        })
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self.server = BackgroundApp(app)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail.endswith("/manifests/latest") or tail.endswith(f"/manifests/{sha256_digest(self.manifest)}"):
            return web.Response(body=self.manifest, headers={"Content-Type": DOCKER_MANIFEST,
                                                             "Docker-Content-Digest": sha256_digest(self.manifest)})
        digest = tail.rpartition("/blobs/")[2]
        if digest in self.blobs:
            data = self.blobs[digest]
            headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
                       "Accept-Ranges": "bytes"}
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("Range", ""))
            if match:
                first, last = int(match.group(1)), int(match.group(2))
                headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
                return web.Response(status=206, body=data[first:last + 1], headers=headers)
            return web.Response(body=data, headers=headers)
        if tail in ("v2", "v2/"):
            return web.Response(body=b"{}", content_type="application/json")
        return web.Response(status=404, body=b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}',
                            content_type="application/json")

    def __enter__(self) -> LyingRegistry:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def image(self) -> str:
        return f"127.0.0.1:{self.server.port}/library/lie:latest"


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, bool]:
    """status, headers, the body received, and whether it ended cleanly (all of Content-Length arrived)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        try:
            return response.status, dict(response.headers), response.read(), True
        except http.client.IncompleteRead as exc:
            return response.status, dict(response.headers), exc.partial, False
    finally:
        conn.close()


@pytest.mark.parametrize("size", [1000, 3 << 20], ids=["small", "large"])
def test_wrong_bytes_under_a_digest_never_end_cleanly(streaming_path: str, wave_factory: Any, size: int,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    true_layer = os.urandom(size)
    lie = bytes([true_layer[0] ^ 1]) + true_layer[1:]  # one bit off, the same length
    with LyingRegistry(true_layer, lie) as upstream:
        wave = wave_factory(upstream_retries=1)
        token = wave.call(issue_plain_token(wave, upstream.image))
        path = f"/v2/wt/{token}/library/lie/blobs/{upstream.layer_digest}"
        with caplog.at_level(logging.WARNING, logger="wave.proxy"):
            status, headers, body, clean = _get(wave.settings.port, path)
        assert status == 200 and int(headers["Content-Length"]) == size
        assert not clean and len(body) < size  # the client sees a broken transfer, never a whole wrong blob
        warnings = [r.getMessage() for r in caplog.records if r.name == "wave.proxy" and r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings  # logged once, with the registry and the digest
        assert upstream.image.split("/")[0] in warnings[0] and upstream.layer_digest in warnings[0]
        # A range is a part of the blob, which the digest cannot check: it passes through as upstream sent it.
        status, _, body, clean = _get(wave.settings.port, path, {"Range": "bytes=0-9"})
        assert (status, body, clean) == (206, lie[:10], True)


@pytest.mark.parametrize("size", [streaming.DIRECT_MIN, 2 * streaming.BUFFER_SIZE, 2 * streaming.BUFFER_SIZE + 1,
                                  (5 << 20) + 7])
def test_right_bytes_of_any_size_pass_whole(streaming_path: str, wave_factory: Any, size: int) -> None:
    true_layer, blob = os.urandom(16), os.urandom(size)
    with LyingRegistry(true_layer, os.urandom(16), good=(blob,)) as upstream:
        wave = wave_factory(upstream_retries=1)
        token = wave.call(issue_plain_token(wave, upstream.image))
        status, _, body, clean = _get(wave.settings.port, f"/v2/wt/{token}/library/lie/blobs/{sha256_digest(blob)}")
        assert (status, clean) == (200, True) and body == blob


def test_skopeo_fails_to_copy_an_image_whose_upstream_lies(wave_factory: Any, tmp_path: Path) -> None:
    if missing_tools("skopeo"):
        pytest.skip(str(missing_tools("skopeo")))
    true_layer = os.urandom(2 << 20)
    with LyingRegistry(true_layer, os.urandom(len(true_layer))) as upstream:
        wave = wave_factory(upstream_retries=1)
        answer = wave.submit({"containerImage": upstream.image})
        copied = skopeo_copy(answer["targetImage"], tmp_path / "copy", check=False, timeout=120)
        assert copied.returncode != 0, copied.stdout
        assert upstream.layer_digest.split(":")[1][:12] in copied.stderr or "EOF" in copied.stderr, copied.stderr


class _Recorder:
    def __init__(self) -> None:
        self.data = bytearray()
        self.verified = False

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def verify(self) -> None:
        self.verified = True


def test_a_tap_after_the_digest_check_sees_every_byte_and_verifies_only_a_right_blob() -> None:
    right, after = _Recorder(), _Recorder()
    chain = streaming.TapChain(DigestVerifier(sha256_digest(b"blob")), after)
    chain.update(b"bl")
    chain.update(memoryview(b"ob"))
    chain.verify()
    assert after.data == b"blob" and after.verified
    wrong = streaming.TapChain(DigestVerifier(sha256_digest(b"blob")), right)
    wrong.update(b"blub")
    with pytest.raises(DigestMismatch):
        wrong.verify()
    assert right.data == b"blub" and not right.verified  # a cache fill would never commit these bytes
