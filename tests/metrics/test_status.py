"""Container status, token description and revocation through a real aiohttp server, on both stores.

Tokens are saved straight into the token store (no upstream needed): what these endpoints show depends only
on the stored request and the build service's answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.metrics.conftest import AUTH
from tests.support.registry import basic_auth
from wave import keys
from wave.app import create_app
from wave.builds.records import BuildStatus
from wave.config import Settings
from wave.oci.models import ContainerConfig, Layer
from wave.oci.platform import parse_platform
from wave.oci.reference import parse_reference
from wave.tokens import ContainerRequest, new_token

INLINE = Layer("data:H4sIAAAAAAAAA2NgGAWjgAoAAMB1D0oABAAA", "sha256:" + "1" * 64, 27, "sha256:" + "2" * 64)
REMOTE = Layer("https://fusionfs.seqera.io/layer.tar.gz", "sha256:" + "3" * 64, 1000, "sha256:" + "4" * 64)


class FakeBuilds:
    """The builds service's ``status()``, answering from a dict."""

    def __init__(self) -> None:
        self.statuses: dict[str, BuildStatus] = {}

    async def status(self, build_id: str) -> BuildStatus | None:
        return self.statuses.get(build_id)


@pytest.fixture
async def builds() -> FakeBuilds:
    return FakeBuilds()


@pytest.fixture
async def client(aiohttp_client, settings: Settings, builds: FakeBuilds) -> TestClient:
    app = create_app(settings)

    async def fake_builds(app: web.Application) -> AsyncIterator[None]:
        app[keys.BUILDS] = builds
        yield

    app.cleanup_ctx.append(fake_builds)
    return await aiohttp_client(app)


async def save(client: TestClient, *, build_id: str | None = None, config: ContainerConfig | None = None,
               image: str = "127.0.0.1:5000/library/busybox:1.36") -> ContainerRequest:
    now = time.time()
    request = ContainerRequest(token=new_token(), image=parse_reference(image), config=config or ContainerConfig(),
                               platform=parse_platform("linux/arm64"), created=now - 5, expires=now + 3600,
                               build_id=build_id, user_email="alice@seqera.io", client_ip="10.1.2.3",
                               source_image=image)
    await client.app[keys.TOKENS].save(request)
    return request


async def status_of(client: TestClient, token: str) -> dict:
    response = await client.get(f"/v1alpha2/container/{token}/status")
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_request_without_build_is_done_and_succeeded(client: TestClient) -> None:
    saved = await save(client)
    body = await status_of(client, saved.token)
    assert body["id"] == saved.token and body["status"] == "DONE" and body["succeeded"] is True
    assert body["buildId"] is None and "reason" not in body
    assert body["creationTime"].endswith("Z") and 5 <= body["duration"] < 60


async def test_status_follows_the_build(client: TestClient, builds: FakeBuilds) -> None:
    saved = await save(client, build_id="abc_1")
    assert (await status_of(client, saved.token))["status"] == "PENDING"  # not recorded yet

    started = datetime.now(UTC)
    builds.statuses["abc_1"] = BuildStatus("abc_1", "PENDING", started, None, None, "reg/img:abc")
    body = await status_of(client, saved.token)
    assert body["status"] == "BUILDING" and body["succeeded"] is None and body["buildId"] == "abc_1"

    builds.statuses["abc_1"] = BuildStatus("abc_1", "COMPLETED", started, 12.5, True, "reg/img:abc")
    body = await status_of(client, saved.token)
    assert body["status"] == "DONE" and body["succeeded"] is True and body["duration"] == 12.5
    assert "reason" not in body

    builds.statuses["abc_1"] = BuildStatus("abc_1", "COMPLETED", started, 3.0, False, "reg/img:abc",
                                           reason="exit code 1")
    body = await status_of(client, saved.token)
    assert body["status"] == "DONE" and body["succeeded"] is False and body["reason"] == "exit code 1"


async def test_status_of_an_unknown_token_is_404(client: TestClient) -> None:
    response = await client.get(f"/v1alpha2/container/{new_token()}/status")
    assert response.status == 404
    assert "unknown or expired" in (await response.json())["message"]


async def test_description_shows_the_request_without_secrets(client: TestClient) -> None:
    saved = await save(client, config=ContainerConfig(entrypoint=("/bin/sh",), env=("A=1",),
                                                      layers=(INLINE, REMOTE)))
    response = await client.get(f"/container-token/{saved.token}")
    assert response.status == 200
    body = await response.json()
    assert body["token"] == saved.token and body["expiration"] == saved.expiration
    assert body["request"]["containerImage"] == "127.0.0.1:5000/library/busybox:1.36"
    assert body["request"]["containerPlatform"] == "linux/arm64"
    layers = body["request"]["containerConfig"]["layers"]
    assert layers[0]["location"] == "data:…(27 bytes)" and layers[1]["location"] == REMOTE.location
    assert body["request"]["containerConfig"]["entrypoint"] == ["/bin/sh"]
    assert body["wave"]["image"].endswith(f"/wt/{saved.token}/library/busybox:1.36")
    assert body["wave"]["digest"] is None  # not pulled yet: wave resolves on first pull
    text = await response.text()
    assert "H4sI" not in text and "alice" not in text and "10.1.2.3" not in text


async def test_revocation_needs_credentials_and_takes_effect_at_once(client: TestClient) -> None:
    saved = await save(client)
    manifest = f"/v2/wt/{saved.token}/library/busybox/manifests/1.36"
    refused = await client.delete(f"/container-token/{saved.token}",
                                  headers={"Authorization": basic_auth("operator", "nope")})
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == 'Basic realm="wave"'
    assert (await client.get(f"/container-token/{saved.token}")).status == 200

    revoked = await client.delete(f"/container-token/{saved.token}", headers=AUTH)
    assert revoked.status == 204

    pull = await client.get(manifest)
    assert pull.status == 404
    assert (await pull.json())["errors"][0]["code"] == "NAME_UNKNOWN"
    assert (await client.get(f"/v1alpha2/container/{saved.token}/status")).status == 404
    assert (await client.get(f"/container-token/{saved.token}")).status == 404
    again = await client.delete(f"/container-token/{saved.token}", headers=AUTH)
    assert again.status == 404
