"""The control API's answers as typed models: what the handlers render, and what ``/openapi.json`` describes.

A handler that builds its answer from one of these cannot drift from the published schema; the tests
validate real answers of every route against the generated document for the others.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class ErrorAnswer(msgspec.Struct, frozen=True):
    """A control API error: what the client must fix (4xx), or what failed (5xx), in one sentence."""

    message: str


class ContainerAnswer(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, kw_only=True):
    """The answer to a container request. A freeze has no token: ``targetImage`` is the pushed image itself."""

    container_token: str | None = None
    target_image: str
    expiration: str | None = None  # ISO-8601, UTC
    container_image: str | None = None
    build_id: str | None = None
    cached: bool | None = None  # the build's target existed already (only for builds)
    freeze: bool


class BuildStatusAnswer(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """``GET /v1alpha1/builds/{id}/status``; ``reason`` says why a failed build failed, and where its log is."""

    id: str
    status: Literal["PENDING", "COMPLETED"]
    start_time: str
    duration: float | None = None
    succeeded: bool | None = None
    reason: str | None = None


class ContainerStatusAnswer(msgspec.Struct, frozen=True, rename="camel"):
    """``GET /v1alpha2/container/{token}/status``: ``PENDING`` (build announced), ``BUILDING``, ``DONE``."""

    id: str
    build_id: str | None
    status: Literal["PENDING", "BUILDING", "DONE"]
    succeeded: bool | None
    creation_time: str
    duration: float | None
    reason: str | msgspec.UnsetType = msgspec.UNSET


class LayerDescription(msgspec.Struct, frozen=True, rename="camel"):
    location: str  # inline data is shown by its size only
    gzip_digest: str
    gzip_size: int
    tar_digest: str


class ConfigDescription(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] | None = None
    working_dir: str | None = None
    layers: list[LayerDescription] | None = None


class RequestDescription(msgspec.Struct, frozen=True, rename="camel"):
    container_image: str
    container_platform: str
    container_config: ConfigDescription
    freeze: bool


class BuildReference(msgspec.Struct, frozen=True, rename="camel"):
    build_id: str


class ImageDescription(msgspec.Struct, frozen=True):
    image: str
    digest: str | None


class TokenDescription(msgspec.Struct, frozen=True, rename="camel"):
    """``GET /container-token/{token}``: what was asked for and what wave serves; never a secret."""

    token: str
    creation_time: str
    expiration: str
    request: RequestDescription
    build: BuildReference | None
    source: ImageDescription
    wave: ImageDescription


class InspectRequest(msgspec.Struct, frozen=True, rename="camel"):
    """``POST /v1alpha1/inspect``: the image to describe; with ``containerPlatform``, an index's entry too."""

    container_image: str
    container_platform: str | None = None
    tower_access_token: str | None = None
    tower_refresh_token: str | None = None
    tower_endpoint: str | None = None
    tower_workspace_id: int | str | None = None


class InspectedImage(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """An image as its registry serves it: the manifest and its config, or the index (and, asked for a
    platform, that platform's manifest). ``digest`` is the sha256 of the bytes the registry served."""

    image: str
    registry: str
    repository: str
    reference: str
    digest: str
    media_type: str
    manifest: dict[str, Any] | None = None
    index: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    platform_manifest: InspectedImage | None = None


class InspectAnswer(msgspec.Struct, frozen=True):
    container: InspectedImage


class ServiceInfo(msgspec.Struct, frozen=True, rename="camel"):
    version: str
    commit_id: str


class ServiceInfoAnswer(msgspec.Struct, frozen=True, rename="camel"):
    service_info: ServiceInfo


class HealthAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    status: Literal["ok", "unavailable"]
    message: str | None = None


class CountAnswer(msgspec.Struct, frozen=True):
    count: int


class GroupedAnswer(msgspec.Struct, frozen=True):
    """Counts by IP address or by user e-mail."""

    result: dict[str, int]
