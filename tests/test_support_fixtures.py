"""The test-support fixtures are real: real registries, real auth flows, real images, real clients.

Why: every proxy test builds on these fixtures; if one silently degraded (a registry without auth, an image
with the wrong media type), the proxy tests would pass for the wrong reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from pathlib import Path

import pytest

from tests.support import registry as registry_mod
from tests.support.clients import ClientError, Containerd, Podman, skopeo_copy, skopeo_inspect
from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.images import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    LAB_REFS,
    OCI_INDEX,
    OCI_MANIFEST,
    build_lab_layout,
    manifest_digest,
)
from tests.support.registry import (
    HttpResponse,
    Registry,
    RegistryStartError,
    basic_auth,
    http_request,
    start_registry,
)

ACCEPT_ALL = ", ".join([DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX])

def get_manifest(reg: Registry, ref: str, accept: str = ACCEPT_ALL, auth: str | None = None) -> HttpResponse:
    name, _, tag = ref.rpartition(":")
    headers = {"Accept": accept}
    if auth:
        headers["Authorization"] = auth
    return http_request("GET", f"{reg.url}/v2/{name}/manifests/{tag}", headers)

def challenge(resp: HttpResponse) -> tuple[str, dict[str, str]]:
    """Parse `WWW-Authenticate: Scheme k="v",...`."""
    header = resp.headers["www-authenticate"]
    scheme, _, rest = header.partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))

def children_mentioning(path: Path) -> list[str]:
    """Command lines of live processes that mention path (i.e. leaked registries/token servers)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmd:
            found.append(f"{pid}: {cmd}")
    return found

# --- open registry ---------------------------------------------------------------------------------

def test_open_registry_serves_docker_v2_manifest(registry: Registry) -> None:
    resp = get_manifest(registry, "library/busybox:latest", DOCKER_MANIFEST)
    assert resp.status == 200, registry.log_tail()
    assert resp.headers["content-type"] == DOCKER_MANIFEST
    body = json.loads(resp.body)
    assert body["mediaType"] == DOCKER_MANIFEST
    assert len(body["layers"]) == 2
    digest = "sha256:" + hashlib.sha256(resp.body).hexdigest()
    assert resp.headers["docker-content-digest"] == digest
    assert digest == manifest_digest(registry, "library/busybox:latest")

def test_oci_manifest_json_has_no_media_type_but_header_does(registry: Registry) -> None:
    resp = get_manifest(registry, "library/busybox:oci", OCI_MANIFEST)
    assert resp.status == 200
    assert resp.headers["content-type"] == OCI_MANIFEST
    body = json.loads(resp.body)
    assert "mediaType" not in body
    assert body["schemaVersion"] == 2 and len(body["layers"]) == 2

@pytest.mark.parametrize(
    ("ref", "media_type"),
    [("library/busybox:multi-oci", OCI_INDEX), ("library/busybox:multi-v2s2", DOCKER_MANIFEST_LIST)],
)
def test_multi_arch_index(registry: Registry, ref: str, media_type: str) -> None:
    resp = get_manifest(registry, ref)
    assert resp.status == 200
    assert resp.headers["content-type"] == media_type
    body = json.loads(resp.body)
    assert body["mediaType"] == media_type
    assert sorted(m["platform"]["architecture"] for m in body["manifests"]) == ["amd64", "arm64"]

def test_every_lab_ref_served_with_same_digest_everywhere(
    registry: Registry, basic_registry: Registry, bearer_registry: Registry
) -> None:
    """Digests are a property of the built images, not of the registry they were pushed to."""
    for ref in LAB_REFS:
        digests = {manifest_digest(r, ref) for r in (registry, basic_registry, bearer_registry)}
        assert len(digests) == 1, (ref, digests)
    assert manifest_digest(registry, "lab/nested/busybox:latest") == manifest_digest(
        registry, "library/busybox:latest"
    )

def test_layout_build_is_reproducible(lab_layout: Path, tmp_path: Path) -> None:
    again = build_lab_layout(tmp_path)
    index = json.loads((again / "index.json").read_text())
    assert index == json.loads((lab_layout / "index.json").read_text())

# --- basic auth ------------------------------------------------------------------------------------

def test_basic_registry_requires_credentials(basic_registry: Registry) -> None:
    anon = http_request("GET", f"{basic_registry.url}/v2/")
    assert anon.status == 401
    assert challenge(anon)[0] == "Basic"
    assert get_manifest(basic_registry, "library/busybox:latest").status == 401
    wrong = basic_auth(REG_USER, "wrong")
    assert http_request("GET", f"{basic_registry.url}/v2/", {"Authorization": wrong}).status == 401

    auth = basic_auth(REG_USER, REG_PASSWORD)
    assert http_request("GET", f"{basic_registry.url}/v2/", {"Authorization": auth}).status == 200
    resp = get_manifest(basic_registry, "library/busybox:latest", auth=auth)
    assert resp.status == 200 and resp.headers["content-type"] == DOCKER_MANIFEST

# --- bearer token auth -----------------------------------------------------------------------------

