"""Pulls through wave with real clients, without augmentation: what comes out is upstream's, byte for byte."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.clients import Podman, skopeo_copy, skopeo_inspect
from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.images import LAB_IMAGES, push_lab_images, raw_manifest
from tests.support.registry import Registry, free_port, start_registry
from tests.support.wave import WaveServer
from wave import keys

ALL_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
PUBLIC_IMAGES = [ref for ref in LAB_IMAGES if not ref.startswith("private/")]


def target_path(answer: dict) -> str:
    """``/v2/wt/<token>/<name>`` of a targetImage, and its tag."""
    name, _, _ = answer["targetImage"].partition("/")[2].rpartition(":")
    return f"/v2/{name}"


@pytest.mark.parametrize("ref", PUBLIC_IMAGES)
def test_skopeo_copies_every_image_kind_through_wave(wave: WaveServer, registry: Registry, ref: str,
                                                     tmp_path: Path) -> None:
    answer = wave.submit({"containerImage": registry.ref(ref)})
    assert answer["targetImage"].startswith(f"{wave.host}/wt/{answer['containerToken']}/")
    skopeo_copy(answer["targetImage"], tmp_path / "single")
    skopeo_copy(answer["targetImage"], tmp_path / "all", all=True)
    upstream = raw_manifest(registry, ref)
    assert (tmp_path / "all" / "manifest.json").read_bytes() == upstream


def test_manifest_bytes_and_headers_are_upstreams(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:oci")})
    upstream = raw_manifest(registry, "library/busybox:oci")
    got = wave.request("GET", target_path(answer) + "/manifests/oci", headers={"Accept": ALL_TYPES})
    assert got.status == 200
    assert got.body == upstream
    assert got.headers["docker-content-digest"] == "sha256:" + hashlib.sha256(upstream).hexdigest()
    assert got.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
    assert int(got.headers["content-length"]) == len(upstream)
    assert got.headers["docker-distribution-api-version"] == "registry/2.0"


def test_head_on_tag_returns_the_digest_a_later_get_by_digest_serves(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    head = wave.request("HEAD", target_path(answer) + "/manifests/latest", headers={"Accept": ALL_TYPES})
    assert head.status == 200 and head.body == b""
    digest = head.headers["docker-content-digest"]
    got = wave.request("GET", target_path(answer) + f"/manifests/{digest}")
    assert got.status == 200
    assert "sha256:" + hashlib.sha256(got.body).hexdigest() == digest
    assert int(head.headers["content-length"]) == len(got.body)


def test_accept_as_several_headers_or_one_list_negotiates_the_same(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:multi-v2s2")})
    path = target_path(answer) + "/manifests/multi-v2s2"
    one = wave.request("GET", path, headers={"Accept": ALL_TYPES})
    several = wave.request("GET", path, headers=[("Accept", t.strip()) for t in ALL_TYPES.split(",")])  # type: ignore[arg-type]
    assert one.body == several.body
    assert one.headers["content-type"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    # A client that cannot read a list gets the image manifest of the token's platform (linux/amd64).
    single = wave.request("GET", path, headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert single.headers["content-type"] == "application/vnd.docker.distribution.manifest.v2+json"
    entries = json.loads(one.body)["manifests"]
    amd64 = next(e for e in entries if e["platform"]["architecture"] == "amd64")
    assert single.headers["docker-content-digest"] == amd64["digest"]


def test_blob_head_and_range_requests(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    manifest = json.loads(raw_manifest(registry, "library/busybox:latest"))
    layer = manifest["layers"][0]
    path = target_path(answer) + f"/blobs/{layer['digest']}"
    head = wave.request("HEAD", path)
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == layer["size"]
    assert head.headers["docker-content-digest"] == layer["digest"]
    whole = wave.request("GET", path)
    assert hashlib.sha256(whole.body).hexdigest() == layer["digest"].split(":")[1]
    part = wave.request("GET", path, headers={"Range": "bytes=10-19"})
    assert part.status == 206
    assert part.body == whole.body[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{layer['size']}"


def test_tags_list_passes_through(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    got = wave.request("GET", target_path(answer) + "/tags/list")
    assert got.status == 200
    assert {"latest", "oci", "multi-oci", "multi-v2s2"} <= set(got.json()["tags"])  # type: ignore[index]


def test_one_token_serves_any_tag_of_its_repository(wave: WaveServer, registry: Registry, tmp_path: Path) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    other_tag = answer["targetImage"].rsplit(":", 1)[0] + ":oci"
    skopeo_copy(other_tag, tmp_path / "oci")
    assert json.loads((tmp_path / "oci" / "manifest.json").read_bytes()).get("mediaType") is None


def test_podman_pulls_and_runs_through_wave(wave: WaveServer, registry: Registry, podman: Podman) -> None:
    answer = wave.submit({"containerImage": registry.ref("lab/nested/busybox:latest")})
    podman.pull(answer["targetImage"])
    assert podman.run(answer["targetImage"], "cat", "/etc/wave-lab-arch").strip() == "amd64"


def _oci_error(response) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body["errors"][0]) >= {"code", "message"}
    return response.status, body["errors"][0]["code"]


def test_unknown_token_is_name_unknown(wave: WaveServer) -> None:
    got = wave.request("GET", "/v2/wt/0123456789abcdef0123456789abcdef/library/busybox/manifests/latest")
    assert _oci_error(got) == (404, "NAME_UNKNOWN")


def test_expired_token_is_name_unknown(wave_factory, registry: Registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wave = wave_factory(token_ttl=3600)
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    tokens = wave.app[keys.TOKENS]
    container = wave.call(tokens.get(answer["containerToken"]))
    assert container is not None
    wave.call(tokens.save(replace(container, expires=container.created - 1)))
    got = wave.request("GET", target_path(answer) + "/manifests/latest")
    assert _oci_error(got) == (404, "NAME_UNKNOWN")


def test_another_repository_through_a_token_is_name_unknown(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    path = f"/v2/wt/{answer['containerToken']}/lab/nested/busybox/manifests/latest"
    assert _oci_error(wave.request("GET", path)) == (404, "NAME_UNKNOWN")


def test_missing_manifest_and_blob_are_unknown(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    assert _oci_error(wave.request("GET", target_path(answer) + "/manifests/nope")) == (404, "MANIFEST_UNKNOWN")
    blob = target_path(answer) + "/blobs/sha256:" + "0" * 64
    assert _oci_error(wave.request("GET", blob)) == (404, "BLOB_UNKNOWN")
    # Neither a digest nor a tag names nothing: unknown, as distribution answers; a malformed digest is invalid.
    assert _oci_error(wave.request("GET", target_path(answer) + "/blobs/notadigest")) == (404, "BLOB_UNKNOWN")
    assert _oci_error(wave.request("GET", target_path(answer) + "/blobs/sha256:abc")) == (400, "DIGEST_INVALID")


def test_missing_image_is_a_400_that_names_it(wave: WaveServer, registry: Registry) -> None:
    got = wave.request("POST", "/v1alpha2/container", {"containerImage": registry.ref("library/nothere:latest")})
    assert got.status == 400
    message = got.json()["message"]  # type: ignore[index]
    assert "library/nothere:latest" in message and "does not exist" in message


def test_upstream_down_is_502_not_a_hang(wave_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wave = wave_factory(upstream_retries=1)
    dead = f"127.0.0.1:{free_port()}"
    got = wave.request("POST", "/v1alpha2/container", {"containerImage": f"{dead}/library/busybox:latest"})
    assert got.status == 502
    assert dead in got.json()["message"]  # type: ignore[index]


def test_upstream_that_goes_down_after_the_token_is_502_oci_json(wave_factory, lab_layout: Path,
                                                                 tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upstream = start_registry(tmp_path / "reg", "open")
    try:
        push_lab_images(lab_layout, upstream)
        wave = wave_factory(upstream_retries=1)
        answer = wave.submit({"containerImage": upstream.ref("library/busybox:latest")})
    finally:
        upstream.stop()
    got = wave.request("GET", target_path(answer) + "/manifests/latest")
    status, code = _oci_error(got)
    assert status in (502, 504) and code == "UNAVAILABLE"


def test_basic_auth_registry_with_configured_credentials(wave_factory, basic_registry: Registry,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    anonymous = wave_factory()
    denied = anonymous.request("POST", "/v1alpha2/container",
                               {"containerImage": basic_registry.ref("library/busybox:latest")})
    assert denied.status == 400
    assert "denied" in denied.json()["message"]  # type: ignore[index]
    wave = wave_factory(registry_credentials={basic_registry.host: (REG_USER, REG_PASSWORD)})
    answer = wave.submit({"containerImage": basic_registry.ref("library/busybox:multi-oci")})
    skopeo_copy(answer["targetImage"], tmp_path / "x", all=True)
    assert REG_PASSWORD not in (tmp_path / "x" / "manifest.json").read_text()


def test_bearer_registry_anonymous_and_private_repositories(wave_factory, bearer_registry: Registry,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    anonymous = wave_factory()
    answer = anonymous.submit({"containerImage": bearer_registry.ref("library/busybox:latest")})
    skopeo_copy(answer["targetImage"], tmp_path / "public")
    denied = anonymous.request("POST", "/v1alpha2/container",
                               {"containerImage": bearer_registry.ref("private/busybox:latest")})
    assert denied.status == 400
    assert "private/busybox" in denied.json()["message"]  # type: ignore[index]
    assert REG_PASSWORD not in denied.body.decode()
    wave = wave_factory(registry_credentials={bearer_registry.host: (REG_USER, REG_PASSWORD)})
    private = wave.submit({"containerImage": bearer_registry.ref("private/busybox:latest")})
    skopeo_copy(private["targetImage"], tmp_path / "private")
    inspected = skopeo_inspect(private["targetImage"], config=True)
    assert inspected["architecture"] == "amd64"


def test_state_survives_a_restart(wave_factory, registry: Registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = wave_factory(state_dir=tmp_path / "state")
    answer = first.submit({"containerImage": registry.ref("library/busybox:latest")})
    first.stop()
    second = wave_factory(state_dir=tmp_path / "state", port=first.settings.port,
                          server_url=first.settings.server_url)
    skopeo_copy(answer["targetImage"], tmp_path / "after-restart")
    assert (tmp_path / "after-restart" / "manifest.json").exists()
    second.stop()
