"""Augmentation of configs, manifests and indexes (wave.oci.augment), on real documents from the lab registry.

The documents under data/ were copied byte-for-byte from the lab registry (see data/README.md); the
buildx-style index with attestations is built here, modelled on what Docker Hub serves for official images.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from wave.oci.augment import (
    ENTRY_CHAIN_VAR,
    AugmentedImage,
    Blob,
    InvalidManifest,
    NoMatchingPlatform,
    augment_config,
    augment_manifest,
    check_image_platform,
    config_descriptor,
    point_at,
    replace_index_entry,
    select_platform,
    set_env,
)
from wave.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from wave.oci.models import ContainerConfig, Layer
from wave.oci.platform import parse_platform

DATA = Path(__file__).parent / "data"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AMD64_OCI = "sha256:477591fc268d0ed86777816b74da5e1c19427f546637ae71fa8906007e5c27bb"
ARM64_OCI = "sha256:b2e24ee2b7bd274ae03c32a7ce05fbf885263c1ea4f2492707967f7e47cd19b3"
AMD64_V2S2 = "sha256:f54ec7892acabf4be6b508bf3585d840fc1fe6efc4de29130e44385f7df673a6"
ARM64_V2S2 = "sha256:2eec8a29419f54a7e83054e63f0effdb22677b384b6f3930bb27f53d9d544214"


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def load(blob: bytes | Blob) -> dict[str, Any]:
    return orjson.loads(blob.data if isinstance(blob, Blob) else blob)


def sha256(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def make_layer(name: str, content: bytes, location: str = "https://fusionfs.seqera.io/releases/layer.tar.gz") -> Layer:
    """A real tar.gz layer: its digests and size are what a client would compute."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(content), 0
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = buffer.getvalue()
    gzip_bytes = gzip.compress(tar_bytes, mtime=0)
    return Layer(location, sha256(gzip_bytes), len(gzip_bytes), sha256(tar_bytes))


FUSION = make_layer("usr/bin/fusion", b"#!/bin/sh\necho fusion\n")
EXTRA = make_layer("opt/extra/README", b"extra\n", location="https://example.com/extra.tar.gz")

CONFIG = data("busybox-amd64.config.json")  # Env PATH, Cmd ["sh"], WorkingDir "/", no Entrypoint, history


def config_with(**runtime: Any) -> bytes:
    """The real config with its runtime section changed, as another image would have it."""
    document = load(CONFIG)
    document["config"].update(runtime)
    return orjson.dumps(document)


def oci_manifest_with_mediatype() -> bytes:
    """The real OCI manifest as tools that do write the field (and annotations) serve it."""
    document = load(data("busybox-oci.oci-manifest-no-mediatype.json"))
    with_type = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, **document,
                 "annotations": {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}}
    return orjson.dumps(with_type)


# (id, manifest bytes, Content-Type header upstream sent, expected manifest type, expected layer type)
MANIFEST_KINDS = [
    pytest.param(data("busybox-latest.docker-manifest.json"), DOCKER_MANIFEST, DOCKER_MANIFEST, DOCKER_LAYER_GZIP,
                 id="docker-v2"),
    pytest.param(data("busybox-oci.oci-manifest-no-mediatype.json"), OCI_MANIFEST, OCI_MANIFEST, OCI_LAYER_GZIP,
                 id="oci-without-mediatype"),
    pytest.param(oci_manifest_with_mediatype(), OCI_MANIFEST, OCI_MANIFEST, OCI_LAYER_GZIP,
                 id="oci-with-mediatype"),
]

REQUEST = ContainerConfig(
    entrypoint=("/usr/bin/fusion",),
    cmd=("sh", "-c", "echo hi"),
    env=("FOO=bar", "PATH=/opt/fusion/bin:/usr/bin:/bin"),
    working_dir="/work",
    layers=(FUSION, EXTRA),
)


# --- config: entrypoint, cmd, working dir ------------------------------------------------------------


def test_entrypoint_cmd_and_working_dir_are_replaced():
    runtime = load(augment_config(config_with(Entrypoint=["/bin/tini", "--"]), REQUEST))["config"]
    assert runtime["Entrypoint"] == ["/usr/bin/fusion"]
    assert runtime["Cmd"] == ["sh", "-c", "echo hi"]
    assert runtime["WorkingDir"] == "/work"


