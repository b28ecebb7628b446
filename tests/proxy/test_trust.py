"""Probes a hostile caller would try, against wave deployed as on a server: every internal target refused
before any connection, with an error that names the setting.

wave runs on loopback here, where it would trust loopback by default; so each wave is configured as a server
that does not listen on loopback would be: ``WAVE_TRUSTED_HOSTS`` lists the lab registry (or the scripted
upstream) by ``host:port`` only, or ``none`` with credentials for one registry. Each internal target is a
canary — a loopback listener counting connections — which must see none.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.support.canary import Canary
from tests.support.registry import Registry
from tests.support.wave import BackgroundApp, WaveServer

OCI = "application/vnd.oci.image.manifest.v1+json"
MANIFEST = orjson.dumps({"schemaVersion": 2, "mediaType": OCI,
                         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                    "digest": "sha256:" + "1" * 64, "size": 2}, "layers": []})
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
BLOB = "sha256:" + "2" * 64
Handler = Callable[[web.Request], Any]


class ScriptedRegistry(BackgroundApp):
    """An upstream on loopback: it answers ``/v2/`` and manifests like a registry, and does whatever a test
    scripts for the rest (``handler`` returns a response, or None for the registry's own answer)."""

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app)
        self.handler: Handler = lambda request: None
        self.seen: list[str] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(f"{request.method} {request.path_qs}")
        answer = self.handler(request)
        answer = await answer if inspect.isawaitable(answer) else answer
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        if "/manifests/" in request.path:
            return web.Response(body=MANIFEST, headers={"Content-Type": OCI, "Docker-Content-Digest": MANIFEST_DIGEST})
        if request.path == "/token":
            return web.json_response({"token": "t0k3n", "expires_in": 300})
        return web.Response(status=200 if request.path == "/v2/" else 404)


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as listener:
        yield listener


@pytest.fixture
def upstream() -> Iterator[ScriptedRegistry]:
    server = ScriptedRegistry().start()
    yield server
    server.stop()


def refused(wave: WaveServer, body: dict[str, Any], *expected: str) -> str:
    got = wave.request("POST", "/v1alpha2/container", body)
    assert got.status == 400, got.body
    message = str(got.json()["message"])  # type: ignore[index]
    for text in ("internal address", "WAVE_TRUSTED_HOSTS", *expected):
        assert text in message, message
    return message


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- what a request names ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_container_image_on_an_internal_address(wave_factory: Any, registry: Registry, canary: Canary,
                                                host: str) -> None:
    wave = wave_factory(trusted_hosts=(registry.host,))
    message = refused(wave, {"containerImage": f"{host}:{canary.port}/library/busybox:latest"})
    assert f"registry {host}:{canary.port} is an internal address; trust it with WAVE_TRUSTED_HOSTS" in message
    assert canary.connections() == 0
    wave.submit({"containerImage": registry.ref("library/busybox:latest")})  # the trusted registry works


def test_container_image_on_an_internal_address_is_reached_once_trusted(wave_factory: Any, canary: Canary) -> None:
    """The control: the same probe, trusted, reaches the canary (which hangs up: the registry is unreachable)."""
    wave = wave_factory(trusted_hosts=(canary.host,), upstream_retries=1)
    got = wave.request("POST", "/v1alpha2/container", {"containerImage": f"{canary.host}/library/busybox:latest"})
    assert got.status >= 500 and canary.connections() >= 1


def test_from_image_on_an_internal_address(wave_factory: Any, registry: Registry, canary: Canary) -> None:
    wave = wave_factory(trusted_hosts=(registry.host,), build_repo=f"{registry.host}/wave/builds")
    file = f"FROM {registry.host}/library/busybox:latest AS base\nFROM {canary.host}/library/redis:7\nFROM base\n"
    refused(wave, {"containerFile": b64(file)}, f"FROM image {canary.host}/library/redis:7",
            f"registry {canary.host} is an internal address")
    assert canary.connections() == 0


