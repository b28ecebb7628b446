"""Container requests as the API receives them: parsed, validated and decoded, or a 400 naming the field.

Real clients send fields the contract does not list (``dryRun``, ``workflowId``, ``nameStrategy``, …): those
are accepted, and the ones wave does not act on are logged at debug, so no client breaks on them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wave.errors import BadRequest
from wave.oci.digest import is_sha256_digest
from wave.oci.models import ContainerConfig, Layer
from wave.oci.platform import InvalidPlatform, parse_platform
from wave.oci.reference import InvalidReference, parse_reference, parse_repository

log = logging.getLogger("wave.api")

_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SHELL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KNOWN_FIELDS = {
    "containerImage", "containerFile", "containerConfig", "condaFile", "spackFile", "containerPlatform",
    "buildRepository", "cacheRepository", "timestamp", "fingerprint", "freeze", "towerAccessToken",
    "towerRefreshToken", "towerEndpoint", "towerWorkspaceId", "packages", "format", "dryRun",
}
MAX_LIST = 1000
MAX_TEXT = 1 << 20
MAX_URL = 8192  # an http(s) layer location becomes a redirect's Location header


@dataclass(frozen=True)
class CondaOpts:
    mamba_image: str | None = None
    commands: tuple[str, ...] = ()
    base_packages: str | None = None


@dataclass(frozen=True)
class SpackOpts:
    commands: tuple[str, ...] = ()
    base_packages: str | None = None


@dataclass(frozen=True)
class Packages:
    type: str  # "CONDA" | "SPACK"
    entries: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    env_file: str | None = None
    conda_opts: CondaOpts = field(default_factory=CondaOpts)
    spack_opts: SpackOpts = field(default_factory=SpackOpts)


@dataclass(frozen=True)
class SubmitRequest:
    container_image: str | None
    container_file: str | None
    container_config: ContainerConfig
    conda_file: str | None
    spack_file: str | None
    packages: Packages | None
    platform: str
    build_repository: str | None
    cache_repository: str | None
    freeze: bool
    format: str  # "docker" | "sif"
    user_email: str | None = None
    client_ip: str | None = None
    dry_run: bool = False
    platform_credentials: bool = False  # the request carried Seqera Platform credentials

    @property
    def is_build(self) -> bool:
        return bool(self.container_file or self.conda_file or self.spack_file or self.packages)


# --- field readers: each names the field in its error ----------------------------------------------


def _str(body: Mapping[str, Any], name: str, max_len: int = 4096, where: str = "") -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{where}{name} must be a string")
    if len(value) > max_len:
        raise BadRequest(f"{where}{name} is longer than {max_len} characters")
    return value


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def _str_list(body: Mapping[str, Any], name: str, where: str = "") -> tuple[str, ...] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{where}{name} must be a list of strings")
    if len(value) > MAX_LIST:
        raise BadRequest(f"{where}{name} has more than {MAX_LIST} items")
    return tuple(value)


def _base64_text(body: Mapping[str, Any], name: str, where: str = "") -> str | None:
    encoded = _str(body, name, max_len=MAX_TEXT * 4 // 3 + 4, where=where)
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}{name} must be base64 of UTF-8 text") from None


def _object(body: Mapping[str, Any], name: str, where: str = "") -> Mapping[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{where}{name} must be a JSON object")
    return value


# --- the request ----------------------------------------------------------------------------------


def parse_layer(index: int, value: Any, max_inline: int) -> Layer:
    where = f"containerConfig.layers[{index}]"
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    location = _str(value, "location", max_len=max_inline * 4 // 3 + 256, where=f"{where}.")
    if not location:
        raise BadRequest(f"{where}.location is required")
    if not (location.startswith("data:") or re.match(r"^https?://", location)):
        raise BadRequest(f"{where}.location must be an http(s) URL or data: with base64 content")
    if not location.startswith("data:") and len(location) > MAX_URL:
        raise BadRequest(f"{where}.location is a URL longer than {MAX_URL} characters")
    digests = {}
    for key in ("gzipDigest", "tarDigest"):
        digest = value.get(key)
        if not isinstance(digest, str) or not is_sha256_digest(digest):
            raise BadRequest(f"{where}.{key} must be a sha256 digest (sha256:<64 hex>)")
        digests[key] = digest
    size = value.get("gzipSize")
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise BadRequest(f"{where}.gzipSize must be a positive number of bytes")
    return Layer(location, digests["gzipDigest"], size, digests["tarDigest"])


def parse_container_config(value: Mapping[str, Any] | None, max_inline: int) -> ContainerConfig:
    if value is None:
        return ContainerConfig()
    where = "containerConfig."
    env = _str_list(value, "env", where) or ()
    for item in env:
        key, sep, _ = item.partition("=")
        if not sep or not _ENV_KEY_RE.fullmatch(key):
            raise BadRequest(f"containerConfig.env item {item[:64]!r} must be KEY=value")
    layers = value.get("layers") or []
    if not isinstance(layers, list):
        raise BadRequest("containerConfig.layers must be a list")
    if len(layers) > 127:
        raise BadRequest("containerConfig.layers has more than 127 layers")
    working_dir = _str(value, "workingDir", where=where)
    if working_dir is not None and not working_dir.startswith("/"):
        raise BadRequest("containerConfig.workingDir must be an absolute path")
    return ContainerConfig(
        entrypoint=_str_list(value, "entrypoint", where),
        cmd=_str_list(value, "cmd", where),
        env=env,
        working_dir=working_dir,
        layers=tuple(parse_layer(i, layer, max_inline) for i, layer in enumerate(layers)),
    )


def parse_packages(value: Mapping[str, Any]) -> Packages:
    kind = value.get("type")
    if kind not in ("CONDA", "SPACK"):
        raise BadRequest("packages.type must be CONDA or SPACK")
    entries = _str_list(value, "entries", "packages.") or _str_list(value, "packages", "packages.") or ()
    env_file = _base64_text(value, "envFile", "packages.") or _base64_text(value, "environment", "packages.")
    if not entries and not env_file:
        raise BadRequest("packages needs entries (a list of package names) or envFile")
    conda = _object(value, "condaOpts", "packages.") or {}
    spack = _object(value, "spackOpts", "packages.") or {}
    return Packages(
        type=kind,
        entries=entries,
        channels=_str_list(value, "channels", "packages.") or (),
        env_file=env_file,
        conda_opts=CondaOpts(_str(conda, "mambaImage", where="packages.condaOpts."),
                             _str_list(conda, "commands", "packages.condaOpts.") or (),
                             _str(conda, "basePackages", where="packages.condaOpts.")),
        spack_opts=SpackOpts(_str_list(spack, "commands", "packages.spackOpts.") or (),
                             _str(spack, "basePackages", where="packages.spackOpts.")),
    )


def parse_submit(body: Any, *, v2: bool, max_inline: int, client_ip: str | None = None) -> SubmitRequest:
    """Validate a ``POST /container-token`` (v1) or ``POST /v1alpha2/container`` (v2) body."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    for name in sorted(set(body) - _KNOWN_FIELDS):
        log.debug("ignoring request field %s", name)
    image = _str(body, "containerImage", max_len=1024)
    if image is not None:
        try:
            ref = parse_reference(image)
        except InvalidReference as exc:
            raise BadRequest(f"containerImage: {exc}") from None
    container_file = _base64_text(body, "containerFile")
    conda_file = _base64_text(body, "condaFile")
    spack_file = _base64_text(body, "spackFile")
    packages_body = _object(body, "packages")
    if v2 and (conda_file or spack_file):
        raise BadRequest("condaFile and spackFile are not accepted by /v1alpha2/container: use packages")
    if not v2 and packages_body is not None:
        raise BadRequest("packages is only accepted by /v1alpha2/container")
    packages = parse_packages(packages_body) if packages_body is not None else None
    recipes = [n for n, v in (("containerFile", container_file), ("condaFile", conda_file),
                              ("spackFile", spack_file), ("packages", packages)) if v]
    if len(recipes) > 1:
        raise BadRequest(f"give only one of {', '.join(recipes)}")
    if image and recipes:
        raise BadRequest(f"give either containerImage or {recipes[0]}, not both")
    if not image and not recipes:
        raise BadRequest("containerImage or containerFile (or packages) is required")
    config = parse_container_config(_object(body, "containerConfig"), max_inline)
    if image and ref.digest and not config.is_empty:
        raise BadRequest(
            f"containerImage {image} is given by digest, and a containerConfig would change its digest: "
            "pass a tag instead"
        )
    try:
        platform = str(parse_platform(_str(body, "containerPlatform")))
    except InvalidPlatform as exc:
        raise BadRequest(f"containerPlatform: {exc}") from None
    repositories = {}
    for name in ("buildRepository", "cacheRepository"):
        text = _str(body, name, max_len=512)
        if text is not None:
            try:
                parse_repository(text)
            except InvalidReference as exc:
                raise BadRequest(f"{name}: {exc}") from None
        repositories[name] = text
    fmt = _str(body, "format") or "docker"
    if fmt not in ("docker", "sif"):
        raise BadRequest("format must be docker or sif")
    for item in config.env if fmt == "sif" else ():
        key = item.split("=", 1)[0]
        if not _SHELL_NAME_RE.fullmatch(key):
            raise BadRequest(f"containerConfig.env key {key!r} cannot be set in a Singularity image "
                             "(its environment is a shell script: letters, digits and _ only)")
    for name in ("timestamp", "fingerprint", "towerAccessToken", "towerRefreshToken", "towerEndpoint"):
        _str(body, name)
    workspace = body.get("towerWorkspaceId")
    numeric = (isinstance(workspace, int) and not isinstance(workspace, bool)) or (
        isinstance(workspace, str) and workspace.isdigit())
    if workspace is not None and not numeric:
        raise BadRequest("towerWorkspaceId must be a number")
    return SubmitRequest(
        container_image=image,
        container_file=container_file,
        container_config=config,
        conda_file=conda_file,
        spack_file=spack_file,
        packages=packages,
        platform=platform,
        build_repository=repositories["buildRepository"],
        cache_repository=repositories["cacheRepository"],
        freeze=_bool(body, "freeze"),
        format=fmt,
        client_ip=client_ip,
        dry_run=_bool(body, "dryRun"),
        platform_credentials=bool(body.get("towerAccessToken")),
    )
