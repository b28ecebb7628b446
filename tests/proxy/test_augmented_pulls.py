"""Augmented images pulled and run by real clients: every digest is checked by the client itself."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import Containerd, Dockerd, Podman, skopeo_copy, skopeo_inspect
from tests.support.images import LAB_IMAGES, OCI_MANIFEST, raw_manifest
from tests.support.layers import make_layer, serve_files
from tests.support.registry import Registry, http_request
from tests.support.wave import WaveServer

HELLO = make_layer({"opt/wave/hello.txt": "hello from an injected layer\n",
                    "opt/wave/bin/greet": "#!/bin/sh\necho \"greetings, $WHO\"\n"})
PUBLIC_IMAGES = [ref for ref in LAB_IMAGES if not ref.startswith("private/")]


def augmented(registry: Registry, ref: str, **config: Any) -> dict[str, Any]:
    config = {"env": ["WHO=wave", "PATH=/opt/wave/bin:/usr/bin:/bin"], "cmd": ["greet"],
              "workingDir": "/opt/wave", "layers": [HELLO.request()], **config}
    return {"containerImage": registry.ref(ref), "containerConfig": config}


@pytest.mark.parametrize("ref", PUBLIC_IMAGES)
def test_augmented_image_of_every_kind_copies_and_shows_the_new_config(wave: WaveServer, registry: Registry,
                                                                         ref: str, tmp_path: Path) -> None:
    answer = wave.submit(augmented(registry, ref))
    skopeo_copy(answer["targetImage"], tmp_path / "copy")  # skopeo verifies every digest and diff_id
    config = skopeo_inspect(answer["targetImage"], config=True)
    assert config["config"]["Cmd"] == ["greet"]
    assert config["config"]["WorkingDir"] == "/opt/wave"
    env = config["config"]["Env"]
    assert "WHO=wave" in env and "PATH=/opt/wave/bin:/usr/bin:/bin" in env
    assert len([e for e in env if e.startswith("PATH=")]) == 1  # replaced in place, not appended twice
    assert config["rootfs"]["diff_ids"][-1] == HELLO.tar_digest
    assert config["history"][-1]["created_by"].startswith("wave:")
    manifest = json.loads((tmp_path / "copy" / "manifest.json").read_bytes())
    family = "oci" if "oci" in (manifest.get("mediaType") or "application/vnd.oci") else "docker"
    assert manifest["layers"][-1]["digest"] == HELLO.gzip_digest
    assert ("vnd.oci.image.layer" in manifest["layers"][-1]["mediaType"]) == (family == "oci")


def test_augmented_index_keeps_other_platforms_and_copies_whole(wave: WaveServer, registry: Registry,
                                                                tmp_path: Path) -> None:
    answer = wave.submit(augmented(registry, "library/busybox:multi-oci"))
    skopeo_copy(answer["targetImage"], tmp_path / "all", all=True)
    index = json.loads((tmp_path / "all" / "manifest.json").read_bytes())
    upstream = skopeo_inspect(registry.ref("library/busybox:multi-oci"), raw=True)
    arm_wave = next(m for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
    arm_upstream = next(m for m in upstream["manifests"] if m["platform"]["architecture"] == "arm64")
    assert arm_wave == arm_upstream
    amd_wave = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    assert amd_wave["digest"] != next(m for m in upstream["manifests"]
                                      if m["platform"]["architecture"] == "amd64")["digest"]


def test_arm64_request_augments_the_arm64_entry(wave: WaveServer, registry: Registry, tmp_path: Path) -> None:
    body = augmented(registry, "library/busybox:multi-v2s2")
    body["containerPlatform"] = "linux/aarch64"
    answer = wave.submit(body)
    skopeo_copy(answer["targetImage"], tmp_path / "arm", override_arch="arm64")
    config = skopeo_inspect(answer["targetImage"], config=True)  # skopeo picks amd64: untouched
    assert config["config"].get("Cmd") != ["greet"]


def test_podman_runs_the_augmented_image_with_its_layer_and_env(wave: WaveServer, registry: Registry,
                                                                 podman: Podman) -> None:
    answer = wave.submit(augmented(registry, "library/busybox:latest"))
    podman.pull(answer["targetImage"])
    assert podman.run(answer["targetImage"]).strip() == "greetings, wave"
    assert podman.run(answer["targetImage"], "cat", "hello.txt").strip() == "hello from an injected layer"


def test_replaced_entrypoint_is_chained_for_clients(wave: WaveServer, registry: Registry, podman: Podman) -> None:
    answer = wave.submit(augmented(registry, "library/busybox:oci", entrypoint=["/bin/sh", "-c"],
                                   cmd=["echo $WHO in $PWD"]))
    podman.pull(answer["targetImage"])
    assert podman.run(answer["targetImage"]).strip() == "wave in /opt/wave"


def test_containerd_pulls_by_the_digest_its_head_returned(wave: WaveServer, registry: Registry,
                                                          containerd: Containerd) -> None:
    answer = wave.submit(augmented(registry, "library/busybox:latest"))
    containerd.pull(answer["targetImage"])
    head = wave.request("HEAD", "/v2/" + answer["targetImage"].split("/", 1)[1].replace(":latest",
                                                                                          "/manifests/latest"))
    assert containerd.images()[answer["targetImage"]] == head.headers["docker-content-digest"]


def test_docker_pulls_and_runs_an_augmented_index(wave: WaveServer, registry: Registry, dockerd: Dockerd) -> None:
    answer = wave.submit(augmented(registry, "library/busybox:multi-oci"))
    dockerd.pull(answer["targetImage"])  # HEAD on the tag, then GET by the digest it returned
    assert dockerd.run(answer["targetImage"]).strip() == "greetings, wave"


def test_http_layer_is_a_redirect_clients_follow(wave_factory, registry: Registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with serve_files({"/layers/hello.tar.gz": HELLO.gzip_bytes}) as base:
        wave = wave_factory(layer_allowed_hosts=("127.0.0.0/8",))
        location = f"{base}/layers/hello.tar.gz"
        answer = wave.submit(augmented(registry, "library/busybox:latest", layers=[HELLO.request(location)]))
        blob = wave.request("GET", "/v2/" + answer["targetImage"].split("/", 1)[1].rsplit(":", 1)[0]
                            + f"/blobs/{HELLO.gzip_digest}")
        assert blob.status == 307 and blob.headers["location"] == location
        skopeo_copy(answer["targetImage"], tmp_path / "copy")
    assert (tmp_path / "copy" / HELLO.gzip_digest.split(":")[1]).read_bytes() == HELLO.gzip_bytes


@pytest.mark.parametrize("location", ["http://127.0.0.1:9/x.tar.gz", "http://169.254.169.254/latest/x",
                                      "http://[::1]/x", "http://10.1.2.3/x", "http://localhost/x"])
def test_layer_from_an_internal_address_is_refused(wave_factory: Any, registry: Registry, location: str) -> None:
    wave = wave_factory(trusted_hosts=(registry.host,))  # as deployed: only the registry is trusted
    got = wave.request("POST", "/v1alpha2/container",
                       augmented(registry, "library/busybox:latest", layers=[HELLO.request(location)]))
    assert got.status == 400
    assert "internal address" in got.json()["message"]  # type: ignore[index]


def test_lying_inline_layer_is_a_400_naming_the_field(wave: WaveServer, registry: Registry) -> None:
    lying = {**HELLO.request(), "gzipSize": len(HELLO.gzip_bytes) + 1}
    got = wave.request("POST", "/v1alpha2/container", augmented(registry, "library/busybox:latest", layers=[lying]))
    assert got.status == 400
    assert "containerConfig.layers[0]" in got.json()["message"] and "gzipSize" in got.json()["message"]  # type: ignore[index]
    other = make_layer({"x": "other"})
    wrong_tar = {**HELLO.request(), "tarDigest": other.tar_digest}
    got = wave.request("POST", "/v1alpha2/container",
                       augmented(registry, "library/busybox:latest", layers=[wrong_tar]))
    assert got.status == 400 and "tarDigest" in got.json()["message"]  # type: ignore[index]


def test_missing_platform_is_a_400_naming_the_available_ones(wave: WaveServer, registry: Registry) -> None:
    body = augmented(registry, "library/busybox:multi-oci")
    body["containerPlatform"] = "linux/s390x"
    got = wave.request("POST", "/v1alpha2/container", body)
    assert got.status == 400
    message = got.json()["message"]  # type: ignore[index]
    assert "linux/amd64" in message and "linux/arm64" in message


def test_augmenting_an_image_given_by_digest_is_a_400_that_says_why(wave: WaveServer, registry: Registry) -> None:
    head = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    digest = wave.request("HEAD", "/v2/" + head["targetImage"].split("/", 1)[1].replace(":latest", "/manifests/latest"))
    by_digest = registry.ref("library/busybox") + "@" + digest.headers["docker-content-digest"]
    got = wave.request("POST", "/v1alpha2/container", {"containerImage": by_digest,
                                                         "containerConfig": {"env": ["A=1"]}})
    assert got.status == 400 and "digest" in got.json()["message"]  # type: ignore[index]


def test_pull_after_the_cache_went_cold_serves_the_same_digests(wave_factory, registry: Registry,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = wave_factory(state_dir=state)
    answer = first.submit(augmented(registry, "library/busybox:multi-v2s2"))
    skopeo_copy(answer["targetImage"], tmp_path / "warm", all=True)
    first.stop()
    with sqlite3.connect(state / "wave.db") as db:  # what expiry of the cache does, without waiting for it
        deleted = db.execute("DELETE FROM kv WHERE key LIKE 'object/%' OR key LIKE 'resolved/%'").rowcount
    assert deleted > 0
    wave_factory(state_dir=state, port=first.settings.port, server_url=first.settings.server_url)
    skopeo_copy(answer["targetImage"], tmp_path / "cold", all=True)
    assert (tmp_path / "cold" / "manifest.json").read_bytes() == (tmp_path / "warm" / "manifest.json").read_bytes()


def test_blob_of_a_config_wave_made_is_served_after_the_cache_went_cold(wave_factory, registry: Registry,  # type: ignore[no-untyped-def]
                                                                         tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = wave_factory(state_dir=state)
    answer = first.submit(augmented(registry, "library/busybox:latest"))
    name = answer["targetImage"].split("/", 1)[1].rsplit(":", 1)[0]
    manifest = first.request("GET", f"/v2/{name}/manifests/latest").json()
    config_digest = manifest["config"]["digest"]  # type: ignore[index]
    first.stop()
    with sqlite3.connect(state / "wave.db") as db:
        db.execute("DELETE FROM kv WHERE key LIKE 'object/%' OR key LIKE 'resolved/%'")
    second = wave_factory(state_dir=state, port=first.settings.port, server_url=first.settings.server_url)
    blob = second.request("GET", f"/v2/{name}/blobs/{config_digest}")
    assert blob.status == 200
    assert json.loads(blob.body)["config"]["Cmd"] == ["greet"]


def test_concurrent_cold_requests_resolve_upstream_once(wave: WaveServer, registry: Registry) -> None:
    import asyncio

    from wave import keys

    answer = wave.submit(augmented(registry, "library/busybox:multi-oci"))
    manifests = wave.app[keys.MANIFESTS]
    container = wave.call(wave.app[keys.TOKENS].get(answer["containerToken"]))
    assert container is not None
    before = manifests.upstream_resolutions

    async def many() -> set[str]:
        results = await asyncio.gather(*(manifests.by_tag(container, "multi-oci", []) for _ in range(50)))
        return {obj.digest for obj in results}

    assert len(wave.call(many())) == 1
    assert manifests.upstream_resolutions - before == 1


def test_prometheus_shows_object_cache_hits_after_a_pull(wave: WaveServer, registry: Registry,
                                                         tmp_path: Path) -> None:
    answer = wave.submit(augmented(registry, "library/busybox:latest"))
    skopeo_copy(answer["targetImage"], tmp_path / "copy")
    text = wave.request("GET", "/metrics").body.decode()
    hits = next(line for line in text.splitlines()
                if line.startswith('wave_cache_lookups_total{cache="objects",result="hit"}'))
    assert float(hits.rsplit(" ", 1)[1]) >= 2  # the augmented manifest and its config were served from cache


def _push_blob(registry: Registry, repository: str, data: bytes) -> str:
    """A monolithic blob upload (POST, then PUT with the digest); returns the digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = http_request("POST", f"{registry.url}/v2/{repository}/blobs/uploads/")
    assert start.status == 202, start.body
    location = urllib.parse.urljoin(registry.url, start.headers["location"])
    done = http_request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}",
                        {"Content-Type": "application/octet-stream"}, body=data)
    assert done.status == 201, done.body
    return digest