def test_unrequested_runtime_fields_are_kept():
    runtime = load(augment_config(CONFIG, ContainerConfig(env=("FOO=bar",))))["config"]
    assert runtime["Cmd"] == ["sh"]
    assert runtime["WorkingDir"] == "/"
    assert "Entrypoint" not in runtime
    assert runtime["Labels"] == {"org.opencontainers.image.source": "wave-lab",
                                 "org.opencontainers.image.title": "wave-lab-busybox"}


def test_top_level_config_fields_are_kept():
    before, after = load(CONFIG), load(augment_config(CONFIG, REQUEST))
    for key in ("created", "architecture", "os"):
        assert after[key] == before[key]


def test_empty_cmd_list_clears_the_cmd():
    assert load(augment_config(CONFIG, ContainerConfig(cmd=())))["config"]["Cmd"] == []


# --- config: env -------------------------------------------------------------------------------------


def test_env_key_is_replaced_in_place_not_duplicated():
    env = load(augment_config(CONFIG, ContainerConfig(env=("PATH=/opt/bin:/usr/bin",))))["config"]["Env"]
    assert env == ["PATH=/opt/bin:/usr/bin"]


def test_new_env_keys_are_appended_in_request_order():
    env = load(augment_config(CONFIG, ContainerConfig(env=("B=2", "A=1"))))["config"]["Env"]
    assert env == [PATH_ENV, "B=2", "A=1"]


def test_env_replacement_keeps_the_position_among_other_keys():
    config = config_with(Env=["A=1", PATH_ENV, "Z=26"])
    env = load(augment_config(config, ContainerConfig(env=("PATH=/x", "NEW=y"))))["config"]["Env"]
    assert env == ["A=1", "PATH=/x", "Z=26", "NEW=y"]


def test_env_key_repeated_in_the_request_keeps_the_last_value_once():
    env = load(augment_config(CONFIG, ContainerConfig(env=("FOO=1", "FOO=2"))))["config"]["Env"]
    assert env == [PATH_ENV, "FOO=2"]


def test_env_value_may_contain_equals_signs():
    env = load(augment_config(config_with(Env=["OPTS=a=b"]), ContainerConfig(env=("OPTS=c=d",))))["config"]["Env"]
    assert env == ["OPTS=c=d"]


def test_env_key_is_case_sensitive():
    env = load(augment_config(config_with(Env=["path=/x"]), ContainerConfig(env=("PATH=/y",))))["config"]["Env"]
    assert env == ["path=/x", "PATH=/y"]


def test_no_env_key_is_added_to_a_config_without_env_when_none_is_requested():
    document = load(CONFIG)
    del document["config"]["Env"]
    runtime = load(augment_config(orjson.dumps(document), ContainerConfig(cmd=("true",))))["config"]
    assert "Env" not in runtime


def test_env_is_created_when_the_config_has_none():
    document = load(CONFIG)
    del document["config"]["Env"]
    runtime = load(augment_config(orjson.dumps(document), ContainerConfig(env=("A=1",))))["config"]
    assert runtime["Env"] == ["A=1"]


def test_config_without_runtime_section_gets_one():
    document = load(CONFIG)
    del document["config"]
    runtime = load(augment_config(orjson.dumps(document), ContainerConfig(cmd=("true",), env=("A=1",))))["config"]
    assert runtime == {"Cmd": ["true"], "Env": ["A=1"]}


def test_set_env_does_not_modify_its_input():
    env = [PATH_ENV]
    assert set_env(env, ["PATH=/x", "A=1"]) == ["PATH=/x", "A=1"]
    assert env == [PATH_ENV]


# --- config: WAVE_ENTRY_CHAIN ------------------------------------------------------------------------


def test_entry_chain_records_the_replaced_entrypoint():
    config = config_with(Entrypoint=["/bin/tini", "--"])
    env = load(augment_config(config, ContainerConfig(entrypoint=("/usr/bin/fusion",))))["config"]["Env"]
    assert env == [PATH_ENV, f"{ENTRY_CHAIN_VAR}=/bin/tini --"]


def test_no_entry_chain_when_the_image_had_no_entrypoint():
    env = load(augment_config(CONFIG, ContainerConfig(entrypoint=("/usr/bin/fusion",))))["config"]["Env"]
    assert not any(item.startswith(f"{ENTRY_CHAIN_VAR}=") for item in env)


