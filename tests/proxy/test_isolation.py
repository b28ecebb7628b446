"""A token serves only its own repository's objects and what wave made for its own request.

Through a real registry and skopeo: a manifest that exists only in another repository is not served through
a token for this one although wave fetched it for another token; a manifest and config wave derived for one
token's augmentation are not served through another token (plain, or with another configuration); the
owner still serves them, and an identical request shares them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import run_client, skopeo_copy, skopeo_inspect
from tests.support.images import raw_manifest
from tests.support.registry import Registry, http_request
from tests.support.wave import WaveServer


def path_of(answer: dict[str, Any]) -> str:
    """``/v2/wt/<token>/<repository>`` of a targetImage."""
    return "/v2/" + answer["targetImage"].split("/", 1)[1].rsplit(":", 1)[0]


def by_digest(answer: dict[str, Any], digest: str) -> str:
    """The targetImage's repository, pinned to a digest (what skopeo is given)."""
    return answer["targetImage"].rsplit(":", 1)[0] + "@" + digest


def skopeo_fails(ref: str) -> str:
    proc = run_client(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"], check=False)
    assert proc.returncode != 0, f"skopeo read {ref}"
    return proc.stderr


def error_code(response: Any) -> tuple[int, str]:
    return response.status, response.json()["errors"][0]["code"]


@pytest.fixture
def only_elsewhere(registry: Registry) -> tuple[str, str]:
    """A manifest that exists in repository ``isolation/other`` only: busybox's OCI manifest with an annotation
    of its own (so a digest of its own), pushed where its blobs were copied. Returns (repository:tag, digest)."""
    repository = f"isolation/other-{time.time_ns()}"
    run_client(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                f"docker://{registry.ref('library/busybox:oci')}", f"docker://{registry.ref(repository + ':base')}"])
    manifest = json.loads(raw_manifest(registry, "library/busybox:oci"))
    manifest["annotations"] = {"wave.test/only-in": repository}
    data = json.dumps(manifest).encode()
    media_type = manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
    put = http_request("PUT", f"{registry.url}/v2/{repository}/manifests/unique", {"Content-Type": media_type},
                       body=data)
    assert put.status == 201, put.body
    return f"{repository}:unique", "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_digest_of_another_repository_is_not_served_through_a_token(wave: WaveServer, registry: Registry,
                                                                     only_elsewhere: tuple[str, str]) -> None:
    ref, digest = only_elsewhere
    owner = wave.submit({"containerImage": registry.ref(ref)})
    got = wave.request("GET", path_of(owner) + f"/manifests/{digest}")
    assert got.status == 200 and "sha256:" + hashlib.sha256(got.body).hexdigest() == digest  # now cached
    other = wave.submit({"containerImage": registry.ref("library/busybox:oci")})
    assert error_code(wave.request("GET", path_of(other) + f"/manifests/{digest}")) == (404, "MANIFEST_UNKNOWN")
    assert wave.request("HEAD", path_of(other) + f"/manifests/{digest}").status == 404
    assert "manifest unknown" in skopeo_fails(by_digest(other, digest)).lower()
    assert skopeo_inspect(by_digest(owner, digest), raw=True)["annotations"]["wave.test/only-in"] in ref


def test_what_wave_made_for_one_token_is_not_served_through_another(wave: WaveServer, registry: Registry,
                                                                    tmp_path: Path) -> None:
    image = registry.ref("library/busybox:latest")
    secret = {"env": [f"SECRET=only-for-the-owner-{time.time_ns()}"]}
    owner = wave.submit({"containerImage": image, "containerConfig": secret})
    skopeo_copy(owner["targetImage"], tmp_path / "owner")
    manifest = json.loads((tmp_path / "owner" / "manifest.json").read_bytes())
    made_manifest = "sha256:" + hashlib.sha256((tmp_path / "owner" / "manifest.json").read_bytes()).hexdigest()
    made_config = manifest["config"]["digest"]

    plain = wave.submit({"containerImage": image})
    other_config = wave.submit({"containerImage": image, "containerConfig": {"env": ["OTHER=1"]}})
    for answer in (plain, other_config):
        wave.request("GET", path_of(answer) + "/manifests/latest")  # each resolves its own tag first
        assert error_code(wave.request("GET", path_of(answer) + f"/manifests/{made_manifest}")) == (
            404, "MANIFEST_UNKNOWN")
        assert error_code(wave.request("GET", path_of(answer) + f"/blobs/{made_config}")) == (404, "BLOB_UNKNOWN")
        skopeo_fails(by_digest(answer, made_manifest))

    # the owner still serves both, and so does an identical request (what wave derived is shared by equals)
    for answer in (owner, wave.submit({"containerImage": image, "containerConfig": secret})):
        assert wave.request("GET", path_of(answer) + f"/manifests/{made_manifest}").status == 200
        config = wave.request("GET", path_of(answer) + f"/blobs/{made_config}")
        assert config.status == 200 and secret["env"][0] in json.loads(config.body)["config"]["Env"]
    assert secret["env"][0] in skopeo_inspect(by_digest(owner, made_manifest), config=True)["config"]["Env"]


def object_lookups(wave: WaveServer) -> float:
    text = wave.request("GET", "/metrics").body.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('wave_cache_lookups_total{cache="objects"'))


def test_an_upstream_blob_costs_no_object_store_lookup(wave: WaveServer, registry: Registry) -> None:
    layer = json.loads(raw_manifest(registry, "library/busybox:latest"))["layers"][0]["digest"]
    plain = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    augmented = wave.submit({"containerImage": registry.ref("library/busybox:latest"),
                             "containerConfig": {"env": ["A=1"]}})
    for answer in (plain, augmented):
        assert wave.request("GET", path_of(answer) + "/manifests/latest").status == 200
        before = object_lookups(wave)
        for _ in range(3):
            blob = wave.request("GET", path_of(answer) + f"/blobs/{layer}")
            assert blob.status == 200 and "sha256:" + hashlib.sha256(blob.body).hexdigest() == layer
        assert object_lookups(wave) == before
