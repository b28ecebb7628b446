"""The upstream client against scripted registries on loopback: auth flows, retries, redirects."""

from __future__ import annotations

import base64
import hashlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from wave.config import load_settings
from wave.errors import Denied, DigestInvalid, ManifestInvalid, ManifestUnknown, UpstreamUnavailable
from wave.http import AddressGuard, create_client_session, policy_for
from wave.oci.reference import parse_reference
from wave.registry.client import RegistryClient

MANIFEST = orjson.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "config": {"digest": "sha256:" + "1" * 64, "size": 2}, "layers": []})
OCI = "application/vnd.oci.image.manifest.v1+json"


class Upstream:
    """A registry whose behaviour each test scripts, recording what it received."""

    def __init__(self) -> None:
        self.seen: list[web.Request] = []
        self.handler: Callable[[web.Request], web.StreamResponse] = lambda r: web.Response(body=MANIFEST,
                                                                                          content_type=OCI)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        answer = self.handler(request)
        return await answer if inspect.isawaitable(answer) else answer


async def _server(upstream: Upstream) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, TestServer]]:
    registry = Upstream()
    server = await _server(registry)
    yield registry, server
    await server.close()


@pytest.fixture
async def client_factory(tmp_path: Any) -> AsyncIterator[Callable[..., RegistryClient]]:
    """Clients on wave's guarded session, with the policy their settings describe."""
    sessions: list[aiohttp.ClientSession] = []

    def make(**overrides: Any) -> RegistryClient:
        settings = load_settings(environ={}, state_dir=tmp_path, **overrides)
        session = create_client_session(settings, AddressGuard(policy_for(settings)))
        sessions.append(session)
        return RegistryClient(session, settings)

    yield make
    for session in sessions:
        await session.close()


def ref(server: TestServer, name: str = "library/busybox:latest") -> Any:
    return parse_reference(f"127.0.0.1:{server.port}/{name}")


async def test_bearer_challenge_is_answered_and_the_token_reused(upstream: Any, client_factory: Any) -> None:
    registry, server = upstream
    tokens_issued = []

    def handler(request: web.Request) -> web.Response:
        if request.path == "/token":
            assert request.query["scope"] == "repository:library/busybox:pull"
            assert request.query["service"] == "test-registry"
            tokens_issued.append(1)
            return web.json_response({"token": "t0k3n", "expires_in": 300})
        if request.headers.get("Authorization") != "Bearer t0k3n":
            realm = f"http://127.0.0.1:{server.port}/token"
            return web.Response(status=401, headers={
                "WWW-Authenticate": f'Bearer realm="{realm}",service="test-registry",scope="x"'})
        return web.Response(body=MANIFEST, content_type=OCI)

    registry.handler = handler
    client = client_factory()
    for _ in range(3):
        manifest = await client.get_manifest(ref(server))
        assert manifest.data == MANIFEST and manifest.media_type == OCI
    assert len(tokens_issued) == 1


async def test_basic_challenge_uses_the_configured_credentials(upstream: Any, client_factory: Any) -> None:
    registry, server = upstream
    expected = "Basic " + base64.b64encode(b"alice:pa:ss").decode()

    def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="test"'})
        return web.Response(body=MANIFEST, content_type=OCI)

    registry.handler = handler
    client = client_factory(registry_credentials={f"127.0.0.1:{server.port}": ("alice", "pa:ss")})
    assert (await client.get_manifest(ref(server))).data == MANIFEST
    anonymous = client_factory()
    with pytest.raises(Denied) as denied:
        await anonymous.get_manifest(ref(server))
    assert "pa:ss" not in denied.value.message


async def test_transient_5xx_is_retried_and_404_is_not(upstream: Any, client_factory: Any) -> None:
    registry, server = upstream
    answers = [503, 502, 200]

    def handler(request: web.Request) -> web.Response:
        status = answers.pop(0) if answers else 404
        return web.Response(status=status, body=MANIFEST if status == 200 else b"", content_type=OCI)

    registry.handler = handler
    client = client_factory(upstream_retries=3)
    assert (await client.get_manifest(ref(server))).data == MANIFEST
    seen_before = len(registry.seen)
    with pytest.raises(ManifestUnknown):
        await client.get_manifest(ref(server, "library/busybox:missing"))
    assert len(registry.seen) == seen_before + 1


async def test_persistent_5xx_is_an_upstream_error_naming_the_registry(upstream: Any, client_factory: Any) -> None:
    registry, server = upstream
    registry.handler = lambda request: web.Response(status=500)
    with pytest.raises(UpstreamUnavailable) as error:
        await client_factory(upstream_retries=2).get_manifest(ref(server))
    assert f"127.0.0.1:{server.port}" in error.value.message and "500" in error.value.message


async def test_redirect_to_another_host_drops_the_authorization(client_factory: Any) -> None:
    cdn, origin = Upstream(), Upstream()
    cdn_server, origin_server = await _server(cdn), await _server(origin)
    try:
        cdn.handler = lambda request: web.Response(body=MANIFEST, content_type=OCI)

        def origin_handler(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") is None:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
            # localhost and 127.0.0.1 are different hosts to a client: a stand-in for a CDN
            raise web.HTTPTemporaryRedirect(f"http://localhost:{cdn_server.port}/signed/manifest?sig=abc")

        origin.handler = origin_handler
        client = client_factory(registry_credentials={f"127.0.0.1:{origin_server.port}": ("alice", "secret")},
                                layer_allowed_hosts=("localhost",))  # the operator trusts this internal "CDN"
        manifest = await client.get_manifest(ref(origin_server))
        assert manifest.data == MANIFEST
        assert cdn.seen and all("Authorization" not in r.headers for r in cdn.seen)
    finally:
        await cdn_server.close()
        await origin_server.close()


async def test_digest_reference_is_verified(upstream: Any, client_factory: Any) -> None:
    _, server = upstream
    good = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
    assert (await client_factory().get_manifest(ref(server, f"library/busybox@{good}"))).digest == good
    with pytest.raises(DigestInvalid):
        await client_factory().get_manifest(ref(server, "library/busybox@sha256:" + "2" * 64))


async def test_redirect_or_token_realm_to_an_internal_address_is_refused(upstream: Any, client_factory: Any) -> None:
    registry, server = upstream
    registry.handler = lambda request: web.Response(status=302, headers={
        "Location": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"})
    with pytest.raises(Denied, match="internal address"):
        await client_factory().get_manifest(ref(server))
    registry.handler = lambda request: web.Response(status=401, headers={
        "WWW-Authenticate": 'Bearer realm="http://10.0.0.1/token",service="x"'})
    with pytest.raises(Denied, match="internal address"):
        await client_factory().get_manifest(ref(server))
    assert all(r.path.startswith("/v2/") for r in registry.seen)


async def test_a_manifest_without_length_is_read_only_up_to_the_limit(upstream: Any, client_factory: Any) -> None:
    registry, server = upstream

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": OCI})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(6):  # 6 MiB, chunked: no Content-Length to refuse it by
            await response.write(b" " * (1 << 20))
        return response

    registry.handler = endless  # type: ignore[assignment]
    with pytest.raises(ManifestInvalid, match="larger than"):
        await client_factory().get_manifest(ref(server))