def test_no_entry_chain_when_the_image_entrypoint_is_empty():
    config = config_with(Entrypoint=[])
    env = load(augment_config(config, ContainerConfig(entrypoint=("/usr/bin/fusion",))))["config"]["Env"]
    assert env == [PATH_ENV]


def test_no_entry_chain_when_the_entrypoint_is_not_replaced():
    config = config_with(Entrypoint=["/bin/tini", "--"])
    runtime = load(augment_config(config, ContainerConfig(cmd=("echo",), env=("A=1",))))["config"]
    assert runtime["Entrypoint"] == ["/bin/tini", "--"]
    assert runtime["Env"] == [PATH_ENV, "A=1"]


def test_entry_chain_already_in_the_image_is_replaced_not_duplicated():
    config = config_with(Entrypoint=["/entry.sh"], Env=[PATH_ENV, f"{ENTRY_CHAIN_VAR}=/old"])
    env = load(augment_config(config, ContainerConfig(entrypoint=("/usr/bin/fusion",))))["config"]["Env"]
    assert env == [PATH_ENV, f"{ENTRY_CHAIN_VAR}=/entry.sh"]


def test_entry_chain_is_kept_next_to_requested_env():
    config = config_with(Entrypoint=["/docker-entrypoint.sh"])
    request = ContainerConfig(entrypoint=("/usr/bin/fusion",), env=("FOO=bar",))
    env = load(augment_config(config, request))["config"]["Env"]
    assert env == [PATH_ENV, f"{ENTRY_CHAIN_VAR}=/docker-entrypoint.sh", "FOO=bar"]


# --- config: rootfs and history ----------------------------------------------------------------------


def test_layers_extend_diff_ids_with_their_tar_digests_in_order():
    before = load(CONFIG)["rootfs"]["diff_ids"]
    after = load(augment_config(CONFIG, ContainerConfig(layers=(FUSION, EXTRA))))["rootfs"]
    assert after["diff_ids"] == [*before, FUSION.tar_digest, EXTRA.tar_digest]
    assert after["type"] == "layers"


def test_history_gets_one_non_empty_entry_per_injected_layer():
    before = load(CONFIG)["history"]
    after = load(augment_config(CONFIG, ContainerConfig(layers=(FUSION, EXTRA))))["history"]
    assert after[: len(before)] == before
    added = after[len(before):]
    assert len(added) == 2
    assert all("wave" in entry["created_by"] and not entry.get("empty_layer") for entry in added)
    assert FUSION.gzip_digest in added[0]["created_by"]


def test_non_empty_history_entries_still_pair_with_diff_ids():
    document = load(augment_config(CONFIG, ContainerConfig(layers=(FUSION, EXTRA))))
    non_empty = [entry for entry in document["history"] if not entry.get("empty_layer")]
    assert len(non_empty) == len(document["rootfs"]["diff_ids"])


def test_config_without_history_gets_no_history():
    document = load(CONFIG)
    del document["history"]
    after = load(augment_config(orjson.dumps(document), ContainerConfig(layers=(FUSION,))))
    assert "history" not in after
    assert after["rootfs"]["diff_ids"][-1] == FUSION.tar_digest


def test_config_without_rootfs_gets_one_listing_the_injected_layers():
    document = load(CONFIG)
    del document["rootfs"]
    after = load(augment_config(orjson.dumps(document), ContainerConfig(layers=(FUSION,))))
    assert after["rootfs"] == {"type": "layers", "diff_ids": [FUSION.tar_digest]}


def test_no_layers_means_rootfs_and_history_unchanged():
    before = load(CONFIG)
    after = load(augment_config(CONFIG, ContainerConfig(env=("A=1",))))
    assert after["rootfs"] == before["rootfs"]
    assert after["history"] == before["history"]


@pytest.mark.parametrize("raw, message", [(b"not json", "not valid JSON"), (b"[1, 2]", "not a JSON object")])
def test_invalid_config_is_reported(raw, message):
    with pytest.raises(InvalidManifest, match=f"image config is {message}"):
        augment_config(raw, REQUEST)


