"""The kubernetes launcher through the real ``kubernetes`` client against the API-server fixture."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.builds.conftest import make_request
from tests.builds.fakes import Registry
from tests.builds.k8s_fixture import TOKEN, FakeKubernetes, JobScript, as_v1_job
from wave.builds.launchers import create_launcher
from wave.builds.launchers.base import BuildJob
from wave.builds.launchers.k8s_job import build_job
from wave.builds.launchers.kubernetes import KubernetesLauncher, load_api_client
from wave.builds.service import BuildOwner, BuildService
from wave.config import Settings, load_settings
from wave.storage.local import LocalStorage
from wave.store.embedded import EmbeddedStore

DOCKERFILE = "FROM alpine:3.19\nRUN echo hi\n"


@pytest.fixture
async def cluster(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[tuple[FakeKubernetes, Path]]:
    fake = FakeKubernetes()
    server = await aiohttp_server(fake.app())
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", str(server.make_url("")).rstrip("/"))
    yield fake, kubeconfig


def k8s_settings(tmp_path: Path, kubeconfig: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        build_launcher="kubernetes", k8s_kubeconfig=str(kubeconfig), build_repo="registry.example.com/wave/builds",
        build_workspace=tmp_path / "workspace", k8s_namespace="wave-build", k8s_service_account="wave-builder",
        k8s_node_selectors={"linux/amd64": "kubernetes.io/arch=amd64", "linux/arm64": "node-pool=arm"},
        k8s_cpu="2", k8s_memory="4Gi", build_timeout=600.0,
    )
    values.update(overrides)
    return load_settings(environ={}, state_dir=tmp_path / "state", **values)


@pytest.fixture
async def service_factory(store: EmbeddedStore, storage: LocalStorage) -> AsyncIterator[Any]:
    services: list[BuildService] = []

    def make(settings: Settings) -> tuple[BuildService, KubernetesLauncher]:
        launcher = KubernetesLauncher(settings, poll_interval=0.02)
        service = BuildService(settings, store, storage, launcher, Registry().exists)
        services.append(service)
        return service, launcher

    yield make
    for service in services:
        await service.close()


async def test_successful_job_completes_the_build_and_is_cleaned_up(
        cluster: tuple[FakeKubernetes, Path], service_factory: Any, tmp_path: Path) -> None:
    fake, kubeconfig = cluster
    settings = k8s_settings(tmp_path, kubeconfig, cache_repo="registry.example.com/wave/cache")
    builds, _ = service_factory(settings)
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=30)
    log = (await builds.logs(ticket.build_id) or b"").decode()
    assert status.succeeded is True, f"{status.reason}\n{log}"
    assert "load build definition from Dockerfile" in log
    assert fake.bad_auth == 0 and len(fake.created) == 1
    name = fake.created[0]["metadata"]["name"]
    assert name == "wave-build-" + ticket.build_id.replace("_", "-")
    assert fake.deleted == [("wave-build", name, "Background")]
    assert any(r.startswith("GET /api/v1/namespaces/wave-build/pods?labelSelector=job-name") for r in fake.requests)
    assert not (settings.build_dir / ticket.build_id).exists()

    job = as_v1_job(fake.created[0])
    assert k8s.ApiClient().sanitize_for_serialization(job) == fake.created[0]  # no field the model lacks
    spec = job.spec
    assert (spec.backoff_limit, spec.active_deadline_seconds) == (0, 600)
    pod = spec.template.spec
    assert pod.restart_policy == "Never" and pod.service_account_name == "wave-builder"
    assert pod.node_selector == {"kubernetes.io/arch": "amd64"}
    assert pod.automount_service_account_token is False
    (container,) = pod.containers
    assert container.image == "moby/buildkit:v0.14.1-rootless"
    assert container.command == ["buildctl-daemonless.sh"]
    workdir = str(settings.build_dir / ticket.build_id)
    cache_ref = f"registry.example.com/wave/cache:{ticket.build_id.split('_')[0]}"
    assert container.args == [
        "build", "--frontend", "dockerfile.v0",
        "--local", f"dockerfile={workdir}", "--local", f"context={workdir}/context",
        "--output", f"type=image,name={ticket.target_image},push=true",
        "--opt", "platform=linux/amd64",
        "--export-cache", f"type=registry,ref={cache_ref},mode=max,image-manifest=true",
        "--import-cache", f"type=registry,ref={cache_ref}",
    ]
    env = {e.name: e.value for e in container.env}
    assert env == {"BUILDKITD_FLAGS": "--oci-worker-no-process-sandbox", "DOCKER_CONFIG": "/home/user/.docker"}
    assert container.resources.requests == {"cpu": "2", "memory": "4Gi"} == container.resources.limits
    assert container.security_context.run_as_user == 1000
    assert container.security_context.seccomp_profile.type == "Unconfined"
    mounts = {m.name: m for m in container.volume_mounts}
    assert mounts["workspace"].mount_path == str(settings.build_dir)
    assert (mounts["registry-auth"].mount_path, mounts["registry-auth"].read_only) == ("/home/user/.docker", True)
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["workspace"].persistent_volume_claim.claim_name == "wave-build-workspace"
    secret = volumes["registry-auth"].secret
    assert secret.secret_name == "wave-registry-credentials"
    assert [(i.key, i.path) for i in secret.items] == [(".dockerconfigjson", "config.json")]
    assert all("password" not in arg.lower() for arg in container.args)


async def test_failed_job_fails_the_build_with_the_pod_log(
        cluster: tuple[FakeKubernetes, Path], service_factory: Any, tmp_path: Path) -> None:
    fake, kubeconfig = cluster
    fake.script = JobScript(outcome="failed", log="#5 ERROR: process \"/bin/sh -c exit 3\" did not complete\n",
                            exit_code=3)
    builds, _ = service_factory(k8s_settings(tmp_path, kubeconfig))
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=30)
    assert status.succeeded is False
    assert "BackoffLimitExceeded" in (status.reason or "") and "exited with code 3" in (status.reason or "")
    assert "did not complete" in await builds.log_tail(ticket.build_id)
    assert len(fake.deleted) == 1


async def test_job_past_its_deadline_reports_a_timeout(
        cluster: tuple[FakeKubernetes, Path], service_factory: Any, tmp_path: Path) -> None:
    fake, kubeconfig = cluster
    fake.script = JobScript(outcome="deadline")
    builds, _ = service_factory(k8s_settings(tmp_path, kubeconfig, build_timeout=90.0))
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=30)
    assert status.succeeded is False and "timed out after 90s" in (status.reason or "")


async def test_refused_job_fails_the_build_with_the_api_error(
        cluster: tuple[FakeKubernetes, Path], service_factory: Any, tmp_path: Path) -> None:
    fake, kubeconfig = cluster
    fake.refuse_create = 403
    builds, _ = service_factory(k8s_settings(tmp_path, kubeconfig))
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=30)
    assert status.succeeded is False and "HTTP 403" in (status.reason or "")


async def test_close_during_a_build_deletes_its_job(
        cluster: tuple[FakeKubernetes, Path], service_factory: Any, tmp_path: Path) -> None:
    fake, kubeconfig = cluster
    fake.script = JobScript(outcome="never")
    builds, _ = service_factory(k8s_settings(tmp_path, kubeconfig))
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=0.3)
    assert status.status == "PENDING"
    await builds.close()
    assert [d[1] for d in fake.deleted] == [fake.created[0]["metadata"]["name"]]
    final = await builds.status(ticket.build_id)
    assert final is not None and final.succeeded is False


def test_singularity_job_runs_singularity_privileged_with_credentials_as_a_file(tmp_path: Path) -> None:
    settings = k8s_settings(tmp_path, tmp_path / "unused", insecure_registries=("registry.example.com",))
    job = BuildJob(build_id="0123456789abcdef_1", workdir=settings.build_dir / "0123456789abcdef_1",
                   build_file="Singularityfile", target_image="oras://registry.example.com/wave/builds:x--0123",
                   platform="linux/arm64", format="sif", timeout=300)
    v1 = as_v1_job(k8s.ApiClient().sanitize_for_serialization(build_job(settings, job)))
    (container,) = v1.spec.template.spec.containers
    assert container.image == "quay.io/singularity/singularity:v3.11.4-slim"
    assert container.command == ["sh", "-c"] and container.args == [
        "singularity build image.sif Singularityfile && "
        "singularity push image.sif oras://registry.example.com/wave/builds:x--0123"]
    assert container.working_dir == str(job.workdir)
    assert container.security_context.privileged is True
    auth = next(m for m in container.volume_mounts if m.name == "registry-auth")
    assert (auth.mount_path, auth.sub_path, auth.read_only) == (
        "/root/.singularity/docker-config.json", "config.json", True)
    assert v1.spec.template.spec.node_selector == {"node-pool": "arm"}
    assert v1.spec.active_deadline_seconds == 300


def test_insecure_target_registry_is_pushed_over_plain_http(tmp_path: Path) -> None:
    settings = k8s_settings(tmp_path, tmp_path / "unused")
    job = BuildJob(build_id="0123456789abcdef_2", workdir=tmp_path / "w", build_file="Dockerfile",
                   target_image="127.0.0.1:5000/wave/builds:0123", platform="linux/amd64", format="docker",
                   timeout=60)
    v1: Any = build_job(settings, job)
    args = v1.spec.template.spec.containers[0].args
    assert "type=image,name=127.0.0.1:5000/wave/builds:0123,push=true,registry.insecure=true" in args


def test_kubeconfig_or_in_cluster_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = FakeKubernetes().write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:6443")
    api = load_api_client(k8s_settings(tmp_path, kubeconfig))
    assert api.configuration.host == "http://127.0.0.1:6443"
    assert api.configuration.api_key["BearerToken"] == f"Bearer {TOKEN}"

    from kubernetes.config import incluster_config

    (tmp_path / "token").write_text("in-cluster-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = load_api_client(k8s_settings(tmp_path, kubeconfig, k8s_kubeconfig=""))
    assert api.configuration.host == "https://10.0.0.1:443"
    assert api.configuration.api_key["BearerToken"].lower() == "bearer in-cluster-token"


def test_factory_selects_the_launcher(tmp_path: Path) -> None:
    assert create_launcher(k8s_settings(tmp_path, tmp_path / "k")).name == "kubernetes"
    assert create_launcher(load_settings(environ={}, state_dir=tmp_path)).name == "local"


async def test_a_users_own_credentials_reach_the_build_as_its_own_secret(
        cluster: tuple[FakeKubernetes, Path], service_factory: Any, tmp_path: Path) -> None:
    """A Platform user's registry credentials go into a Secret of that build only (with wave's own), mounted
    where the shared one would be, deleted after the build; the Job carries no secret."""
    fake, kubeconfig = cluster
    settings = k8s_settings(tmp_path, kubeconfig, registry_credentials={"registry.example.com": ("wave", "op-pw")})
    shared = {"auths": {"push.example.com": {"auth": base64.b64encode(b"pusher:push-pw").decode()}}}
    fake.secrets["wave-registry-credentials"] = {  # the operator's shared Secret: the build's own replaces it
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "wave-registry-credentials", "namespace": "wave-build"},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(shared).encode()).decode()}}
    builds, _ = service_factory(settings)
    asked: list[set[str]] = []

    async def credentials(hosts: set[str]) -> dict[str, tuple[str, str]]:
        asked.append(hosts)
        return {"quay.io": ("alice", "alice-secret-pw")}

    request = make_request(container_file="FROM quay.io/alice/private:1\nRUN true\n")
    ticket = await builds.submit(request, owner=BuildOwner("alice-key", "alice", credentials))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=30)
    assert status.succeeded is True, status.reason
    assert asked == [{"quay.io", "registry.example.com"}]
    (secret,) = fake.secrets_created
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    auths = {host: base64.b64decode(entry["auth"]).decode() for host, entry in config["auths"].items()}
    assert auths == {"quay.io": "alice:alice-secret-pw", "registry.example.com": "wave:op-pw",
                     "push.example.com": "pusher:push-pw"}
    assert fake.secrets_deleted == [secret["metadata"]["name"]]
    assert list(fake.secrets) == ["wave-registry-credentials"]
    volumes = {v["name"]: v for v in fake.created[0]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["registry-auth"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert "alice-secret-pw" not in json.dumps(fake.created[0])
    # the same Dockerfile without the user's credentials is another build (another target)
    other = await builds.submit(request)
    assert other.target_image != ticket.target_image
