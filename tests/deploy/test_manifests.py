"""The Kubernetes manifests in deploy/ say what an operator relies on.

Why: a typo in a manifest (``readinesProbe``, a ConfigMap key the app never reads, a claim in the wrong
namespace) is silently accepted by YAML and only shows up as a broken cluster. These tests load every object
the kustomization lists, round-trip it through the ``kubernetes`` client's models (an unknown field would be
dropped and the round trip would differ), and check the wiring between objects.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes.client import ApiClient

from wave.addresses import InternalAddress
from wave.config import load_settings
from wave.http import policy_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WAVE_NS = "wave"
PORT = 9090

Obj = dict[str, Any]


def _model_name(obj: Obj) -> str:
    version = obj["apiVersion"].rsplit("/", 1)[-1]
    return version[0].upper() + version[1:] + obj["kind"]


def _load() -> list[Obj]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    objects: list[Obj] = []
    for resource in kustomization["resources"]:
        with open(DEPLOY / resource) as fh:
            objects.extend(doc for doc in yaml.safe_load_all(fh) if doc)
    return objects


OBJECTS = _load()


def _ident(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata'].get('namespace', '-')}/{obj['metadata']['name']}"


def find(kind: str, name: str, namespace: str | None = WAVE_NS) -> Obj:
    for obj in OBJECTS:
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return obj
    raise AssertionError(f"no {kind} {name!r} in namespace {namespace!r} in deploy/")


def of_kind(kind: str) -> list[Obj]:
    return [obj for obj in OBJECTS if obj["kind"] == kind]


def config() -> dict[str, str]:
    return dict(find("ConfigMap", "wave-config")["data"])


def wave_pod() -> Obj:
    return dict(find("Deployment", "wave")["spec"]["template"])


def wave_container() -> Obj:
    (container,) = [c for c in wave_pod()["spec"]["containers"] if c["name"] == "wave"]
    return dict(container)


def container_port(container: Obj, port: int | str) -> int:
    """A probe or Service port as a number: named ports resolve through the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def pod_volumes(pod: Obj) -> dict[str, Obj]:
    return {v["name"]: v for v in pod["spec"].get("volumes", [])}


def mounts(container: Obj) -> dict[str, str]:
    """mountPath → volume name."""
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def containers() -> Iterator[tuple[Obj, Obj]]:
    for deployment in of_kind("Deployment"):
        pod = deployment["spec"]["template"]
        for container in pod["spec"]["containers"]:
            yield pod, container


# --- every object is a real Kubernetes object ------------------------------------------------------------


def test_every_listed_resource_file_exists_and_holds_objects() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert "namespace" not in kustomization, "a top-level namespace would move the build-side objects"
    for resource in kustomization["resources"]:
        path = DEPLOY / resource
        assert path.is_file(), f"kustomization.yaml lists {resource}, which does not exist"
        assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc], f"{resource} holds no object"
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed, "every manifest in deploy/ is applied, and only those"


def test_objects_are_unique() -> None:
    idents = [_ident(obj) for obj in OBJECTS]
    assert len(idents) == len(set(idents))


@pytest.mark.parametrize("obj", OBJECTS, ids=_ident)
def test_object_deserialises_into_the_kubernetes_model_without_losing_a_field(obj: Obj) -> None:
    with ApiClient() as api:
        # The private deserialiser takes a dict on every client version (the public one changed signature).
        model = api._ApiClient__deserialize(obj, _model_name(obj))  # type: ignore[attr-defined]
        assert type(model).__name__ == _model_name(obj)
        assert api.sanitize_for_serialization(model) == obj


def test_kustomize_renders_exactly_the_listed_objects() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian package: kubernetes-client)")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert sorted(_ident(d) for d in yaml.safe_load_all(rendered) if d) == sorted(map(_ident, OBJECTS))


# --- the service ---------------------------------------------------------------------------------------