@pytest.mark.parametrize("field", ["buildRepository", "cacheRepository"])
def test_build_or_cache_repository_on_an_internal_address(wave_factory: Any, registry: Registry, canary: Canary,
                                                          field: str) -> None:
    wave = wave_factory(trusted_hosts=(registry.host,), build_repo=f"{registry.host}/wave/builds")
    body = {"containerFile": b64(f"FROM {registry.host}/library/busybox:latest\n"), field: f"{canary.host}/wave/x"}
    refused(wave, body, f"{field} {canary.host}/wave/x")
    assert canary.connections() == 0


def test_layer_url_on_an_internal_address(wave_factory: Any, registry: Registry, canary: Canary) -> None:
    wave = wave_factory(trusted_hosts=(registry.host,))
    layer = {"location": f"{canary.url}/layer.tar.gz", "gzipDigest": "sha256:" + "3" * 64, "gzipSize": 10,
             "tarDigest": "sha256:" + "4" * 64}
    body = {"containerImage": registry.ref("library/busybox:latest"), "containerConfig": {"layers": [layer]}}
    refused(wave, body, f"containerConfig.layers[0].location names host {canary.host}, an internal address")
    assert canary.connections() == 0


# --- where an upstream sends wave --------------------------------------------------------------------


@pytest.mark.parametrize("target", ["127.0.0.1", "localhost"])  # 127.0.0.1: the upstream's host, another port
def test_upstream_redirect_to_an_internal_address(wave_factory: Any, upstream: ScriptedRegistry, canary: Canary,
                                                  target: str) -> None:
    wave = wave_factory(trusted_hosts=(upstream.host,), upstream_retries=1)
    upstream.handler = lambda r: (web.Response(status=307, headers={"Location": f"http://{target}:{canary.port}/m"})
                                  if "/manifests/" in r.path else None)
    refused(wave, {"containerImage": f"{upstream.host}/library/busybox:latest"},
            f"registry {upstream.host} redirected wave to {target}:{canary.port}, an internal address")
    assert canary.connections() == 0


def test_token_realm_on_an_internal_address_fails_that_request_only(wave_factory: Any, upstream: ScriptedRegistry,
                                                                   canary: Canary) -> None:
    wave = wave_factory(trusted_hosts=(upstream.host,), upstream_retries=1)
    realm = {"url": f"{canary.url}/token"}

    def handler(request: web.Request) -> web.Response | None:
        if "/manifests/" in request.path and request.headers.get("Authorization") != "Bearer t0k3n":
            return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm["url"]}",service="x"'})
        return None

    upstream.handler = handler
    refused(wave, {"containerImage": f"{upstream.host}/library/busybox:latest"},
            f"registry {upstream.host} sent wave for a token to {canary.host}, an internal address")
    assert canary.connections() == 0
    # The registry fixes its realm: the challenge is learned again, not remembered as refused.
    realm["url"] = f"http://{upstream.host}/token"
    assert wave.submit({"containerImage": f"{upstream.host}/library/busybox:latest"})["containerToken"]
    assert any(seen.startswith("GET /token?") for seen in upstream.seen)


def test_credentialed_registry_is_trusted_on_its_own_port_only(wave_factory: Any, upstream: ScriptedRegistry,
                                                               canary: Canary) -> None:
    wave = wave_factory(trusted_hosts=("none",), registry_credentials={upstream.host: ("alice", "secret")},
                        upstream_retries=1)
    assert wave.submit({"containerImage": f"{upstream.host}/library/busybox:latest"})["containerToken"]
    upstream.handler = lambda r: (web.Response(status=302, headers={"Location": f"{canary.url}/v2/redis"})
                                  if "/manifests/" in r.path else None)
    refused(wave, {"containerImage": f"{upstream.host}/library/busybox:v2"},
            f"redirected wave to {canary.host}, an internal address")
    assert canary.connections() == 0


# --- where wave sends the client ---------------------------------------------------------------------