# --- manifests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_manifest_config_descriptor_is_the_new_config(manifest, header, manifest_type, layer_type):
    result = augment_manifest(manifest, header, CONFIG, REQUEST)
    descriptor = load(result.manifest)["config"]
    assert descriptor["digest"] == sha256(result.config.data) == result.config.digest
    assert descriptor["size"] == len(result.config.data) == result.config.size
    assert descriptor["digest"] != load(manifest)["config"]["digest"]


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_manifest_new_config_is_the_augmented_config(manifest, header, manifest_type, layer_type):
    result = augment_manifest(manifest, header, CONFIG, REQUEST)
    assert result.config.data == augment_config(CONFIG, REQUEST)
    assert load(result.config)["config"]["Entrypoint"] == ["/usr/bin/fusion"]


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_manifest_digest_is_sha256_of_the_served_bytes(manifest, header, manifest_type, layer_type):
    result = augment_manifest(manifest, header, CONFIG, REQUEST)
    assert result.manifest.digest == sha256(result.manifest.data)
    assert result.manifest.size == len(result.manifest.data)
    assert result.manifest.digest != sha256(manifest)


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_manifest_keeps_its_type(manifest, header, manifest_type, layer_type):
    assert augment_manifest(manifest, header, CONFIG, REQUEST).manifest.media_type == manifest_type


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_injected_layers_are_appended_with_the_family_media_type(manifest, header, manifest_type, layer_type):
    layers = load(augment_manifest(manifest, header, CONFIG, REQUEST).manifest)["layers"]
    original = load(manifest)["layers"]
    assert layers[: len(original)] == original
    assert layers[len(original):] == [
        {"mediaType": layer_type, "size": FUSION.gzip_size, "digest": FUSION.gzip_digest},
        {"mediaType": layer_type, "size": EXTRA.gzip_size, "digest": EXTRA.gzip_digest},
    ]


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_config_diff_ids_and_manifest_layers_stay_paired(manifest, header, manifest_type, layer_type):
    result = augment_manifest(manifest, header, CONFIG, REQUEST)
    assert len(load(result.config)["rootfs"]["diff_ids"]) == len(load(result.manifest)["layers"])


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_augmenting_twice_gives_identical_bytes(manifest, header, manifest_type, layer_type):
    first = augment_manifest(manifest, header, CONFIG, REQUEST)
    second = augment_manifest(manifest, header, CONFIG, REQUEST)
    assert first == second
    assert (first.manifest.digest, first.config.digest) == (second.manifest.digest, second.config.digest)


@pytest.mark.parametrize("manifest, header, manifest_type, layer_type", MANIFEST_KINDS)
def test_only_config_and_layers_change_in_the_manifest(manifest, header, manifest_type, layer_type):
    before, after = load(manifest), load(augment_manifest(manifest, header, CONFIG, REQUEST).manifest)
    assert set(after) == set(before)
    for key in set(before) - {"config", "layers"}:
        assert after[key] == before[key]
    assert after["config"]["mediaType"] == before["config"]["mediaType"]


def test_oci_manifest_without_mediatype_stays_without_it_and_takes_the_header_type():
    manifest = data("busybox-oci.oci-manifest-no-mediatype.json")
    result = augment_manifest(manifest, f"{OCI_MANIFEST}; charset=utf-8", CONFIG, REQUEST)
    assert "mediaType" not in load(result.manifest)
    assert result.manifest.media_type == OCI_MANIFEST
    assert {layer["mediaType"] for layer in load(result.manifest)["layers"]} == {OCI_LAYER_GZIP}


def test_oci_manifest_without_mediatype_and_without_header_is_treated_as_oci():
    result = augment_manifest(data("busybox-oci.oci-manifest-no-mediatype.json"), None, CONFIG, REQUEST)
    assert result.manifest.media_type == OCI_MANIFEST
    assert load(result.manifest)["layers"][-1]["mediaType"] == OCI_LAYER_GZIP


def test_oci_manifest_annotations_are_kept():
    result = augment_manifest(oci_manifest_with_mediatype(), OCI_MANIFEST, CONFIG, REQUEST)
    assert load(result.manifest)["annotations"] == {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}