def test_a_config_embedded_as_data_is_embedded_anew(wave: WaveServer, registry: Registry, tmp_path: Path) -> None:
    """The image spec lets a descriptor carry its content as ``data``: after wave rewrote the config, the
    manifest's config descriptor embeds the new config, so digest, size and data agree."""
    source = json.loads(raw_manifest(registry, "library/busybox:oci"))
    config = http_request("GET", f"{registry.url}/v2/library/busybox/blobs/{source['config']['digest']}").body
    repository = "embedded/busybox"
    for layer in source["layers"]:
        blob = http_request("GET", f"{registry.url}/v2/library/busybox/blobs/{layer['digest']}", timeout=60).body
        assert _push_blob(registry, repository, blob) == layer["digest"]
    _push_blob(registry, repository, config)
    source["mediaType"] = OCI_MANIFEST
    source["config"]["data"] = base64.b64encode(config).decode()
    pushed = http_request("PUT", f"{registry.url}/v2/{repository}/manifests/latest",
                          {"Content-Type": OCI_MANIFEST}, body=json.dumps(source).encode())
    assert pushed.status == 201, pushed.body
    answer = wave.submit(augmented(registry, f"{repository}:latest"))
    skopeo_copy(answer["targetImage"], tmp_path / "copy")  # skopeo checks every digest
    descriptor = json.loads((tmp_path / "copy" / "manifest.json").read_bytes())["config"]
    embedded = base64.b64decode(descriptor["data"], validate=True)
    assert embedded == (tmp_path / "copy" / descriptor["digest"].split(":")[1]).read_bytes()
    assert len(embedded) == descriptor["size"] and embedded != config
    assert json.loads(embedded)["config"]["Cmd"] == ["greet"]
