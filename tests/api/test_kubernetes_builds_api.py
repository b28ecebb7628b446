"""A build through the API on the Kubernetes launcher: the real client against the API-server fixture.

The fixture cannot run BuildKit, so the test plays its part: once the Job exists, it pushes an image to the
Job's target (what BuildKit's ``push=true`` output does), then lets the Job succeed.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.builds.k8s_fixture import FakeKubernetes, JobScript, as_v1_job
from tests.support.clients import run_client, skopeo_copy
from tests.support.registry import Registry
from tests.support.wave import BackgroundApp, WaveServer


def test_post_poll_pull_then_cached_on_the_kubernetes_launcher(wave_factory: Any, registry: Registry,
                                                                tmp_path: Path) -> None:
    fake = FakeKubernetes(script=JobScript(outcome="never"))
    cluster = BackgroundApp(fake.app()).start()
    try:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
        wave: WaveServer = wave_factory(build_launcher="kubernetes", k8s_kubeconfig=str(kubeconfig),
                                        build_repo=f"{registry.host}/wave/k8s", build_workspace=tmp_path / "ws",
                                        insecure_registries=(registry.host,))
        dockerfile = f"FROM {registry.host}/library/busybox:latest\nRUN echo k8s-{time.time_ns()}\n"
        answer = wave.submit({"containerFile": base64.b64encode(dockerfile.encode()).decode()})
        build_id = answer["buildId"]

        deadline = time.monotonic() + 30
        while not fake.created:
            assert time.monotonic() < deadline, "no Job was created"
            time.sleep(0.05)
        job = as_v1_job(fake.created[0])
        assert k8s.ApiClient().sanitize_for_serialization(job) == fake.created[0]
        (container,) = job.spec.template.spec.containers
        output = next(a for a in container.args if a.startswith("type=image,name="))
        target = output.split("name=", 1)[1].split(",", 1)[0]
        assert answer["targetImage"].endswith(target.split("/", 1)[1])
        status = wave.request("GET", f"/v1alpha1/builds/{build_id}/status").json()
        assert status["status"] == "PENDING"  # type: ignore[index]

        run_client(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{registry.host}/library/busybox:latest", f"docker://{target}"])
        fake.script.outcome, fake.script.active_polls = "succeeded", 0

        assert wave.completed_build(build_id, timeout=60)["succeeded"] is True
        assert "load build definition" in wave.request("GET", f"/v1alpha1/builds/{build_id}/logs").body.decode()
        skopeo_copy(answer["targetImage"], tmp_path / "pulled")
        assert wave.submit({"containerFile": base64.b64encode(dockerfile.encode()).decode()})["cached"] is True
        assert len(fake.created) == 1 and fake.deleted
    finally:
        cluster.stop()