@pytest.mark.parametrize("manifest_type, config_type", [(DOCKER_MANIFEST, DOCKER_CONFIG), (OCI_MANIFEST, OCI_CONFIG)])
def test_config_descriptor_without_media_type_gets_the_family_config_type(manifest_type, config_type):
    document = load(data("busybox-latest.docker-manifest.json"))
    del document["mediaType"]
    del document["config"]["mediaType"]
    result = augment_manifest(orjson.dumps(document), manifest_type, CONFIG, REQUEST)
    assert result.config.media_type == config_type


def test_augmented_config_blob_keeps_the_descriptor_media_type():
    result = augment_manifest(data("busybox-latest.docker-manifest.json"), DOCKER_MANIFEST, CONFIG, REQUEST)
    assert result.config.media_type == DOCKER_CONFIG
    result = augment_manifest(data("busybox-oci.oci-manifest-no-mediatype.json"), OCI_MANIFEST, CONFIG, REQUEST)
    assert result.config.media_type == OCI_CONFIG


def test_different_requests_give_different_digests():
    manifest = data("busybox-latest.docker-manifest.json")
    one = augment_manifest(manifest, DOCKER_MANIFEST, CONFIG, ContainerConfig(env=("A=1",)))
    two = augment_manifest(manifest, DOCKER_MANIFEST, CONFIG, ContainerConfig(env=("A=2",)))
    assert one.manifest.digest != two.manifest.digest
    assert one.config.digest != two.config.digest


def test_config_only_request_adds_no_layers():
    manifest = data("busybox-latest.docker-manifest.json")
    result = augment_manifest(manifest, DOCKER_MANIFEST, CONFIG, ContainerConfig(cmd=("true",)))
    assert load(result.manifest)["layers"] == load(manifest)["layers"]


@pytest.mark.parametrize("index_file, header", [("busybox-multi-oci.oci-index.json", OCI_INDEX),
                                                 ("busybox-multi-v2s2.docker-manifest-list.json",
                                                  DOCKER_MANIFEST_LIST)])
def test_augmenting_an_index_as_a_manifest_is_refused(index_file, header):
    with pytest.raises(InvalidManifest, match="got an index"):
        augment_manifest(data(index_file), header, CONFIG, REQUEST)


def test_manifest_without_config_descriptor_is_refused():
    with pytest.raises(InvalidManifest, match="no config descriptor"):
        augment_manifest(b'{"schemaVersion":2,"layers":[]}', OCI_MANIFEST, CONFIG, REQUEST)


def test_config_descriptor_reads_the_manifest_config():
    descriptor = config_descriptor(data("busybox-oci.oci-manifest-no-mediatype.json"))
    assert descriptor == {"mediaType": OCI_CONFIG, "size": 738,
                          "digest": "sha256:4bcef8fd22646f6732b8c5eb1449d344e815d86fd9c70aec110499a241ba23f6"}
    assert descriptor["digest"] == sha256(CONFIG)


@pytest.mark.parametrize("raw", [b'{"schemaVersion":2}', b'{"config":{"size":3}}', b'{"config":"x"}'])
def test_config_descriptor_missing_or_without_digest_is_refused(raw):
    with pytest.raises(InvalidManifest, match="no config descriptor"):
        config_descriptor(raw)


def test_invalid_manifest_json_is_reported_as_such():
    with pytest.raises(InvalidManifest, match="image manifest is not valid JSON"):
        augment_manifest(b"<html>", OCI_MANIFEST, CONFIG, REQUEST)


# --- indexes: choosing a platform --------------------------------------------------------------------


def buildx_index() -> bytes:
    """An OCI index like buildx pushes for a multi-arch image with provenance attestations."""
    def entry(digest_char: str, size: int, platform: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {"mediaType": OCI_MANIFEST, "digest": "sha256:" + digest_char * 64, "size": size,
                "platform": platform, **extra}

    def attestation(digest_char: str, for_char: str) -> dict[str, Any]:
        return entry(digest_char, 566, {"architecture": "unknown", "os": "unknown"}, annotations={
            "vnd.docker.reference.digest": "sha256:" + for_char * 64,
            "vnd.docker.reference.type": "attestation-manifest",
        })

    return orjson.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            attestation("9", "1"),  # attestations listed first: must still never be chosen
            entry("1", 481, {"architecture": "amd64", "os": "linux"},
                  annotations={"org.opencontainers.image.revision": "abc"}),
            entry("2", 481, {"architecture": "arm", "os": "linux", "variant": "v7"}),
            entry("3", 481, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
            attestation("8", "3"),
        ],
        "annotations": {"org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
    }, option=orjson.OPT_INDENT_2)