def _token(realm: str, params: dict[str, str], auth: str | None = None) -> HttpResponse:
    headers = {"Authorization": auth} if auth else {}
    return http_request("GET", f"{realm}?{urllib.parse.urlencode(params)}", headers)

def test_bearer_registry_challenge_and_anonymous_pull(bearer_registry: Registry) -> None:
    ping = http_request("GET", f"{bearer_registry.url}/v2/")
    assert ping.status == 401
    scheme, params = challenge(ping)
    assert scheme == "Bearer"
    assert params["realm"] == bearer_registry.realm and params["service"] == bearer_registry.service

    # the manifest request itself carries the scope (containerd never pings /v2/ first)
    resp = get_manifest(bearer_registry, "library/busybox:latest")
    assert resp.status == 401
    scheme, params = challenge(resp)
    assert scheme == "Bearer" and params["scope"] == "repository:library/busybox:pull"

    tok = _token(params["realm"], {"service": params["service"], "scope": params["scope"]})
    assert tok.status == 200
    token = json.loads(tok.body)["token"]
    ok = get_manifest(bearer_registry, "library/busybox:latest", auth=f"Bearer {token}")
    assert ok.status == 200 and ok.headers["content-type"] == DOCKER_MANIFEST

def test_bearer_private_repository_needs_credentials(bearer_registry: Registry) -> None:
    resp = get_manifest(bearer_registry, "private/busybox:latest")
    assert resp.status == 401
    _, params = challenge(resp)
    query = {"service": params["service"], "scope": params["scope"]}

    anon = json.loads(_token(params["realm"], query).body)["token"]
    denied = get_manifest(bearer_registry, "private/busybox:latest", auth=f"Bearer {anon}")
    assert denied.status == 401

    bad = _token(params["realm"], query, basic_auth(REG_USER, "wrong"))
    assert bad.status == 401

    full = json.loads(_token(params["realm"], query, basic_auth(REG_USER, REG_PASSWORD)).body)["token"]
    ok = get_manifest(bearer_registry, "private/busybox:latest", auth=f"Bearer {full}")
    assert ok.status == 200
    assert ok.headers["docker-content-digest"] == manifest_digest(bearer_registry, "private/busybox:latest")

# --- process hygiene -------------------------------------------------------------------------------

def test_stop_ends_every_process(tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "reg", "bearer", REG_USER, REG_PASSWORD)
    assert len(children_mentioning(tmp_path)) == 2
    reg.stop()
    reg.stop()  # idempotent
    assert children_mentioning(tmp_path) == []

def test_failed_start_leaks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_config(workdir: Path, port: int, auth: list[str], loglevel: str = "warn") -> Path:
        conf = workdir / "config.yml"
        conf.write_text("version: 0.1\nstorage: {nosuchdriver: {}}\n")
        return conf

    monkeypatch.setattr(registry_mod, "_write_config", broken_config)
    with pytest.raises(RegistryStartError, match="docker-registry exited"):
        start_registry(tmp_path / "reg", "bearer", REG_USER, REG_PASSWORD)  # token server starts first
    assert children_mentioning(tmp_path) == []

# --- clients ---------------------------------------------------------------------------------------

def test_skopeo_inspect_and_copy(registry: Registry, tmp_path: Path) -> None:
    cfg = skopeo_inspect(registry.ref("library/busybox:latest"), config=True)
    assert cfg["architecture"] == "amd64" and cfg["config"]["Cmd"] == ["sh"]
    raw = skopeo_inspect(registry.ref("library/busybox:multi-oci"), raw=True)
    assert raw["mediaType"] == OCI_INDEX

    skopeo_copy(registry.ref("library/busybox:multi-oci"), tmp_path / "arm", override_arch="arm64")
    manifest = json.loads((tmp_path / "arm" / "manifest.json").read_text())
    assert "mediaType" not in manifest and len(manifest["layers"]) == 1

    missing = registry.ref("library/busybox:no-such-tag")
    assert skopeo_copy(missing, tmp_path / "x", check=False).returncode != 0
    with pytest.raises(ClientError, match="manifest unknown"):
        skopeo_copy(missing, tmp_path / "y")

def test_skopeo_copy_with_credentials(basic_registry: Registry, tmp_path: Path) -> None:
    ref = basic_registry.ref("library/busybox:latest")
    assert skopeo_copy(ref, tmp_path / "anon", check=False).returncode != 0
    skopeo_copy(ref, tmp_path / "ok", creds=basic_registry.creds)
    assert (tmp_path / "ok" / "manifest.json").exists()

def test_podman_pulls_and_runs(registry: Registry, podman: Podman) -> None:
    ref = registry.ref("library/busybox:latest")
    assert podman.pull(ref).strip()
    assert podman.image_digests() == [manifest_digest(registry, "library/busybox:latest")]
    assert podman.run(ref, "cat", "/etc/wave-lab-arch").strip() == "amd64"

@pytest.mark.skipif(
    not Containerd.available(), reason="containerd not installed (apt-get install containerd)"
)
def test_containerd_pulls(registry: Registry, containerd: Containerd) -> None:
    ref = registry.ref("library/busybox:multi-oci")
    containerd.pull(ref)
    assert containerd.images()[ref] == manifest_digest(registry, "library/busybox:multi-oci")
