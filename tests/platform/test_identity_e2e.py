"""End to end: a Platform user's token opens their private registry through wave, and nobody else's does.

Everything on wave's side is real (the pairing WebSocket, the HTTP calls to Platform, the decryption, the
registry client); the Platform is the fake of tests.support.platform, the registry a real basic-auth
docker-registry whose password only the user's Platform credentials hold.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.platform.conftest import WORKSPACE, PairedWave
from tests.support.clients import Podman, missing_tools, skopeo_copy, skopeo_inspect
from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.images import push_lab_images
from tests.support.platform import FakePlatform
from tests.support.registry import Registry, start_registry
from tests.support.wave import WaveServer
from wave import keys
from wave.config import parse_rate


def secrets_of(paired: PairedWave) -> list[str]:
    users = [paired.alice, paired.bob]
    return [REG_PASSWORD, "license-token", *(u.access_token for u in users), *(u.refresh_token for u in users)]


def assert_no_secret(text: str | bytes, secrets: list[str], where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in secrets:
        assert secret.encode() not in data, f"a secret ({secret[:4]}…) is in {where}"


def test_the_users_token_pulls_their_private_image_with_skopeo_and_podman(paired: PairedWave, tmp_path: Path,
                                                                         podman: Podman) -> None:
    answer = paired.wave.submit(paired.body(paired.alice))
    target = answer["targetImage"]
    assert skopeo_inspect(target)["Name"].endswith("library/busybox")
    skopeo_copy(target, tmp_path / "copy")
    assert (tmp_path / "copy" / "manifest.json").exists()
    podman.pull(target)
    assert podman.run(target, "echo", "hello from alice").strip() == "hello from alice"
    # Platform was asked through the pairing socket, with the pairing id wave announced
    assert paired.platform.proxied > 0
    assert any(c.startswith("GET /api/credentials?workspaceId=123") for c in paired.platform.calls)
    assert any(f"pairingId={paired.pairing.pairing_id}" in c for c in paired.platform.calls)


def test_another_users_token_is_refused_saying_which_credentials_were_missing(paired: PairedWave) -> None:
    paired.wave.submit(paired.body(paired.alice))  # alice's credentials are cached now: bob must not get them
    response = paired.wave.request("POST", "/v1alpha2/container", paired.body(paired.bob))
    assert response.status == 400, response.body
    message = response.json()["message"]  # type: ignore[index]
    assert f"no credentials for {paired.registry.host} in workspace {WORKSPACE}" in message
    assert f"Seqera Platform at {paired.platform.endpoint}" in message
    assert "the registry answered 401" in message


def test_an_anonymous_request_is_refused(paired: PairedWave) -> None:
    response = paired.wave.request("POST", "/v1alpha2/container", paired.body(None))
    assert response.status == 400
    assert "denied access" in response.json()["message"]  # type: ignore[index]


def test_a_token_of_alice_does_not_open_the_registry_for_bobs_container_token(paired: PairedWave) -> None:
    """Bob cannot get a token for the private image; alice's container token keeps working."""
    alice = paired.wave.submit(paired.body(paired.alice))
    bob = paired.wave.request("POST", "/v1alpha2/container", paired.body(paired.bob))
    assert bob.status == 400
    name, _, tag = alice["targetImage"].partition("/")[2].rpartition(":")
    got = paired.wave.request("GET", f"/v2/{name}/manifests/{tag}",
                              headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                                                 "application/vnd.docker.distribution.manifest.list.v2+json, "
                                                 "application/vnd.oci.image.manifest.v1+json, "
                                                 "application/vnd.docker.distribution.manifest.v2+json"})
    assert got.status == 200