@pytest.mark.parametrize("index_file, amd64, arm64", [
    ("busybox-multi-oci.oci-index.json", AMD64_OCI, ARM64_OCI),
    ("busybox-multi-v2s2.docker-manifest-list.json", AMD64_V2S2, ARM64_V2S2),
])
@pytest.mark.parametrize("platform_text, want", [("linux/amd64", "amd64"), ("x86_64", "amd64"), (None, "amd64"),
                                                 ("linux/arm64", "arm64"), ("aarch64", "arm64"),
                                                 ("linux/arm64/v8", "arm64")])
def test_select_platform_picks_the_entry_for_the_requested_platform(index_file, amd64, arm64, platform_text, want):
    entry = select_platform(data(index_file), parse_platform(platform_text))
    assert entry["digest"] == {"amd64": amd64, "arm64": arm64}[want]


def test_select_platform_never_picks_an_attestation_listed_first():
    assert select_platform(buildx_index(), parse_platform("linux/amd64"))["digest"] == "sha256:" + "1" * 64


def test_select_platform_matches_arm64_v8_entry_for_plain_arm64():
    assert select_platform(buildx_index(), parse_platform("arm64"))["digest"] == "sha256:" + "3" * 64


def test_select_platform_matches_arm_variant():
    assert select_platform(buildx_index(), parse_platform("linux/arm/v7"))["digest"] == "sha256:" + "2" * 64


def test_no_matching_platform_lists_available_platforms_without_attestations():
    with pytest.raises(NoMatchingPlatform) as caught:
        select_platform(buildx_index(), parse_platform("linux/ppc64le"))
    assert caught.value.available == ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]
    assert caught.value.wanted == parse_platform("linux/ppc64le")
    message = str(caught.value)
    assert "linux/ppc64le" in message
    assert "linux/amd64, linux/arm/v7, linux/arm64/v8" in message
    assert "unknown" not in message


def test_no_matching_platform_on_a_real_index_names_both_platforms():
    with pytest.raises(NoMatchingPlatform, match=r"available platforms: linux/amd64, linux/arm64\)"):
        select_platform(data("busybox-multi-v2s2.docker-manifest-list.json"), parse_platform("linux/s390x"))


def test_no_matching_platform_on_an_index_of_only_attestations_says_none():
    index = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "9" * 64, "size": 1,
         "platform": {"architecture": "unknown", "os": "unknown"}}]})
    with pytest.raises(NoMatchingPlatform, match=r"available platforms: none"):
        select_platform(index, parse_platform("linux/amd64"))


def test_entries_without_digest_or_platform_are_skipped():
    index = orjson.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "size": 1, "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "5" * 64, "size": 1},
        "not an entry",
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "6" * 64, "size": 1,
         "platform": {"architecture": "amd64", "os": "linux"}},
    ]})
    assert select_platform(index, parse_platform("linux/amd64"))["digest"] == "sha256:" + "6" * 64


# --- indexes: replacing the chosen entry -------------------------------------------------------------

INDEX_KINDS = [
    pytest.param("busybox-multi-oci.oci-index.json", OCI_INDEX, "busybox-oci.oci-manifest-no-mediatype.json",
                 OCI_MANIFEST, AMD64_OCI, id="oci-index"),
    pytest.param("busybox-multi-v2s2.docker-manifest-list.json", DOCKER_MANIFEST_LIST,
                 "busybox-latest.docker-manifest.json", DOCKER_MANIFEST, AMD64_V2S2, id="docker-list"),
]


def augment_index(index_file: str, index_type: str, manifest_file: str, manifest_type: str,
                  request: ContainerConfig = REQUEST) -> tuple[Blob, AugmentedImage, dict[str, Any]]:
    """What the proxy does for a pull of an index: choose, augment, replace."""
    index = data(index_file)
    entry = select_platform(index, parse_platform("linux/amd64"))
    manifest = data(manifest_file)
    assert sha256(manifest) == entry["digest"]  # the test data really is that entry
    image = augment_manifest(manifest, entry.get("mediaType") or manifest_type, CONFIG, request)
    return replace_index_entry(index, index_type, entry["digest"], image.manifest), image, entry