def test_wave_runs_at_least_two_replicas_that_a_drain_cannot_take_down_together() -> None:
    deployment = find("Deployment", "wave")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = find("PodDisruptionBudget", "wave")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= wave_pod()["metadata"]["labels"].items()
    assert 1 <= pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_wave_serves_on_9090_with_probes_on_health_and_ready() -> None:
    container = wave_container()
    assert container["command"][:2] == ["wave", "serve"]
    args = container["command"][2:]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert int(args[args.index("--port") + 1]) == PORT
    assert PORT in [p["containerPort"] for p in container["ports"]]
    liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (liveness["path"], container_port(container, liveness["port"])) == ("/health", PORT)
    assert (readiness["path"], container_port(container, readiness["port"])) == ("/ready", PORT)


def test_service_sends_port_80_to_the_wave_pods_on_9090() -> None:
    service = find("Service", "wave")
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert container_port(wave_container(), port["targetPort"]) == PORT
    assert service["spec"]["selector"].items() <= wave_pod()["metadata"]["labels"].items()
    deployment = find("Deployment", "wave")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= wave_pod()["metadata"]["labels"].items()


def test_every_replica_gets_the_shared_redis_url_from_the_configmap() -> None:
    container = wave_container()
    assert {"configMapRef": {"name": "wave-config"}} in container["envFrom"]
    assert "WAVE_REDIS_URL" not in {e["name"] for e in container.get("env", [])}, "no per-pod override"
    url = urlsplit(config()["WAVE_REDIS_URL"])
    assert url.scheme == "redis"
    redis_service = find("Service", url.hostname or "")
    assert url.port in [p["port"] for p in redis_service["spec"]["ports"]]
    redis_pod = find("Deployment", "redis")["spec"]["template"]
    assert redis_service["spec"]["selector"].items() <= redis_pod["metadata"]["labels"].items()
    (redis,) = redis_pod["spec"]["containers"]
    (service_port,) = redis_service["spec"]["ports"]
    assert container_port(redis, service_port["targetPort"]) == 6379
    assert find("Deployment", "redis")["spec"]["replicas"] == 1


def test_configmap_and_secret_are_settings_wave_accepts() -> None:
    secret = find("Secret", "wave-secrets")
    env = {**config(), **{k: v for k, v in secret["stringData"].items() if k.startswith("WAVE_")}}
    settings = load_settings(environ=env)
    assert settings.build_launcher == "kubernetes"
    assert settings.redis_url == config()["WAVE_REDIS_URL"]
    assert str(settings.build_dir) == config()["WAVE_BUILD_WORKSPACE"]
    assert urlsplit(settings.public_url).scheme == "https"


def test_wave_runs_the_strict_address_policy() -> None:
    """Pods listen on 0.0.0.0 and the config trusts nothing internal: no loopback, no cluster network."""
    secret = find("Secret", "wave-secrets")
    env = {**config(), **{k: v for k, v in secret["stringData"].items() if k.startswith("WAVE_")}}
    container = find("Deployment", "wave")["spec"]["template"]["spec"]["containers"][0]
    host = container["command"][container["command"].index("--host") + 1]
    settings = load_settings(environ=env, host=host)
    policy = policy_for(settings)
    assert config()["WAVE_TRUSTED_HOSTS"] == "none" and policy.mode == "strict"
    for address in ("127.0.0.1", "10.0.0.7", "169.254.169.254", "::1"):
        with pytest.raises(InternalAddress):
            policy.check(address, 5000, [ipaddress.ip_address(address)])


def test_secrets_and_configmaps_the_pods_reference_are_shipped() -> None:
    for pod, container in containers():
        namespace = find("Deployment", pod["metadata"]["labels"]["app.kubernetes.io/name"])["metadata"]["namespace"]
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                find("Secret", source["secretRef"]["name"], namespace)
            if "configMapRef" in source:
                find("ConfigMap", source["configMapRef"]["name"], namespace)
    assert {"secretRef": {"name": "wave-secrets"}} in wave_container()["envFrom"]


