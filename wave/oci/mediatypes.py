"""Manifest and layer media types, and how to tell which one a document is."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_MANIFEST_TYPES
# What wave asks upstream for: every kind, so that it can choose a platform itself.
ALL_MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_oci(media_type: str) -> bool:
    return media_type.startswith("application/vnd.oci.")


def layer_type_for(manifest_type: str) -> str:
    """An injected layer's media type matches the family of the manifest it joins."""
    return OCI_LAYER_GZIP if is_oci(manifest_type) else DOCKER_LAYER_GZIP


def manifest_type_of(document: Mapping[str, Any], header_type: str | None) -> str:
    """The media type of a manifest: its ``mediaType`` field, else the Content-Type header, else inferred.

    OCI manifests written by umoci or buildah often have no ``mediaType`` field at all.
    """
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared in MANIFEST_TYPES:
        return declared
    header = (header_type or "").split(";")[0].strip()
    if header in MANIFEST_TYPES:
        return header
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


@functools.lru_cache(maxsize=256)  # a client sends the same Accept headers with every request
def parse_accept(values: tuple[str, ...]) -> tuple[str, ...]:
    """Media types from Accept headers, whether sent as several headers or one comma-separated list."""
    types = []
    for value in values:
        for item in value.split(","):
            media_type = item.split(";")[0].strip()
            if media_type:
                types.append(media_type)
    return tuple(types)