@pytest.mark.parametrize("index_file, index_type, manifest_file, manifest_type, old_digest", INDEX_KINDS)
def test_only_the_chosen_platform_entry_changes(index_file, index_type, manifest_file, manifest_type, old_digest):
    new_index, image, _ = augment_index(index_file, index_type, manifest_file, manifest_type)
    before, after = load(data(index_file)), load(new_index)
    assert len(after["manifests"]) == len(before["manifests"])
    for old, new in zip(before["manifests"], after["manifests"], strict=True):
        if old["digest"] == old_digest:
            assert new == {**old, "digest": image.manifest.digest, "size": image.manifest.size,
                           "mediaType": manifest_type}
        else:
            assert new == old
    assert {k: v for k, v in after.items() if k != "manifests"} == {k: v for k, v in before.items()
                                                                  if k != "manifests"}


@pytest.mark.parametrize("index_file, index_type, manifest_file, manifest_type, old_digest", INDEX_KINDS)
def test_index_digest_is_sha256_of_its_bytes_and_type_is_kept(index_file, index_type, manifest_file, manifest_type,
                                                              old_digest):
    new_index, _, _ = augment_index(index_file, index_type, manifest_file, manifest_type)
    assert new_index.media_type == index_type
    assert new_index.digest == sha256(new_index.data)
    assert new_index.size == len(new_index.data)
    assert new_index.digest != sha256(data(index_file))


@pytest.mark.parametrize("index_file, index_type, manifest_file, manifest_type, old_digest", INDEX_KINDS)
def test_index_entry_points_at_the_augmented_manifest_bytes(index_file, index_type, manifest_file, manifest_type,
                                                            old_digest):
    new_index, image, _ = augment_index(index_file, index_type, manifest_file, manifest_type)
    entry = select_platform(new_index.data, parse_platform("linux/amd64"))
    assert entry["digest"] == sha256(image.manifest.data)
    assert entry["size"] == len(image.manifest.data)


@pytest.mark.parametrize("index_file, index_type, manifest_file, manifest_type, old_digest", INDEX_KINDS)
def test_augmenting_an_index_twice_gives_identical_bytes(index_file, index_type, manifest_file, manifest_type,
                                                         old_digest):
    first, first_image, _ = augment_index(index_file, index_type, manifest_file, manifest_type)
    second, second_image, _ = augment_index(index_file, index_type, manifest_file, manifest_type)
    assert first.data == second.data
    assert first_image == second_image


def test_replace_index_entry_keeps_platform_and_annotations():
    index = buildx_index()
    manifest = Blob(OCI_MANIFEST, b'{"schemaVersion":2}')
    new = load(replace_index_entry(index, None, "sha256:" + "1" * 64, manifest))
    entry = new["manifests"][1]
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert entry["annotations"] == {"org.opencontainers.image.revision": "abc"}
    assert (entry["digest"], entry["size"]) == (manifest.digest, manifest.size)
    assert new["annotations"] == {"org.opencontainers.image.created": "2024-05-01T00:00:00Z"}


def test_replace_index_entry_leaves_attestations_as_upstream_had_them():
    index = buildx_index()
    new = load(replace_index_entry(index, OCI_INDEX, "sha256:" + "1" * 64, Blob(OCI_MANIFEST, b"{}")))
    before = load(index)
    assert new["manifests"][0] == before["manifests"][0]
    assert new["manifests"][4] == before["manifests"][4]


def test_replace_index_entry_of_an_index_without_mediatype_uses_the_header_and_adds_no_field():
    document = load(data("busybox-multi-oci.oci-index.json"))
    del document["mediaType"]
    new = replace_index_entry(orjson.dumps(document), OCI_INDEX, AMD64_OCI, Blob(OCI_MANIFEST, b"{}"))
    assert new.media_type == OCI_INDEX
    assert "mediaType" not in load(new)