def test_an_expired_access_token_is_refreshed_once_for_concurrent_requests(paired: PairedWave) -> None:
    paired.platform.expire(paired.alice)
    old_access = paired.alice.access_token
    body = paired.body(paired.alice)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: paired.wave.submit(body), range(4)))
    assert all(a["targetImage"] for a in answers)
    assert paired.platform.refreshes == 1
    # one user-info look-up for the four (refused, then retried once with the new token)
    assert [c for c in paired.platform.calls if c.startswith("GET /api/user-info")] == ["GET /api/user-info"] * 2
    assert paired.alice.access_token != old_access  # rotated by the refresh: wave uses the new one
    # the pull works too, with the refreshed token
    skopeo_inspect(answers[0]["targetImage"])


def test_a_refused_token_is_a_401_that_says_platform_refused_it(paired: PairedWave) -> None:
    body = paired.body(paired.alice)
    body["towerAccessToken"] = "not-a-token"
    body.pop("towerRefreshToken")
    response = paired.wave.request("POST", "/v1alpha2/container", body)
    assert response.status == 401
    message = response.json()["message"]  # type: ignore[index]
    assert "refused the access token" in message and "not-a-token" not in message


def test_a_request_for_an_unpaired_endpoint_is_refused(paired: PairedWave) -> None:
    body = paired.body(paired.alice)
    body["towerEndpoint"] = "http://127.0.0.1:9/api"
    response = paired.wave.request("POST", "/v1alpha2/container", body)
    assert response.status == 400
    assert response.json() == {"message": "Missing pairing record for Tower endpoint 'http://127.0.0.1:9/api'"}
    default = paired.body(paired.alice)
    default.pop("towerEndpoint")  # the default endpoint, never paired here (and never called)
    response = paired.wave.request("POST", "/v1alpha2/container", default)
    assert response.json() == {"message": "Missing pairing record for Tower endpoint 'https://api.cloud.seqera.io'"}


def test_pairing_from_an_endpoint_not_allowed_is_refused(paired: PairedWave) -> None:
    assert paired.platform.pair_status(paired.wave.url, "http://127.0.0.1:9/api") == 403
    assert paired.platform.pair_status(paired.wave.url, paired.platform.endpoint) == 101


def test_without_a_socket_wave_calls_platform_directly(paired: PairedWave) -> None:
    paired.platform.unpair(paired.pairing)
    proxied = paired.platform.proxied
    answer = paired.wave.submit(paired.body(paired.alice))
    skopeo_inspect(answer["targetImage"])
    assert paired.platform.proxied == proxied
    assert any(c.startswith("GET /api/user-info") for c in paired.platform.calls)


def test_the_token_shows_its_user_and_metrics_count_by_user_and_org(paired: PairedWave) -> None:
    for _ in range(2):
        answer = paired.wave.submit(paired.body(paired.alice))
        skopeo_inspect(answer["targetImage"])
    described = paired.wave.request("GET", f"/container-token/{answer['containerToken']}").json()
    assert described["user"] == {"userName": "alice", "userId": paired.alice.id,  # type: ignore[index]
                                 "workspaceId": WORKSPACE, "towerEndpoint": paired.platform.endpoint}
    assert "alice@example.org" not in str(described)
    events = paired.wave.app[keys.EVENTS]
    deadline = time.monotonic() + 10  # pulls are counted in the background
    while paired.wave.call(events.counter("pulls", org="example.org")) < 2:
        assert time.monotonic() < deadline, "the pulls were never counted for example.org"
        time.sleep(0.05)
    assert paired.wave.call(events.counter("pulls", org="other.org")) == 0
    from wave.metrics import Window
    assert paired.wave.call(events.grouped("pulls", "user", Window())) == {"alice@example.org": 2}