def test_credentials_are_only_in_secrets() -> None:
    secretish = re.compile(r"PASSWORD|SECRET|CREDENTIALS|ACCOUNTS|TOKEN|AWS_ACCESS_KEY", re.I)
    names_a_secret = {"WAVE_K8S_REGISTRY_SECRET"}
    assert not [key for key in config() if secretish.search(key) and key not in names_a_secret]
    secret = find("Secret", "wave-secrets")
    assert {"WAVE_REGISTRY_CREDENTIALS", "WAVE_METRICS_ACCOUNTS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(
        secret["stringData"]
    )


# --- builds ---------------------------------------------------------------------------------------------


def test_build_namespace_exists_and_is_the_one_wave_launches_into() -> None:
    build_ns = config()["WAVE_K8S_NAMESPACE"]
    find("Namespace", build_ns, None)
    find("Namespace", WAVE_NS, None)
    assert build_ns != WAVE_NS
    find("ServiceAccount", config()["WAVE_K8S_SERVICE_ACCOUNT"], build_ns)


def test_build_role_lets_the_wave_service_account_run_jobs_and_read_pod_logs() -> None:
    build_ns = config()["WAVE_K8S_NAMESPACE"]
    (binding,) = [b for b in of_kind("RoleBinding") if b["metadata"]["namespace"] == build_ns]
    assert {"kind": "ServiceAccount", "name": "wave", "namespace": WAVE_NS} in binding["subjects"]
    assert wave_pod()["spec"]["serviceAccountName"] == "wave"
    find("ServiceAccount", "wave", WAVE_NS)
    role = find(binding["roleRef"]["kind"], binding["roleRef"]["name"], build_ns)

    def allowed(group: str, resource: str) -> set[str]:
        return {
            verb
            for rule in role["rules"]
            if group in rule["apiGroups"] and resource in rule["resources"]
            for verb in rule["verbs"]
        }

    assert {"create", "get", "list", "watch", "delete"} <= allowed("batch", "jobs")
    assert {"get", "list", "watch"} <= allowed("", "pods")
    assert "get" in allowed("", "pods/log")
    # a build with a Platform user's credentials gets its own Secret, created and deleted; the only Secret
    # wave may read is the shared one that the build's own must include
    assert allowed("", "secrets") == {"create", "delete", "get"}
    readers = [r for r in role["rules"] if "secrets" in r["resources"] and "get" in r["verbs"]]
    assert [r.get("resourceNames") for r in readers] == [[config()["WAVE_K8S_REGISTRY_SECRET"]]]
    assert not of_kind("ClusterRole") and not of_kind("ClusterRoleBinding")


def test_workspace_claim_is_mounted_where_wave_config_says() -> None:
    workspace, claim = config()["WAVE_BUILD_WORKSPACE"], config()["WAVE_K8S_WORKSPACE_CLAIM"]
    volume_name = mounts(wave_container())[workspace]
    assert pod_volumes(wave_pod())[volume_name]["persistentVolumeClaim"]["claimName"] == claim
    pvc = find("PersistentVolumeClaim", claim, WAVE_NS)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_wave_pods_and_build_pods_share_one_workspace_volume() -> None:
    """The claim wave mounts and the claim build Jobs mount (same name, other namespace) are bound to
    volumes with the same source: what wave writes, the build reads."""
    claim = config()["WAVE_K8S_WORKSPACE_CLAIM"]
    sources = []
    for namespace in (WAVE_NS, config()["WAVE_K8S_NAMESPACE"]):
        pvc = find("PersistentVolumeClaim", claim, namespace)
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert pvc["spec"]["storageClassName"] == "", "a dynamically provisioned claim would not be shared"
        pv = find("PersistentVolume", pvc["spec"]["volumeName"], None)
        assert pv["spec"]["claimRef"] == {"namespace": namespace, "name": claim}
        assert "ReadWriteMany" in pv["spec"]["accessModes"]
        sources.append({k: v for k, v in pv["spec"].items() if k in {"nfs", "csi", "hostPath"}})
    assert sources[0] and sources[0] == sources[1]


