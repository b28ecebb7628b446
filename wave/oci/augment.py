"""Augmentation: apply a request's ContainerConfig to an image config, its manifest and its index.

Each function takes the upstream bytes and returns new :class:`Blob` objects whose digests are the sha256
of exactly the bytes that will be served. Re-running a function on the same input gives the same bytes,
so wave can re-derive an object after its cache expired without changing any digest.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wave.oci.digest import dump_json, sha256_digest
from wave.oci.mediatypes import (
    DOCKER_CONFIG,
    OCI_CONFIG,
    is_index,
    is_oci,
    layer_type_for,
    manifest_type_of,
)
from wave.oci.models import ContainerConfig
from wave.oci.platform import Platform, platform_of

ENTRY_CHAIN_VAR = "WAVE_ENTRY_CHAIN"


class InvalidManifest(ValueError):
    """Upstream sent a document that is not the manifest or config it claims to be."""


class NoMatchingPlatform(LookupError):
    def __init__(self, wanted: Platform, available: list[str]):
        shown = ", ".join(available) or "none"
        super().__init__(f"the image has no {wanted} variant (available platforms: {shown})")
        self.wanted = wanted
        self.available = available


@dataclass(frozen=True)
class Blob:
    """Bytes as served, with the digest and media type that describe them."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @classmethod
    def of(cls, media_type: str, document: Any) -> Blob:
        return cls(media_type, dump_json(document))


def load_document(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidManifest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidManifest(f"{what} is not a JSON object")
    return document


def augment_config(config: bytes, request: ContainerConfig) -> bytes:
    """The image config with entrypoint, cmd, env, working dir, diff_ids and history applied."""
    document = load_document(config, "image config")
    runtime = document.get("config") or {}
    env = list(runtime.get("Env") or [])
    if request.entrypoint is not None:
        original = runtime.get("Entrypoint") or []
        if original:
            env = set_env(env, [f"{ENTRY_CHAIN_VAR}={' '.join(original)}"])
        runtime["Entrypoint"] = list(request.entrypoint)
    if request.cmd is not None:
        runtime["Cmd"] = list(request.cmd)
    if request.working_dir:
        runtime["WorkingDir"] = request.working_dir
    env = set_env(env, request.env)
    if env or "Env" in runtime:
        runtime["Env"] = env
    document["config"] = runtime
    if request.layers:
        rootfs = document.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs.setdefault("diff_ids", []).extend(layer.tar_digest for layer in request.layers)
        if isinstance(document.get("history"), list):
            document["history"].extend(
                {"created_by": f"wave: injected layer {layer.gzip_digest}"} for layer in request.layers
            )
    return dump_json(document)


def set_env(env: list[str], assignments: tuple[str, ...] | list[str]) -> list[str]:
    """Set each ``KEY=value`` in place when KEY exists, else append it: no duplicate keys."""
    out = list(env)
    positions = {item.split("=", 1)[0]: i for i, item in enumerate(out)}
    for assignment in assignments:
        key = assignment.split("=", 1)[0]
        if key in positions:
            out[positions[key]] = assignment
        else:
            positions[key] = len(out)
            out.append(assignment)
    return out


@dataclass(frozen=True)
class AugmentedImage:
    manifest: Blob
    config: Blob


def config_descriptor(manifest: bytes) -> dict[str, Any]:
    """The config descriptor of an image manifest (what to fetch before augmenting it)."""
    document = load_document(manifest, "image manifest")
    config = document.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise InvalidManifest("image manifest has no config descriptor")
    return config


def point_at(descriptor: dict[str, Any], blob: Blob) -> None:
    """Make a descriptor describe ``blob``: its digest and size, and its bytes again where the descriptor embeds
    them (``data``, base64 of the content, which the image spec allows). A descriptor whose ``data`` still held
    the old object's bytes would contradict its own digest and size."""
    descriptor["digest"] = blob.digest
    descriptor["size"] = blob.size
    if "data" in descriptor:
        descriptor["data"] = base64.b64encode(blob.data).decode("ascii")


def augment_manifest(
    manifest: bytes, media_type: str | None, config: bytes, request: ContainerConfig
) -> AugmentedImage:
    """A new config blob and a manifest that points at it and lists the injected layers."""
    document = load_document(manifest, "image manifest")
    manifest_type = manifest_type_of(document, media_type)
    if is_index(manifest_type):
        raise InvalidManifest("expected an image manifest, got an index")
    descriptor = document.get("config")
    if not isinstance(descriptor, dict):
        raise InvalidManifest("image manifest has no config descriptor")
    config_type = descriptor.get("mediaType") or (OCI_CONFIG if is_oci(manifest_type) else DOCKER_CONFIG)
    new_config = Blob(config_type, augment_config(config, request))
    point_at(descriptor, new_config)
    layer_type = layer_type_for(manifest_type)
    layers = document.setdefault("layers", [])
    layers.extend(
        {"mediaType": layer_type, "size": layer.gzip_size, "digest": layer.gzip_digest}
        for layer in request.layers
    )
    return AugmentedImage(Blob.of(manifest_type, document), new_config)


def select_platform(index: bytes, platform: Platform) -> dict[str, Any]:
    """The index entry for a platform; never an attestation (``unknown/unknown``) entry."""
    document = load_document(index, "image index")
    entries = [e for e in document.get("manifests") or [] if isinstance(e, dict)]
    for entry in entries:
        if platform.matches(entry.get("platform")) and isinstance(entry.get("digest"), str):
            return entry
    available = sorted(
        {
            str(platform_of(e["platform"]))
            for e in entries
            if isinstance(e.get("platform"), Mapping) and e["platform"].get("os") not in (None, "unknown")
        }
    )
    raise NoMatchingPlatform(platform, available)


def check_image_platform(config: bytes, wanted: Platform) -> None:
    """Raise :class:`NoMatchingPlatform` naming the image's platform when a single-platform image (its config's
    ``os``/``architecture``/``variant``) is not ``wanted``; a config that declares no platform passes."""
    document = load_document(config, "image config")
    if not isinstance(document.get("os"), str) or not isinstance(document.get("architecture"), str):
        return
    if not (document["os"] and document["architecture"]) or wanted.matches(document):
        return
    raise NoMatchingPlatform(wanted, [str(platform_of(document))])


def replace_index_entry(index: bytes, media_type: str | None, old_digest: str, manifest: Blob) -> Blob:
    """The index with one entry pointing at a new manifest; every other entry is left as upstream had it."""
    document = load_document(index, "image index")
    index_type = manifest_type_of(document, media_type)
    for entry in document.get("manifests") or []:
        if isinstance(entry, dict) and entry.get("digest") == old_digest:
            point_at(entry, manifest)
            entry["mediaType"] = manifest.media_type
    return Blob.of(index_type, document)