@pytest.mark.parametrize(("location", "why"), [
    ("{canary}/blob", "names host {canary_host}, an internal address; trust it with WAVE_TRUSTED_HOSTS"),
    ("http://169.254.169.254/latest/meta-data/", "names host 169.254.169.254:80, an internal address"),
    ("http://[64:ff9b::a9fe:a9fe]/latest/", "an internal address"),
    ("file:///etc/passwd", "must be an http(s) URL with a host"),
    ("gopher://{canary_host}/_INFO", "must be an http(s) URL with a host"),
])
def test_upstream_blob_redirect_to_an_internal_address_is_an_oci_error(
        wave_factory: Any, upstream: ScriptedRegistry, canary: Canary, location: str, why: str) -> None:
    wave = wave_factory(trusted_hosts=(upstream.host,))
    answer = wave.submit({"containerImage": f"{upstream.host}/library/busybox:latest"})
    target = location.format(canary=canary.url, canary_host=canary.host)
    upstream.handler = lambda r: (web.Response(status=307, headers={"Location": target})
                                  if "/blobs/" in r.path else None)
    got = wave.request("GET", f"/v2/wt/{answer['containerToken']}/library/busybox/blobs/{BLOB}")
    assert got.status == 403 and "location" not in got.headers
    error = got.json()["errors"][0]  # type: ignore[index]
    assert error["code"] == "DENIED"
    assert f"registry {upstream.host} redirected blob {BLOB} to a URL that" in error["message"]
    assert why.format(canary_host=canary.host) in error["message"]
    assert canary.connections() == 0


def test_upstream_blob_redirect_to_a_public_or_trusted_host_is_passed_on(wave_factory: Any,
                                                                         upstream: ScriptedRegistry) -> None:
    wave = wave_factory(trusted_hosts=(upstream.host,))
    answer = wave.submit({"containerImage": f"{upstream.host}/library/busybox:latest"})
    for location in (f"http://{upstream.host}/cdn/blob?sig=1", "https://93.184.216.34/blob?sig=2"):
        upstream.handler = lambda r, where=location: (web.Response(status=307, headers={"Location": where})
                                                      if "/blobs/" in r.path else None)
        got = wave.request("GET", f"/v2/wt/{answer['containerToken']}/library/busybox/blobs/{BLOB}")
        assert got.status == 307 and got.headers["location"] == location


def test_start_up_logs_the_policy_in_one_line(wave_factory: Any, registry: Registry,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wave")
    wave_factory(trusted_hosts=(registry.host,), registry_credentials={"127.0.0.1:5501": ("u", "p")})
    wave_factory()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("address policy:")]
    assert lines == [
        f"address policy: internal addresses refused; trusted: {registry.host}, 127.0.0.1:5501 (registry credentials)",
        "address policy: loopback trusted because wave listens on a loopback address (WAVE_TRUSTED_HOSTS unset); "
        "other internal addresses refused",
    ]



SPELLINGS = ["127.0.0.1", "localhost", "LOCALHOST", "127.1", "127.0.1", "2130706433", "0x7f000001", "0177.0.0.1",
             "0.0.0.0", "0", "[::ffff:7f00:1]", "[::7f00:1]", "[::1]", "127.0.0.2", "127.255.255.254"]


def test_every_spelling_of_loopback_in_container_image_is_refused_before_connecting(
        wave_factory: Any, registry: Registry, canary: Canary) -> None:
    """The sweep a hostile caller runs: each form is refused (or is no image reference at all), none connects."""
    wave = wave_factory(trusted_hosts=(registry.host,), upstream_retries=1)
    answers = {}
    for host in SPELLINGS:
        got = wave.request("POST", "/v1alpha2/container", {"containerImage": f"{host}:{canary.port}/library/x:1"})
        answers[host] = (got.status, str(got.json()["message"]))  # type: ignore[index]
    assert canary.connections() == 0
    for host, (status, message) in answers.items():
        assert status == 400, (host, message)
        assert ("internal address" in message and "WAVE_TRUSTED_HOSTS" in message) or (
            "not a canonical IP address" in message), (host, message)
