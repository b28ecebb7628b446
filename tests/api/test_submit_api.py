"""The control API as a client sees it: contract fields, validation errors, and what it never leaks."""

from __future__ import annotations

import base64
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.registry import Registry
from tests.support.wave import WaveServer
from wave import __version__, keys


def test_container_token_v1_and_v2_answer_the_contract_fields(wave: WaveServer, registry: Registry) -> None:
    for path in ("/container-token", "/v1alpha2/container"):
        answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")}, path=path)
        token = answer["containerToken"]
        assert re.fullmatch(r"[0-9a-f]{32,}", token)  # >= 128 random bits, lowercase
        assert answer["targetImage"] == f"{wave.host}/wt/{token}/library/busybox:latest"
        expires = datetime.strptime(answer["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        remaining = (expires - datetime.now(UTC)).total_seconds()
        assert abs(remaining - wave.settings.token_ttl) < 60


def test_tokens_differ_for_identical_requests(wave: WaveServer, registry: Registry) -> None:
    body = {"containerImage": registry.ref("library/busybox:latest")}
    assert wave.submit(body)["containerToken"] != wave.submit(body)["containerToken"]


def test_target_image_uses_the_public_server_url(wave_factory: Any, registry: Registry) -> None:
    wave = wave_factory(server_url="https://wave.example.org")
    answer = wave.submit({"containerImage": registry.ref("lab/nested/busybox:latest")})
    assert answer["targetImage"].startswith("wave.example.org/wt/")
    assert answer["targetImage"].endswith("/lab/nested/busybox:latest")


def test_image_by_digest_keeps_its_digest_in_the_target(wave: WaveServer, registry: Registry) -> None:
    first = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    head = wave.request("HEAD", "/v2/" + first["targetImage"].split("/", 1)[1].replace(":latest", "/manifests/latest"))
    digest = head.headers["docker-content-digest"]
    answer = wave.submit({"containerImage": registry.ref("library/busybox") + "@" + digest})
    assert answer["targetImage"].endswith(f"/library/busybox@{digest}")


def test_dry_run_answers_without_issuing_a_usable_token(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest"), "dryRun": True})
    path = "/v2/" + answer["targetImage"].split("/", 1)[1].replace(":latest", "/manifests/latest")
    assert wave.request("GET", path).status == 404


def test_fields_real_clients_send_beyond_the_contract_are_accepted(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({
        "containerImage": registry.ref("library/busybox:latest"), "workflowId": "wf-1", "nameStrategy": "none",
        "containerIncludes": [], "mirror": False, "scanMode": "none", "towerEndpoint": "https://api.example",
        "towerWorkspaceId": 1234, "timestamp": "2024-04-09T21:19:01Z",  # Platform tokens: tests/platform
        "fingerprint": "abc",
    })
    assert "containerToken" in answer


@pytest.mark.parametrize(("body", "named"), [
    ({}, "containerImage"),
    ({"containerImage": 42}, "containerImage"),
    ({"containerImage": "Not/Valid:Tag!"}, "containerImage"),
    ({"containerImage": "a/b", "containerFile": "not base64!"}, "containerFile"),
    ({"containerImage": "a/b", "containerConfig": {"env": "A=1"}}, "containerConfig.env"),
    ({"containerImage": "a/b", "containerConfig": {"workingDir": "relative"}}, "workingDir"),
    ({"containerImage": "a/b", "containerConfig": {"layers": [{"location": "ftp://x"}]}}, "layers[0]"),
    ({"containerImage": "a/b", "containerPlatform": "linux/sparc"}, "containerPlatform"),
    ({"containerImage": "a/b", "buildRepository": "UPPER/case"}, "buildRepository"),
    ({"containerImage": "a/b", "freeze": "yes"}, "freeze"),
    ({"containerImage": "a/b", "format": "tar"}, "format"),
    ({"containerImage": "a/b", "condaFile": base64.b64encode(b"x").decode()}, "condaFile"),
    ({"containerImage": "a/b", "towerWorkspaceId": "abc"}, "towerWorkspaceId"),
])
def test_client_mistakes_are_400s_that_name_the_field(wave: WaveServer, body: dict, named: str) -> None:
    got = wave.request("POST", "/v1alpha2/container", body)
    assert got.status == 400, got.body
    assert named in got.json()["message"]  # type: ignore[index]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null"])
def test_a_body_that_is_not_a_json_object_is_a_400(wave: WaveServer, raw: bytes) -> None:
    got = wave.request("POST", "/container-token", raw)
    assert got.status == 400 and "message" in got.json()  # type: ignore[operator]


def test_service_info_answers_version_and_commit(wave_factory: Any) -> None:
    wave = wave_factory(commit_id="abc1234")
    assert wave.request("GET", "/service-info").json() == {
        "serviceInfo": {"version": __version__, "commitId": "abc1234"}}


def test_unknown_route_is_a_json_404(wave: WaveServer) -> None:
    got = wave.request("GET", "/no/such/route")
    assert got.status == 404 and "message" in got.json()  # type: ignore[operator]
    got = wave.request("GET", "/v2/library/busybox/manifests/latest")  # not through a token
    assert got.status == 404 and got.json()["errors"][0]["code"] == "NAME_UNKNOWN"  # type: ignore[index]


def test_credentials_never_appear_in_answers_or_logs(wave_factory: Any, basic_registry: Registry,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    wrong = wave_factory(registry_credentials={basic_registry.host: (REG_USER, "wrong-" + REG_PASSWORD)})
    right = wave_factory(registry_credentials={basic_registry.host: (REG_USER, REG_PASSWORD)})
    with caplog.at_level(logging.DEBUG):
        denied = wrong.request("POST", "/v1alpha2/container",
                               {"containerImage": basic_registry.ref("library/busybox:latest")})
        answer = right.submit({"containerImage": basic_registry.ref("library/busybox:latest")})
        pulled = right.request("GET", "/v2/" + answer["targetImage"].split("/", 1)[1].replace(
            ":latest", "/manifests/latest"))
    assert denied.status == 400 and "denied" in denied.json()["message"]  # type: ignore[index]
    assert pulled.status == 200
    for secret in (REG_PASSWORD, base64.b64encode(f"{REG_USER}:{REG_PASSWORD}".encode()).decode()):
        assert secret not in caplog.text
        assert secret not in denied.body.decode()
    stored = right.call(right.app[keys.TOKENS].get(answer["containerToken"]))
    assert stored is not None and REG_PASSWORD not in stored.to_json().decode()  # Platform tokens: tests/platform


@pytest.mark.parametrize("store_kind", ["embedded", "redis"])
def test_a_container_request_is_one_store_write(wave_factory: Any, registry: Registry, store_kind: str) -> None:
    """Token, inline layer and usage records go in one transaction (embedded) or one pipeline (Redis)."""
    from tests.support.layers import make_layer
    from tests.support.redis_url import database

    if store_kind == "redis":
        import redis

        try:
            redis.Redis.from_url(database(13)).flushdb()
        except redis.ConnectionError:
            pytest.skip("no Redis for the tests (apt-get install redis-server)")
    wave = wave_factory(**({"redis_url": database(13)} if store_kind == "redis" else {}))
    layer = make_layer({"hello.txt": "hi\n"})
    body = {"containerImage": registry.ref("library/busybox:latest"),
            "containerConfig": {"layers": [layer.request()]}}
    wave.submit(body)  # the image is now checked upstream
    store = wave.app[keys.STORE]
    calls: list[str] = []
    for name in ("put", "put_if_absent", "incr", "hincr", "delete", "write_all"):
        original = getattr(store, name)

        def counting(*args: Any, __name: str = name, __original: Any = original, **kwargs: Any) -> Any:
            calls.append(__name)
            return __original(*args, **kwargs)

        setattr(store, name, counting)
    wave.submit(body)
    assert calls == ["write_all"]


@pytest.mark.parametrize("config", [{}, {"env": ["A=1"]}], ids=["plain", "augmented"])
def test_a_platform_a_single_platform_image_lacks_is_a_400_naming_the_images(wave: WaveServer, registry: Registry,
                                                                              config: dict) -> None:
    body = {"containerImage": registry.ref("library/busybox:latest"), "containerPlatform": "linux/arm64",
            "containerConfig": config}
    refused = wave.request("POST", "/v1alpha2/container", body)
    assert refused.status == 400
    message = refused.json()["message"]  # type: ignore[index]
    assert "linux/arm64" in message and "linux/amd64" in message, message
    wave.submit({**body, "containerPlatform": "linux/amd64"})  # the image's own platform is accepted
    wave.submit({**body, "containerPlatform": "linux/x86_64"})  # by any of its names