def test_secrets_are_never_in_logs_responses_or_the_store(paired: PairedWave, caplog: pytest.LogCaptureFixture,
                                                          tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = []
    answer = paired.wave.submit(paired.body(paired.alice))
    bodies.append(str(answer))
    skopeo_copy(answer["targetImage"], tmp_path / "copy")
    bodies.append(paired.wave.request("GET", f"/container-token/{answer['containerToken']}").body.decode())
    bodies.append(paired.wave.request("POST", "/v1alpha2/container", paired.body(paired.bob)).body.decode())
    secrets = secrets_of(paired)
    assert_no_secret("\n".join(bodies), secrets, "a response")
    assert_no_secret("\n".join(r.getMessage() for r in caplog.records), secrets, "the log")
    state = paired.wave.settings.state_dir
    for path in state.rglob("*"):
        if path.is_file() and path.name != "secret.key":
            assert_no_secret(path.read_bytes(), secrets, f"the store ({path.name})")


def test_a_wave_without_the_endpoint_allowed_refuses_the_pairing(wave: WaveServer, platform: FakePlatform) -> None:
    """The default allows only https://api.cloud.seqera.io to pair."""
    assert platform.pair_status(wave.url, platform.endpoint) == 403


def test_inspect_uses_the_users_credentials(paired: PairedWave) -> None:
    got = paired.wave.request("POST", "/v1alpha1/inspect", paired.body(paired.alice))
    assert got.status == 200, got.body
    assert got.json()["container"]["repository"] == "library/busybox"  # type: ignore[index]
    refused = paired.wave.request("POST", "/v1alpha1/inspect", paired.body(paired.bob))
    assert refused.status == 400
    assert f"no credentials for {paired.registry.host} in workspace {WORKSPACE}" in refused.body.decode()


def test_with_pairing_tokens_only_those_license_tokens_pair(wave_factory: Any, platform: FakePlatform) -> None:
    digest = hashlib.sha256(b"the-real-license").hexdigest()
    wave = wave_factory(platform_endpoints=(platform.endpoint,), pairing_tokens=(digest,))
    assert platform.pair_status(wave.url, platform.endpoint) == 403  # "license-token"
    pairing = platform.pair(wave.url, license_token="the-real-license")
    assert pairing.pairing_id.isdigit()


def test_user_info_and_credentials_are_cached_per_user(paired: PairedWave) -> None:
    paired.wave.submit(paired.body(paired.alice, image="library/busybox:latest"))
    before = list(paired.platform.calls)
    paired.wave.submit(paired.body(paired.alice, image="library/busybox:latest", containerPlatform="linux/arm64"))
    assert paired.platform.calls == before  # the same user within a minute: nothing asked again
    paired.wave.request("POST", "/v1alpha2/container", paired.body(paired.bob))
    assert any(c.startswith("GET /api/user-info") for c in paired.platform.calls[len(before):])


def test_a_bearer_registry_private_repository_opens_with_the_users_credentials_only(
        wave_factory: Any, platform: FakePlatform, bearer_registry: Registry, tmp_path: Path) -> None:
    """Docker Hub-like auth: tokens from the realm, per user credentials (never one user's token for another)."""
    wave = wave_factory(platform_endpoints=(platform.endpoint,))
    platform.pair(wave.url)
    alice, bob = platform.add_user("alice", "alice@example.org"), platform.add_user("bob", "bob@other.org")
    platform.add_credentials(alice, bearer_registry.host, REG_USER, REG_PASSWORD)

    def body(user: Any) -> dict[str, Any]:
        return {"containerImage": bearer_registry.ref("private/busybox:latest"), "towerAccessToken": user.access_token,
                "towerEndpoint": platform.endpoint}

    answer = wave.submit(body(alice))
    skopeo_copy(answer["targetImage"], tmp_path / "copy")
    refused = wave.request("POST", "/v1alpha2/container", body(bob))
    assert refused.status == 400
    message = refused.json()["message"]  # type: ignore[index]
    assert f"no credentials for {bearer_registry.host} in the personal workspace of bob" in message, message


def test_without_anonymous_access_a_platform_token_is_required(wave_factory: Any, platform: FakePlatform,
                                                               basic_registry: Registry) -> None:
    wave = wave_factory(platform_endpoints=(platform.endpoint,), allow_anonymous=False)
    platform.pair(wave.url)
    alice = platform.add_user("alice", "alice@example.org")
    platform.add_credentials(alice, f"https://{basic_registry.host}/", REG_USER, REG_PASSWORD)  # as users write it
    image = basic_registry.ref("library/busybox:latest")
    refused = wave.request("POST", "/v1alpha2/container", {"containerImage": image})
    assert refused.status == 401 and "towerAccessToken" in refused.body.decode()
    wave.submit({"containerImage": image, "towerAccessToken": alice.access_token, "towerEndpoint": platform.endpoint})


def test_user_limits_count_each_platform_user_apart(wave_factory: Any, platform: FakePlatform,
                                                    basic_registry: Registry) -> None:
    """Same client address, two users: each has their own count (limits key on the user, not the IP)."""
    wave = wave_factory(platform_endpoints=(platform.endpoint,), rate_limit_user_pulls=parse_rate("2/1h"))
    platform.pair(wave.url)
    users = [platform.add_user("alice", "alice@example.org"), platform.add_user("carol", "carol@example.org")]
    for user in users:
        platform.add_credentials(user, basic_registry.host, REG_USER, REG_PASSWORD)

    def post(user: Any) -> int:
        return wave.request("POST", "/v1alpha2/container", {
            "containerImage": basic_registry.ref("library/busybox:latest"), "towerAccessToken": user.access_token,
            "towerEndpoint": platform.endpoint}).status

    assert [post(users[0]) for _ in range(3)] == [200, 200, 429]
    assert [post(users[1]) for _ in range(2)] == [200, 200]


def test_aws_credentials_that_get_no_ecr_login_are_named_in_the_refusal(wave_factory: Any, platform: FakePlatform,
                                                                         basic_registry: Registry) -> None:
    wave = wave_factory(platform_endpoints=(platform.endpoint,), ecr_endpoint="http://127.0.0.1:9")  # nothing there
    platform.pair(wave.url)
    carol = platform.add_user("carol", "carol@example.org")
    platform.add_credentials(carol, basic_registry.host, "AKIAEXAMPLE", "aws-secret-key", name="ecr", aws=True)
    response = wave.request("POST", "/v1alpha2/container", {
        "containerImage": basic_registry.ref("library/busybox:latest"), "towerAccessToken": carol.access_token,
        "towerEndpoint": platform.endpoint})
    assert response.status == 400
    message = response.json()["message"]  # type: ignore[index]
    assert "'ecr'" in message and "AWS ECR" in message and "aws-secret-key" not in message, message


def test_aws_credentials_open_an_ecr_registry_through_an_ecr_login(
        wave_factory: Any, platform: FakePlatform, lab_layout: Path, moto_server: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Platform holds AWS keys; wave asks ECR (moto here) for a login and pulls with it."""
    reason = missing_tools("docker-registry", "htpasswd", "skopeo")
    if reason:
        pytest.skip(reason)
    ecr = start_registry(tmp_path_factory.mktemp("ecr"), "basic", "AWS", "123456789012-auth-token")  # moto's login
    try:
        push_lab_images(lab_layout, ecr)
        wave = wave_factory(platform_endpoints=(platform.endpoint,), ecr_endpoint=moto_server)
        platform.pair(wave.url)
        carol = platform.add_user("carol", "carol@example.org")
        platform.add_credentials(carol, ecr.host, "AKIAEXAMPLE", "aws-secret-key", name="ecr", aws=True)
        answer = wave.submit({"containerImage": ecr.ref("library/busybox:latest"),
                              "towerAccessToken": carol.access_token, "towerEndpoint": platform.endpoint})
        skopeo_inspect(answer["targetImage"])
    finally:
        ecr.stop()


def test_while_platform_is_down_the_credentials_it_gave_keep_serving(paired: PairedWave,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import wave.identity

    monkeypatch.setattr(wave.identity, "CREDENTIALS_TTL", 0.001)  # every request would ask Platform again
    paired.wave.submit(paired.body(paired.alice))
    paired.platform.stop()  # Platform gone: the socket closes, direct calls are refused
    answer = paired.wave.submit(paired.body(paired.alice))
    skopeo_inspect(answer["targetImage"])
    failing = paired.wave.request("POST", "/v1alpha2/container", paired.body(paired.bob))
    assert failing.status == 503 and "unreachable" in failing.body.decode()
