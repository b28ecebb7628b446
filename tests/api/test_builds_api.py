"""Builds as a user asks for them: POST a Dockerfile, poll the status, pull and run the image."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import Podman, have, skopeo_copy, skopeo_inspect
from tests.support.registry import Registry
from tests.support.wave import WaveServer

pytestmark = pytest.mark.skipif(not have("buildah"), reason="buildah missing (apt-get install buildah)")


def dockerfile(registry: Registry, marker: str) -> str:
    text = (f"FROM {registry.host}/library/busybox:latest\n"
            f"RUN echo '{marker}' > /marker.txt\n"
            'CMD ["cat", "/marker.txt"]\n')
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def builder(wave_factory: Any, registry: Registry) -> WaveServer:
    return wave_factory(build_repo=f"{registry.host}/wave/builds", build_timeout=300)


def test_dockerfile_build_then_pull_and_run_then_cached(builder: WaveServer, registry: Registry,
                                                        podman: Podman, tmp_path: Path) -> None:
    body = {"containerFile": dockerfile(registry, f"built-{time.time_ns()}")}
    answer = builder.submit(body)
    assert answer["cached"] is False and answer["buildId"]
    assert answer["targetImage"].startswith(f"{builder.host}/wt/{answer['containerToken']}/wave/builds:")
    status = builder.completed_build(answer["buildId"])
    assert status["succeeded"] is True and status["duration"] > 0 and status["id"] == answer["buildId"]
    log = builder.request("GET", f"/v1alpha1/builds/{answer['buildId']}/logs")
    assert log.status == 200 and log.headers["content-type"].startswith("text/plain") and log.body
    skopeo_copy(answer["targetImage"], tmp_path / "copy")
    podman.pull(answer["targetImage"])
    assert podman.run(answer["targetImage"]).strip().startswith("built-")
    again = builder.submit(body)
    assert again["cached"] is True
    assert again["targetImage"].split(":")[-1] == answer["targetImage"].split(":")[-1]


def test_a_pull_during_the_build_waits_for_it(builder: WaveServer, registry: Registry, tmp_path: Path) -> None:
    answer = builder.submit({"containerFile": dockerfile(registry, f"waited-{time.time_ns()}")})
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            skopeo_copy(answer["targetImage"], tmp_path / "during")
        except BaseException as exc:  # reported in the test thread
            errors.append(exc)

    puller = threading.Thread(target=pull)
    puller.start()  # the build is still running: the pull must wait, then succeed
    puller.join(300)
    assert not errors, errors
    assert builder.completed_build(answer["buildId"])["succeeded"] is True
    assert (tmp_path / "during" / "manifest.json").exists()


def test_identical_requests_share_one_build(builder: WaveServer, registry: Registry) -> None:
    body = {"containerFile": dockerfile(registry, f"shared-{time.time_ns()}")}
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(builder.submit(body))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len({r["buildId"] for r in results}) == 1
    assert builder.completed_build(results[0]["buildId"])["succeeded"] is True


def test_failed_build_reports_its_log_and_fails_the_pull_clearly(builder: WaveServer, registry: Registry) -> None:
    text = f"FROM {registry.host}/library/busybox:latest\nRUN echo boom-{time.time_ns()} && exit 3\n"
    answer = builder.submit({"containerFile": base64.b64encode(text.encode()).decode()})
    status = builder.completed_build(answer["buildId"])
    assert status["succeeded"] is False
    log = builder.request("GET", f"/v1alpha1/builds/{answer['buildId']}/logs").body.decode()
    assert "boom-" in log
    tag = answer["targetImage"].rsplit(":", 1)[1]
    pull = builder.request("GET", "/v2/" + answer["targetImage"].split("/", 1)[1].rsplit(":", 1)[0]
                           + f"/manifests/{tag}")
    assert pull.status == 404
    assert "failed" in pull.json()["errors"][0]["message"]  # type: ignore[index]


def test_build_without_a_repository_is_a_400(wave: WaveServer, registry: Registry) -> None:
    got = wave.request("POST", "/v1alpha2/container", {"containerFile": dockerfile(registry, "x")})
    assert got.status == 400 and "WAVE_BUILD_REPO" in got.json()["message"]  # type: ignore[index]


def test_unknown_build_is_a_404(wave: WaveServer) -> None:
    assert wave.request("GET", "/v1alpha1/builds/0123456789abcdef_1/status").status == 404
    assert wave.request("GET", "/v1alpha1/builds/bad%20id/status").status == 400


def test_freeze_pushes_a_real_image_and_answers_without_a_token(builder: WaveServer, registry: Registry) -> None:
    answer = builder.submit({"containerImage": registry.ref("library/busybox:latest"), "freeze": True,
                             "containerConfig": {"env": [f"FROZEN={time.time_ns()}"]}})
    assert "containerToken" not in answer and answer["freeze"] is True
    assert answer["targetImage"].startswith(f"{registry.host}/wave/builds:")
    assert builder.completed_build(answer["buildId"])["succeeded"] is True
    config = skopeo_inspect(answer["targetImage"], config=True)
    assert any(e.startswith("FROZEN=") for e in config["config"]["Env"])


def test_dry_run_of_a_build_names_the_target_and_builds_nothing(builder: WaveServer, registry: Registry) -> None:
    body = {"containerFile": dockerfile(registry, f"dry-{time.time_ns()}"), "dryRun": True}
    answer = builder.submit(body)
    assert "buildId" not in answer and answer["cached"] is False
    tag = answer["targetImage"].rsplit(":", 1)[1]
    real = builder.submit({k: v for k, v in body.items() if k != "dryRun"})
    assert real["targetImage"].rsplit(":", 1)[1] == tag  # the same image a real request builds
    assert real["buildId"].endswith("_1")  # the dry run took no build number
