"""The ``batch/v1`` Job that runs one build: pure, so every field is checked without a cluster.

BuildKit runs rootless (``buildctl-daemonless.sh``, no process sandbox: it needs no privileges); Singularity
needs a privileged container. Both read the build directory from the shared workspace volume, mounted at the
same path as in wave, and registry credentials from a Secret of type ``kubernetes.io/dockerconfigjson``
mounted read-only as a docker ``config.json`` — never on a command line.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s

from wave.builds.launchers.base import BuildJob
from wave.builds.launchers.registries import auth_config, plain_http_registries, registry_host

if TYPE_CHECKING:
    from wave.config import Settings

BUILD_LABEL = "wave/build-id"
CONTAINER = "build"
BUILDKIT_HOME = "/home/user"  # the rootless BuildKit image's user (uid 1000)
SECRET_KEY = ".dockerconfigjson"
FINISHED_JOB_TTL = 3600  # the cluster removes a Job wave could not delete itself


def job_name(build_id: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", build_id.lower()).strip("-")
    return f"wave-build-{slug}"[:63].rstrip("-")


def node_selector(settings: Settings, platform: str) -> dict[str, str] | None:
    """``WAVE_K8S_NODE_SELECTORS`` maps a platform to ``key=value`` (``linux/arm64`` also serves
    ``linux/arm64/v8``)."""
    selectors = settings.k8s_node_selectors
    text = selectors.get(platform) or selectors.get("/".join(platform.split("/")[:2]))
    if not text:
        return None
    key, _, value = text.partition("=")
    return {key.strip(): value.strip()}


def buildkit_args(settings: Settings, job: BuildJob) -> list[str]:
    insecure = _insecure_suffix(settings, job.target_image)
    args = [
        "build",
        "--frontend", "dockerfile.v0",
        "--local", f"dockerfile={job.workdir}",
        "--local", f"context={job.context_dir}",
        "--output", f"type=image,name={job.target_image},push=true{insecure}",
        "--opt", f"platform={job.platform}",
    ]
    if job.build_file != "Dockerfile":
        args += ["--opt", f"filename={job.build_file}"]
    if job.cache_repository:
        ref = f"{job.cache_repository}:{job.build_id.rsplit('_', 1)[0]}"
        cache_insecure = _insecure_suffix(settings, ref)
        args += ["--export-cache", f"type=registry,ref={ref},mode=max,image-manifest=true{cache_insecure}",
                 "--import-cache", f"type=registry,ref={ref}{cache_insecure}"]
    return args


def _insecure_suffix(settings: Settings, image: str) -> str:
    host = registry_host(image)
    return ",registry.insecure=true" if host and plain_http_registries([host], settings.insecure_registries) \
        else ""


def singularity_script(job: BuildJob) -> str:
    return (f"singularity build image.sif {shlex.quote(job.build_file)} && "
            f"singularity push image.sif {shlex.quote(job.target_image)}")


def _build_container(settings: Settings, job: BuildJob, workspace: k8s.V1VolumeMount) -> k8s.V1Container:
    resources = k8s.V1ResourceRequirements(
        requests={"cpu": settings.k8s_cpu, "memory": settings.k8s_memory},
        limits={"cpu": settings.k8s_cpu, "memory": settings.k8s_memory},
    )
    if job.format == "sif":
        auth = k8s.V1VolumeMount(name="registry-auth", mount_path="/root/.singularity/docker-config.json",
                                 sub_path="config.json", read_only=True)
        return k8s.V1Container(
            name=CONTAINER,
            image=settings.singularity_image,
            command=["sh", "-c"],
            args=[singularity_script(job)],
            working_dir=str(job.workdir),
            env=[k8s.V1EnvVar(name="SINGULARITY_CACHEDIR", value="/tmp/singularity-cache")],
            volume_mounts=[workspace, auth],
            resources=resources,
            security_context=k8s.V1SecurityContext(privileged=True),
        )
    auth = k8s.V1VolumeMount(name="registry-auth", mount_path=f"{BUILDKIT_HOME}/.docker", read_only=True)
    return k8s.V1Container(
        name=CONTAINER,
        image=settings.k8s_buildkit_image,
        command=["buildctl-daemonless.sh"],
        args=buildkit_args(settings, job),
        env=[
            k8s.V1EnvVar(name="BUILDKITD_FLAGS", value="--oci-worker-no-process-sandbox"),
            k8s.V1EnvVar(name="DOCKER_CONFIG", value=f"{BUILDKIT_HOME}/.docker"),
        ],
        volume_mounts=[workspace, auth],
        resources=resources,
        security_context=k8s.V1SecurityContext(
            run_as_user=1000,
            run_as_group=1000,
            seccomp_profile=k8s.V1SeccompProfile(type="Unconfined"),
            app_armor_profile=k8s.V1AppArmorProfile(type="Unconfined"),
        ),
    )


def auth_secret_name(build_id: str) -> str:
    return f"{job_name(build_id)[:58].rstrip('-')}-auth"


def auth_secret(settings: Settings, job: BuildJob,
                shared: Mapping[str, Any] | None = None) -> k8s.V1Secret:
    """The registry credentials of one build that carries a user's own (from Seqera Platform): those of the
    shared Secret (``shared``: its ``auths``), wave's configured ones and the user's, as a
    ``kubernetes.io/dockerconfigjson`` Secret mounted like the shared one and deleted with the build — never in
    the Job's spec or a command line."""
    config = auth_config({**settings.registry_credentials, **job.credentials})
    config["auths"] = {**(shared or {}), **config["auths"]}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    labels = {"app.kubernetes.io/name": "wave-build", "app.kubernetes.io/managed-by": "wave",
              BUILD_LABEL: job.build_id}
    return k8s.V1Secret(
        api_version="v1", kind="Secret", type="kubernetes.io/dockerconfigjson",
        metadata=k8s.V1ObjectMeta(name=auth_secret_name(job.build_id), namespace=settings.k8s_namespace,
                                  labels=labels),
        data={SECRET_KEY: encoded},
    )


def build_job(settings: Settings, job: BuildJob, secret_name: str | None = None) -> k8s.V1Job:
    """``secret_name``: the build's own credentials Secret (see :func:`auth_secret`), else the shared one."""
    name = job_name(job.build_id)
    labels = {"app.kubernetes.io/name": "wave-build", "app.kubernetes.io/managed-by": "wave",
              BUILD_LABEL: job.build_id}
    workspace = k8s.V1VolumeMount(name="workspace", mount_path=str(settings.build_dir))
    volumes = [
        k8s.V1Volume(name="workspace", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=settings.k8s_workspace_claim)),
        k8s.V1Volume(name="registry-auth", secret=k8s.V1SecretVolumeSource(
            secret_name=secret_name or settings.k8s_registry_secret, optional=secret_name is None,
            items=[k8s.V1KeyToPath(key=SECRET_KEY, path="config.json")])),
    ]
    pod = k8s.V1PodSpec(
        restart_policy="Never",
        service_account_name=settings.k8s_service_account or None,
        automount_service_account_token=False,
        node_selector=node_selector(settings, job.platform),
        containers=[_build_container(settings, job, workspace)],
        volumes=volumes,
    )
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(name=name, namespace=settings.k8s_namespace, labels=labels),
        spec=k8s.V1JobSpec(
            backoff_limit=0,
            active_deadline_seconds=max(1, math.ceil(job.timeout)),
            ttl_seconds_after_finished=FINISHED_JOB_TTL,
            template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels), spec=pod),
        ),
    )
