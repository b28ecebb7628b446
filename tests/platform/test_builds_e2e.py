"""Builds of a Platform user: FROM an image only their credentials open, and a freeze pushed to their own
private repository; the same Dockerfile from another user never shares the build or its image."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.platform.conftest import WORKSPACE, PairedWave
from tests.support.clients import Podman, have, skopeo_inspect
from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.platform import FakePlatform
from tests.support.registry import Registry
from wave import keys
from wave.builds.launchers import local

pytestmark = pytest.mark.skipif(not have("buildah"), reason="buildah missing (apt-get install buildah)")


@pytest.fixture
def building(wave_factory: Any, platform: FakePlatform, basic_registry: Registry, registry: Registry) -> PairedWave:
    """A wave building into the open registry, paired with the fake Platform; alice holds the private (basic
    auth) registry's credentials, bob does not."""
    wave = wave_factory(platform_endpoints=(platform.endpoint,), build_repo=f"{registry.host}/wave/builds",
                        build_timeout=300)
    pairing = platform.pair(wave.url)
    alice = platform.add_user("alice", "alice@example.org")
    platform.add_credentials(alice, basic_registry.host, REG_USER, REG_PASSWORD, workspace=WORKSPACE)
    bob = platform.add_user("bob", "bob@other.org")
    return PairedWave(wave, platform, pairing, basic_registry, alice, bob)


def dockerfile(paired: PairedWave, marker: str) -> str:
    text = f"FROM {paired.registry.ref('library/busybox:latest')}\nRUN echo {marker} > /marker\n"
    return base64.b64encode(text.encode()).decode()


def build_body(paired: PairedWave, user: Any, marker: str, **extra: Any) -> dict[str, Any]:
    body = paired.body(user, **extra)
    body.pop("containerImage")
    body["containerFile"] = dockerfile(paired, marker)
    return body


def test_a_build_from_a_private_image_uses_the_users_credentials(building: PairedWave, podman: Podman,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    argvs: list[list[str]] = []
    real = local.run_logged

    async def recording(argv: Any, *args: Any, **kwargs: Any) -> Any:
        argvs.append(list(argv))
        return await real(argv, *args, **kwargs)

    monkeypatch.setattr(local, "run_logged", recording)
    answer = building.wave.submit(build_body(building, building.alice, "alice-build"))
    status = building.wave.completed_build(answer["buildId"])
    log = building.wave.request("GET", f"/v1alpha1/builds/{answer['buildId']}/logs").body.decode()
    assert status["succeeded"] is True, log
    podman.pull(answer["targetImage"])
    assert podman.run(answer["targetImage"], "cat", "/marker").strip() == "alice-build"
    # the record carries the user; the password was never on a command line or in the build log
    record = building.wave.call(building.wave.app[keys.BUILDS]._records.get(answer["buildId"]))
    assert record is not None and record.user_name == "alice" and record.user_email == "alice@example.org"
    assert REG_PASSWORD not in log
    assert argvs and all(REG_PASSWORD not in arg and building.alice.access_token not in arg
                         for argv in argvs for arg in argv)
    encoded = base64.b64encode(f"{REG_USER}:{REG_PASSWORD}".encode()).decode()
    assert not any(encoded in arg for argv in argvs for arg in argv)


def test_the_same_dockerfile_from_another_user_is_their_own_build_and_fails_without_credentials(
        building: PairedWave) -> None:
    alice = building.wave.submit(build_body(building, building.alice, "shared"))
    assert building.wave.completed_build(alice["buildId"])["succeeded"] is True
    bob = building.wave.submit(build_body(building, building.bob, "shared"))
    assert bob["targetImage"] != alice["targetImage"]  # alice's image (from her private base) is not his
    status = building.wave.completed_build(bob["buildId"])
    assert status["succeeded"] is False
    anonymous = building.wave.submit(build_body(building, None, "shared"))
    assert anonymous["targetImage"] not in (alice["targetImage"],)


def test_a_freeze_pushes_to_the_users_private_repository(building: PairedWave) -> None:
    repo = building.registry.ref("alice/frozen")
    answer = building.wave.submit(paired_freeze(building, repo))
    assert answer["freeze"] is True and answer["targetImage"].startswith(repo + ":")
    status = building.wave.completed_build(answer["buildId"])
    log = building.wave.request("GET", f"/v1alpha1/builds/{answer['buildId']}/logs").body.decode()
    assert status["succeeded"] is True, log
    assert skopeo_inspect(answer["targetImage"], creds=f"{REG_USER}:{REG_PASSWORD}")["Name"].endswith("alice/frozen")


def paired_freeze(paired: PairedWave, repo: str) -> dict[str, Any]:
    body = paired.body(paired.alice, freeze=True, buildRepository=repo,
                       containerConfig={"env": ["FROZEN=yes"]})
    return body
