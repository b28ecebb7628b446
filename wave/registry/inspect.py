"""What an image is, as wave sees it upstream: its manifest and config, or its index (``POST /v1alpha1/inspect``).

Why in wave rather than in the user's tooling: wave reaches the registry with its own credentials (and, once
Platform pairing lands, the user's), from where the containers will be pulled. The documents are returned as
parsed JSON with the digest of the exact bytes upstream served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wave.oci import augment
from wave.oci.mediatypes import is_index
from wave.oci.platform import Platform
from wave.oci.reference import ImageRef
from wave.registry.auth import UpstreamAuth
from wave.registry.client import Manifest, RegistryClient, upstream_document

MAX_CONFIG_SIZE = 8 << 20


@dataclass(frozen=True)
class Inspection:
    image: ImageRef
    manifest: Manifest
    document: dict[str, Any]
    config: dict[str, Any] | None = None
    platform_manifest: Inspection | None = None  # an index inspected for one platform

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "image": str(self.image),
            "registry": self.image.registry,
            "repository": self.image.repository,
            "reference": self.image.reference,
            "digest": self.manifest.digest,
            "mediaType": self.manifest.media_type,
            "index" if is_index(self.manifest.media_type) else "manifest": self.document,
        }
        if self.config is not None:
            body["config"] = self.config
        if self.platform_manifest is not None:
            body["platformManifest"] = self.platform_manifest.to_json()
        return body


async def inspect_image(client: RegistryClient, ref: ImageRef, platform: Platform | None = None, *,
                        auth: UpstreamAuth | None = None) -> Inspection:
    """The image manifest and its config; for an index the index itself, and with ``platform`` also the
    manifest and config of that platform's entry (augment.NoMatchingPlatform when it has none). ``auth``: a
    Platform user's credentials (None: wave's)."""
    manifest = await client.get_manifest(ref, auth=auth)
    document = upstream_document(manifest.data, f"the manifest of {ref}")
    if is_index(manifest.media_type):
        chosen = None
        if platform is not None:
            entry = augment.select_platform(manifest.data, platform)
            chosen = await inspect_image(client, ref.with_reference(str(entry["digest"])), auth=auth)
        return Inspection(ref, manifest, document, platform_manifest=chosen)
    config = None
    descriptor = document.get("config")
    if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
        data = await client.get_blob(ref, descriptor["digest"], MAX_CONFIG_SIZE, auth=auth)
        config = upstream_document(data, f"the config of {ref}")
    return Inspection(ref, manifest, document, config)