def test_index_pipeline_for_arm64_leaves_the_amd64_entry_alone():
    index = data("busybox-multi-oci.oci-index.json")
    entry = select_platform(index, parse_platform("aarch64"))
    manifest = data("busybox-arm64.oci-manifest-no-mediatype.json")
    assert sha256(manifest) == entry["digest"] == ARM64_OCI
    image = augment_manifest(manifest, entry["mediaType"], data("busybox-arm64.config.json"), REQUEST)
    new = load(replace_index_entry(index, OCI_INDEX, ARM64_OCI, image.manifest))
    assert new["manifests"][0] == load(index)["manifests"][0]
    assert new["manifests"][1]["digest"] == image.manifest.digest
    assert load(image.config)["architecture"] == "arm64"


# --- embedded data: a descriptor that carries its object's bytes ------------------------------------------


def _with_embedded_config(manifest: bytes, config: bytes) -> bytes:
    document = load(manifest)
    document["config"]["data"] = base64.b64encode(config).decode()
    return orjson.dumps(document)


def _descriptor_agrees(descriptor: dict[str, Any], blob: Blob) -> None:
    assert descriptor["digest"] == blob.digest and descriptor["size"] == blob.size
    if "data" in descriptor:
        embedded = base64.b64decode(descriptor["data"], validate=True)
        assert embedded == blob.data and sha256(embedded) == descriptor["digest"]


@pytest.mark.parametrize(("manifest", "header", "manifest_type", "layer_type"), MANIFEST_KINDS)
def test_embedded_config_data_is_the_new_config(manifest: bytes, header: str, manifest_type: str,
                                                layer_type: str) -> None:
    result = augment_manifest(_with_embedded_config(manifest, CONFIG), header, CONFIG, REQUEST)
    descriptor = load(result.manifest)["config"]
    assert "data" in descriptor  # kept embedded, as upstream had it
    _descriptor_agrees(descriptor, result.config)


def test_a_config_descriptor_without_data_gets_none() -> None:
    result = augment_manifest(data("busybox-latest.docker-manifest.json"), DOCKER_MANIFEST, CONFIG, REQUEST)
    assert "data" not in load(result.manifest)["config"]


def test_embedded_manifest_data_in_an_index_entry_is_the_new_manifest() -> None:
    index = load(data("busybox-multi-oci.oci-index.json"))
    for entry in index["manifests"]:
        entry["data"] = base64.b64encode(b"upstream's manifest bytes stand in here").decode()
    raw = orjson.dumps(index)
    new_manifest = Blob(OCI_MANIFEST, b'{"schemaVersion":2,"wave":"augmented"}')
    result = load(replace_index_entry(raw, OCI_INDEX, AMD64_OCI, new_manifest))
    replaced = next(e for e in result["manifests"] if e["digest"] == new_manifest.digest)
    _descriptor_agrees(replaced, new_manifest)
    untouched = next(e for e in result["manifests"] if e["digest"] == ARM64_OCI)
    assert untouched == next(e for e in index["manifests"] if e["digest"] == ARM64_OCI)  # not wave's to change


def test_point_at_sets_digest_size_and_only_existing_data() -> None:
    blob = Blob(OCI_CONFIG, b"{}")
    plain: dict[str, Any] = {"mediaType": OCI_CONFIG, "digest": "sha256:" + "0" * 64, "size": 9}
    point_at(plain, blob)
    assert plain == {"mediaType": OCI_CONFIG, "digest": blob.digest, "size": 2}
    embedded: dict[str, Any] = {"digest": "sha256:" + "0" * 64, "size": 9, "data": "b2xk"}
    point_at(embedded, blob)
    _descriptor_agrees(embedded, blob)


# --- single-platform images: the config says which platform ----------------------------------------------


def test_a_single_platform_image_of_the_wanted_platform_passes() -> None:
    check_image_platform(CONFIG, parse_platform("linux/amd64"))
    check_image_platform(data("busybox-arm64.config.json"), parse_platform("linux/arm64/v8"))  # arm64 ≡ arm64/v8


def test_a_single_platform_image_of_another_platform_names_its_own() -> None:
    with pytest.raises(NoMatchingPlatform) as caught:
        check_image_platform(CONFIG, parse_platform("linux/arm64"))
    assert caught.value.available == ["linux/amd64"]
    assert "linux/arm64" in str(caught.value) and "linux/amd64" in str(caught.value)


def test_a_config_that_declares_no_platform_passes() -> None:
    check_image_platform(orjson.dumps({"rootfs": {"type": "layers", "diff_ids": []}}), parse_platform("linux/arm64"))