def test_build_registry_secret_is_a_docker_config_in_the_build_namespace() -> None:
    secret = find("Secret", config()["WAVE_K8S_REGISTRY_SECRET"], config()["WAVE_K8S_NAMESPACE"])
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert "auths" in json.loads(secret["stringData"][".dockerconfigjson"])


def test_build_logs_are_visible_to_every_replica() -> None:
    """Logs written by the replica that ran a build are read by any replica: S3, or the shared workspace."""
    storage = config()["WAVE_STORAGE_URL"]
    if not storage.startswith("s3://"):
        path = storage.removeprefix("file://")
        assert path.startswith(config()["WAVE_BUILD_WORKSPACE"].rstrip("/") + "/")


# --- hardening ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wave", "redis"])
def test_pods_run_as_non_root_on_a_read_only_root_file_system(name: str) -> None:
    pod = find("Deployment", name)["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    for container in pod["spec"]["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]


def test_wave_has_writable_tmp_and_state_dir() -> None:
    volumes, container_mounts = pod_volumes(wave_pod()), mounts(wave_container())
    for path in ("/tmp", config()["WAVE_STATE_DIR"]):
        assert path in container_mounts, f"{path} must be writable on a read-only root file system"
        assert "emptyDir" in volumes[container_mounts[path]]


@pytest.mark.parametrize("pod_container", list(containers()), ids=lambda pc: pc[1]["name"])
def test_every_container_has_resource_requests_and_limits(pod_container: tuple[Obj, Obj]) -> None:
    resources = pod_container[1]["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind])


# --- the image ------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_that_runs_wave_serve() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    user = [line.split()[1] for line in instructions if line.startswith("USER ")][-1]
    uid = user.split(":")[0]
    assert uid not in {"0", "root"}
    assert int(uid) == wave_pod()["spec"]["securityContext"]["runAsUser"], "image user = pod user"
    assert any(line.startswith("RUN pip install .") for line in instructions)
    entrypoint = [line for line in instructions if line.startswith("ENTRYPOINT ")][-1]
    cmd = [line for line in instructions if line.startswith("CMD ")][-1]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["wave"]
    assert json.loads(cmd.removeprefix("CMD ")) == ["serve", "--host", "0.0.0.0"]
    assert wave_container()["image"] == "wave:latest"


def test_dockerfile_copies_everything_pip_install_needs() -> None:
    """The image installs the project from the files it copies: the readme, every top-level module (the
    ``wave`` console script's launcher) and the package; a file added to pyproject must be copied too."""
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"], "wave"}
    needed |= {f"{name}.py" for name in project.get("tool", {}).get("setuptools", {}).get("py-modules", [])}
    copied: set[str] = set()
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied |= {src.rstrip("/") for src in line.split()[1:-1] if not src.startswith("--")}
    assert needed <= copied
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert all(f"!{name}" in ignore or f"!{name}/" in ignore for name in needed), "kept out of the context"


def test_deploy_sets_the_reference_limits_per_caller() -> None:
    """Anonymous 250 pulls/h and 25 builds/day, Platform users 1000 pulls/min and 100 builds/h."""
    secret = find("Secret", "wave-secrets")
    env = {**config(), **{k: v for k, v in secret["stringData"].items() if k.startswith("WAVE_")}}
    settings = load_settings(environ=env)
    limits = {name: (rate.count, rate.period) for name, rate in (
        ("anon_pulls", settings.rate_limit_anon_pulls), ("anon_builds", settings.rate_limit_anon_builds),
        ("user_pulls", settings.rate_limit_user_pulls), ("user_builds", settings.rate_limit_user_builds),
    ) if rate is not None}
    assert limits == {"anon_pulls": (250, 3600), "anon_builds": (25, 86400), "user_pulls": (1000, 60),
                      "user_builds": (100, 3600)}
