"""Pulls that keep working when the upstream registry has gone away: blobs from the blob cache, manifests
this repository already resolved from the store (with a ``Warning``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.support.clients import Podman, skopeo_copy
from tests.support.images import push_lab_images
from tests.support.layers import make_layer
from tests.support.registry import Registry, start_registry
from tests.support.wave import BackgroundApp
from wave.oci.digest import sha256_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

HELLO = make_layer({"opt/wave/hello.txt": "hello from an injected layer\n",
                    "opt/wave/bin/greet": "#!/bin/sh\necho \"greetings, $WHO\"\n"})


def augmented(image: str) -> dict[str, Any]:
    return {"containerImage": image,
            "containerConfig": {"env": ["WHO=wave", "PATH=/opt/wave/bin:/usr/bin:/bin"], "cmd": ["greet"],
                                "workingDir": "/opt/wave", "layers": [HELLO.request()]}}


@pytest.fixture
def doomed_registry(tmp_path: Path, lab_layout: Path) -> Iterator[Registry]:
    """A registry of this test's own, which the test stops."""
    registry = start_registry(tmp_path / "doomed-registry")
    try:
        push_lab_images(lab_layout, registry)
        yield registry
    finally:
        registry.stop()


@pytest.mark.clients
def test_a_pull_works_from_the_cache_after_the_registry_went_away(wave_factory: Any, doomed_registry: Registry,
                                                                 tmp_path: Path) -> None:
    wave = wave_factory(blob_cache=str(tmp_path / "blob-cache"), upstream_retries=1,
                        upstream_connect_timeout=2.0)
    plain = wave.submit({"containerImage": doomed_registry.ref("library/busybox:latest")})
    extended = wave.submit(augmented(doomed_registry.ref("library/busybox:oci")))
    skopeo_copy(plain["targetImage"], tmp_path / "before")
    first = Podman(tmp_path / "podman-1")
    try:
        first.pull(extended["targetImage"])
    finally:
        first.cleanup()

    doomed_registry.stop()

    skopeo_copy(plain["targetImage"], tmp_path / "after")  # a new client storage: every blob is fetched again
    assert sorted(p.name for p in (tmp_path / "after").iterdir()) == sorted(
        p.name for p in (tmp_path / "before").iterdir())
    second = Podman(tmp_path / "podman-2")
    try:
        second.pull(extended["targetImage"])
        assert second.run(extended["targetImage"]).strip() == "greetings, wave"
    finally:
        second.cleanup()

    # new container requests for what was pulled before are answered from the last good manifests
    fresh = wave.submit(augmented(doomed_registry.ref("library/busybox:oci")))
    name, _, tag = fresh["targetImage"].partition("/")[2].rpartition(":")
    got = wave.request("GET", f"/v2/{name}/manifests/{tag}",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert got.status == 200 and got.headers["warning"].startswith('110 - "Response is Stale')
    third = Podman(tmp_path / "podman-3")
    try:
        third.pull(fresh["targetImage"])
        assert third.run(fresh["targetImage"]).strip() == "greetings, wave"
    finally:
        third.cleanup()
    # what was never pulled is not invented
    never = wave.request("POST", "/v1alpha2/container",
                         {"containerImage": doomed_registry.ref("library/busybox:multi-oci")})
    assert never.status == 502 and b"unreachable" in never.body


class FlakyRegistry:
    """A registry stub with one image manifest per repository; ``failing`` makes it answer that status."""

    def __init__(self) -> None:
        self.failing: int | None = None
        self.manifest = orjson.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                                      "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                                 "digest": "sha256:" + "c" * 64, "size": 2},
                                      "layers": []})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = BackgroundApp(app)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path in ("/v2/", "/v2"):
            return web.json_response({})
        if self.failing is not None:
            return web.json_response({"errors": []}, status=self.failing)
        if "/manifests/" in request.path:
            return web.Response(body=self.manifest, headers={"Content-Type": DOCKER_MANIFEST,
                                                             "Docker-Content-Digest": sha256_digest(self.manifest)})
        return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)


@pytest.mark.parametrize("status", [503, 429])
def test_a_failing_registry_serves_the_last_good_manifest_to_that_repository_only(wave_factory: Any,
                                                                                 status: int) -> None:
    stub = FlakyRegistry()
    stub.server.start()
    try:
        wave = wave_factory(upstream_retries=1)
        host = f"127.0.0.1:{stub.server.port}"
        before = wave.submit({"containerImage": f"{host}/lab/app:1.0"})
        name, _, tag = before["targetImage"].partition("/")[2].rpartition(":")
        assert "warning" not in wave.request("GET", f"/v2/{name}/manifests/{tag}").headers
        stub.failing = status
        after = wave.submit({"containerImage": f"{host}/lab/app:1.0"})
        name, _, tag = after["targetImage"].partition("/")[2].rpartition(":")
        got = wave.request("GET", f"/v2/{name}/manifests/{tag}")
        assert got.status == 200 and got.body == stub.manifest
        assert got.headers["warning"].startswith("110 ")
        # another repository on the same registry was never resolved: nothing to fall back on
        other = wave.request("POST", "/v1alpha2/container", {"containerImage": f"{host}/lab/other:1.0"})
        assert other.status in (429, 502, 503)
        stub.failing = None  # back again: the next resolution is fresh (a stale one is retried after 30 s)
        fresh = wave.submit({"containerImage": f"{host}/lab/app:1.0"})
        name, _, tag = fresh["targetImage"].partition("/")[2].rpartition(":")
        assert "warning" not in wave.request("GET", f"/v2/{name}/manifests/{tag}").headers
    finally:
        stub.server.stop()
