"""The container request: one typed model, decoded once where the request arrives.

``POST /container-token`` and ``POST /v1alpha2/container`` bodies become a :class:`SubmitRequest` whose fields
carry parsed types (an :class:`~wave.oci.reference.ImageRef`, a :class:`~wave.oci.platform.Platform`, layers
as :class:`~wave.oci.models.Layer`, packages as :class:`Packages`), so no service parses them again. Every rule
about what a request may hold or combine lives here, in the model's ``__post_init__`` checks: services and
builds trust a request they are given.

Decoding is msgspec's (``decode_submit``): types, lengths and patterns are declared on the fields, and the
library's errors, which carry the JSON path of the bad field, are worded as wave has always worded them
(``containerConfig.layers[0].gzipDigest must be a sha256 digest …``). A 400 names the field, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from wave.errors import BadRequest
from wave.oci.models import MAX_LIST, MAX_TEXT_FIELD, ContainerConfig, Layer
from wave.oci.platform import DEFAULT_PLATFORM, InvalidPlatform, Platform, parse_platform
from wave.oci.reference import ImageRef, InvalidReference, parse_reference, parse_repository
from wave.units import format_size

__all__ = ["Base64Text", "CondaOpts", "ContainerConfig", "Layer", "Packages", "Repository", "SpackOpts",
           "SubmitRequest", "decode_submit"]

MAX_IMAGE = 1024
MAX_REPOSITORY = 512
MAX_TEXT = 1 << 20  # decoded containerFile, condaFile, spackFile, envFile
MAX_URL = 8192  # an http(s) layer location becomes a redirect's Location header

Text = Annotated[str, Meta(max_length=MAX_TEXT_FIELD)]
StrList = Annotated[tuple[str, ...], Meta(max_length=MAX_LIST)]
Format = Annotated[Literal["docker", "sif"], Meta(description="must be docker or sif")]
PackageType = Annotated[Literal["CONDA", "SPACK"], Meta(description="must be CONDA or SPACK")]
WorkspaceId = Annotated[int, Meta(ge=0, le=(1 << 63) - 1, description="must be a number")]

_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SHELL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS_RE = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also takes "²" and "١٢٣"
# Set by the surface from the connection and the caller's identity; a body naming them is not believed.
SURFACE_FIELDS = ("sourceImage", "userEmail", "clientIp")


class Base64Text(str):
    """Text a client sends base64-encoded (``containerFile``, ``condaFile``, ``envFile`` …), held decoded."""

    __slots__ = ()


class Repository(str):
    """A repository without tag or digest (``buildRepository``, ``cacheRepository``), as the client wrote it."""

    __slots__ = ()


def _single_lines(items: tuple[str, ...], what: str) -> None:
    for item in items:
        if "\n" in item or "\r" in item:
            raise BadRequest(f"{what} entries must be single lines")


def _image_text(text: str, what: str) -> None:
    try:
        parse_reference(text)
    except InvalidReference as exc:
        raise BadRequest(f"{what}: {exc}") from None


class CondaOpts(msgspec.Struct, frozen=True, rename="camel"):
    mamba_image: Text | None = None  # kept as written: the build file names it verbatim
    commands: StrList = ()
    base_packages: Text | None = None


class SpackOpts(msgspec.Struct, frozen=True, rename="camel"):
    commands: StrList = ()
    base_packages: Text | None = None


class Packages(msgspec.Struct, frozen=True, rename="camel"):
    """``packages`` of a v2 request: conda or spack packages (or an environment file) to build an image of.

    The reference service documents two spellings (``entries``/``packages``, ``envFile``/``environment``);
    the second is folded into the first, which is what services read. The rules on packages are checked
    with the request's (``_check_packages``).
    """

    type: PackageType
    entries: StrList = ()
    channels: StrList = ()
    env_file: Base64Text | None = None
    conda_opts: CondaOpts = msgspec.field(default_factory=CondaOpts)
    spack_opts: SpackOpts = msgspec.field(default_factory=SpackOpts)
    entries_alias: StrList | None = msgspec.field(default=None, name="packages")
    env_file_alias: Base64Text | None = msgspec.field(default=None, name="environment")

    def __post_init__(self) -> None:
        if not self.entries and self.entries_alias:
            force_setattr(self, "entries", self.entries_alias)
        if not self.env_file and self.env_file_alias:
            force_setattr(self, "env_file", self.env_file_alias)


class SubmitRequest(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A validated container request: an image to augment, or a recipe (or image) to build.

    Built by :func:`decode_submit` from a body, or in code (tests); either way the checks in
    ``__post_init__`` run, so an instance always satisfies the contract's rules. Who asks (``user_email``,
    once the caller is identified) is added with ``msgspec.structs.replace``, which runs them again.
    """

    container_image: ImageRef | None = None
    container_file: Base64Text | None = None
    container_config: ContainerConfig = msgspec.field(default_factory=ContainerConfig)
    conda_file: Base64Text | None = None
    spack_file: Base64Text | None = None
    packages: Packages | None = None
    platform: Platform = msgspec.field(default=DEFAULT_PLATFORM, name="containerPlatform")
    build_repository: Repository | None = None
    cache_repository: Repository | None = None
    freeze: bool = False
    format: Format = "docker"
    dry_run: bool = False
    timestamp: Text | None = None  # sent by Nextflow; not acted on
    fingerprint: Text | None = None  # sent by Nextflow; not acted on
    # Seqera Platform credentials of the caller: they identify the user (see wave.identity); never logged.
    tower_access_token: Text | None = None
    tower_refresh_token: Text | None = None
    tower_endpoint: Text | None = None
    tower_workspace_id: WorkspaceId | None = None
    workflow_id: Text | None = None  # sent by Nextflow: Platform credentials are then cached for the run
    # From the surface, not the body (SURFACE_FIELDS):
    source_image: str | None = None  # containerImage as the client wrote it (a freeze builds FROM it)
    user_email: str | None = None
    client_ip: str | None = None

    def __post_init__(self) -> None:
        _check_recipe(self)
        if self.packages is not None:
            _check_packages(self.packages)
        _check_config(self.container_config, self.format)
        _check_digest_pinning(self)
        if self.format == "sif" and not self.freeze:
            raise BadRequest("format sif requires freeze: true (the Singularity image is pushed to buildRepository)")

    def __repr__(self) -> str:
        shown = {f: getattr(self, f) for f in self.__struct_fields__}
        for secret in ("tower_access_token", "tower_refresh_token"):
            if shown[secret] is not None:
                shown[secret] = "***"
        return "SubmitRequest(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def is_build(self) -> bool:
        return bool(self.container_file or self.conda_file or self.spack_file or self.packages)

    @property
    def platform_credentials(self) -> bool:
        """The request carried Seqera Platform credentials."""
        return bool(self.tower_access_token)

    @property
    def image_text(self) -> str | None:
        """The image as the client wrote it (``alpine:3``), else as parsed."""
        if self.container_image is None:
            return None
        return self.source_image or str(self.container_image)


# --- the rules: each names the field it is about ----------------------------------------------------


def _check_recipe(request: SubmitRequest) -> None:
    recipes = [name for name, value in (("containerFile", request.container_file), ("condaFile", request.conda_file),
                                        ("spackFile", request.spack_file), ("packages", request.packages)) if value]
    if len(recipes) > 1:
        raise BadRequest(f"give only one of {', '.join(recipes)}")
    if request.container_image and recipes:
        raise BadRequest(f"give either containerImage or {recipes[0]}, not both")
    if not request.container_image and not recipes:
        raise BadRequest("containerImage or containerFile (or packages) is required")


def _check_packages(packages: Packages) -> None:
    if not packages.entries and not packages.env_file:
        raise BadRequest("packages needs entries (a list of package names) or envFile")
    for entry in (*packages.entries, *packages.channels):
        if not entry.strip() or "\n" in entry or "\r" in entry:
            raise BadRequest(f"package names and channels must be single non-empty lines, not {entry[:60]!r}")
    if packages.conda_opts.mamba_image is not None:
        _image_text(packages.conda_opts.mamba_image, "packages.condaOpts.mambaImage")
    _single_lines(packages.conda_opts.commands, "packages.condaOpts.commands")
    _single_lines(packages.spack_opts.commands, "packages.spackOpts.commands")


def _check_config(config: ContainerConfig, fmt: str) -> None:
    for item in config.env:
        key, sep, _ = item.partition("=")
        if not sep or not _ENV_KEY_RE.fullmatch(key):
            raise BadRequest(f"containerConfig.env item {item[:64]!r} must be KEY=value")
        if fmt == "sif" and not _SHELL_NAME_RE.fullmatch(key):
            raise BadRequest(f"containerConfig.env key {key!r} cannot be set in a Singularity image "
                             "(its environment is a shell script: letters, digits and _ only)")
    if config.working_dir is not None and not config.working_dir.startswith("/"):
        raise BadRequest("containerConfig.workingDir must be an absolute path")
    for i, layer in enumerate(config.layers):
        if not layer.is_inline and len(layer.location) > MAX_URL:
            raise BadRequest(f"containerConfig.layers[{i}].location is a URL longer than {MAX_URL} characters")


def _check_digest_pinning(request: SubmitRequest) -> None:
    image = request.container_image
    if image is not None and image.digest and not request.container_config.is_empty:
        raise BadRequest(f"containerImage {request.image_text} is given by digest, and a containerConfig would "
                         "change its digest: pass a tag instead")


# --- decoding -----------------------------------------------------------------------------------------


def decode_submit(body: object, *, v2: bool, max_inline: int, client_ip: str | None = None) -> SubmitRequest:
    """The request of a ``POST /container-token`` (v1) or ``POST /v1alpha2/container`` (v2) body (JSON already
    parsed, so the surface decides how bytes are read); BadRequest naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    fields = _present(body)
    _check_endpoint(fields, v2)
    for name in SURFACE_FIELDS:
        fields.pop(name, None)
    _digit_strings_as_numbers(fields)
    _parsed_references(fields)
    if client_ip is not None:
        fields["clientIp"] = client_ip
    try:
        request = msgspec.convert(fields, SubmitRequest, dec_hook=_decode_custom)
    except msgspec.ValidationError as exc:
        raise BadRequest(_worded(str(exc))) from None
    _check_inline_sizes(request.container_config, max_inline)
    return request


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """The object without its null and empty-string members, at every depth: clients send ``""`` and
    ``null`` for "not given", and the contract reads them so."""
    kept: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None or (isinstance(value, str) and not value):
            continue
        if isinstance(value, dict):
            value = _present(value)
        elif isinstance(value, list):
            value = [_present(item) if isinstance(item, dict) else item for item in value]
        kept[key] = value
    return kept


def _check_endpoint(fields: dict[str, Any], v2: bool) -> None:
    if v2 and (fields.get("condaFile") or fields.get("spackFile")):
        raise BadRequest("condaFile and spackFile are not accepted by /v1alpha2/container: use packages")
    if not v2 and "packages" in fields:
        raise BadRequest("packages is only accepted by /v1alpha2/container")


def _digit_strings_as_numbers(fields: dict[str, Any]) -> None:
    """The contract shows ``gzipSize`` and ``towerWorkspaceId`` as numbers or strings of digits."""

    def number(value: Any) -> Any:
        return int(value) if isinstance(value, str) and _DIGITS_RE.fullmatch(value) else value

    if "towerWorkspaceId" in fields:
        fields["towerWorkspaceId"] = number(fields["towerWorkspaceId"])
    config = fields.get("containerConfig")
    layers = config.get("layers") if isinstance(config, dict) else None
    for layer in layers if isinstance(layers, list) else ():
        if isinstance(layer, dict) and "gzipSize" in layer:
            layer["gzipSize"] = number(layer["gzipSize"])


def _check_inline_sizes(config: ContainerConfig, max_inline: int) -> None:
    limit = max_inline * 4 // 3 + 256  # base64 of max_inline bytes, and the data: prefix
    for i, layer in enumerate(config.layers):
        if layer.is_inline and len(layer.location) > limit:
            raise BadRequest(f"containerConfig.layers[{i}]: the inline layer is larger than the limit of "
                             f"{format_size(max_inline)} (WAVE_MAX_INLINE_LAYER_SIZE); serve it from an http(s) URL")


def _parsed_references(fields: dict[str, Any]) -> None:
    """``containerImage`` and ``containerPlatform`` as ImageRef and Platform. msgspec would decode those
    dataclasses from JSON objects, so the text is parsed here and msgspec is handed the result."""
    image = fields.get("containerImage")
    if image is not None:
        if not isinstance(image, str):
            raise BadRequest("containerImage must be a string")
        if len(image) > MAX_IMAGE:
            raise BadRequest(f"containerImage is longer than {MAX_IMAGE} characters")
        try:
            fields["containerImage"] = parse_reference(image)
        except InvalidReference as exc:
            raise BadRequest(f"containerImage: {exc}") from None
        fields["sourceImage"] = image
    platform = fields.get("containerPlatform")
    if platform is not None:
        if not isinstance(platform, str):
            raise BadRequest("containerPlatform must be a string")
        try:
            fields["containerPlatform"] = parse_platform(platform)
        except InvalidPlatform as exc:
            raise BadRequest(f"containerPlatform: {exc}") from None


def _decode_custom(kind: type, value: Any) -> Any:
    """Decode the str types of the model; a ValueError's text is wave's wording, msgspec adds the path."""
    if kind in (Base64Text, Repository) and not isinstance(value, str):
        raise ValueError("must be a string")
    if kind is Base64Text:
        if len(value) > MAX_TEXT * 4 // 3 + 4:
            raise ValueError(f"is larger than the limit of {format_size(MAX_TEXT)} (before base64)")
        try:
            return Base64Text(base64.b64decode(value, validate=True).decode("utf-8"))
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 of UTF-8 text") from None
    if kind is Repository:
        if len(value) > MAX_REPOSITORY:
            raise ValueError(f"is longer than {MAX_REPOSITORY} characters")
        try:
            parse_repository(value)
        except InvalidReference as exc:
            raise ValueError(f": {exc}") from None
        return Repository(value)
    raise NotImplementedError(kind)


# --- msgspec's errors in wave's words ----------------------------------------------------------------

_ERROR_RE = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_PATH_PART_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING_RE = re.compile(r"Object missing required field `([^`]+)`")
_TOO_LONG_RE = re.compile(r"Expected `(str|array)` of length <= (\d+)")
_LIBRARY_WORDING = ("Expected ", "Invalid enum value", "Object missing required field", "Object contains unknown")


def _worded(error: str) -> str:
    """``Expected `str`, got `int` - at `$.containerConfig.env[0]``` -> ``containerConfig.env must be a list of
    strings``: the path as the client wrote it, then what the field must be."""
    match = _ERROR_RE.fullmatch(error)
    assert match is not None
    message, path = match["message"], match["path"] or ""
    if not path and message.startswith("Expected `object`"):
        return "the request body must be a JSON object"
    missing = _MISSING_RE.match(message)
    if missing:
        path = f"{path}.{missing[1]}"
    parts = [(name, index) for name, index in _PATH_PART_RE.findall(path)]
    declared, description = _declared(parts)
    if parts and parts[-1][1] and _is_str_list(_declared(parts[:-1])[0]):  # an item of a list of strings
        parts, declared, description = parts[:-1], _declared(parts[:-1])[0], None
        message = "Expected `array`"
    where = "".join(f".{name}" if name else f"[{index}]" for name, index in parts).lstrip(".")
    if not message.startswith(_LIBRARY_WORDING):  # a decode hook's words, already wave's
        return f"{where}{message}" if message.startswith(":") else f"{where} {message}"
    if missing:
        return f"{where} {description or 'is required'}"
    too_long = _TOO_LONG_RE.match(message)
    if too_long:
        unit = "characters" if too_long[1] == "str" else "items"
        what = "is longer than" if too_long[1] == "str" else "has more than"
        return f"{where} {what} {too_long[2]} {unit}"
    return f"{where} {description or _must_be(declared)}"


def _declared(parts: list[tuple[str, str]]) -> tuple[Any, str | None]:
    """The declared type (unwrapped) at a JSON path of SubmitRequest, and its Meta description if any."""
    kind: Any = SubmitRequest
    description = None
    for name, _index in parts:
        if name:
            fields = msgspec.structs.fields(kind) if isinstance(kind, type) and issubclass(
                kind, msgspec.Struct) else ()
            field = next((f for f in fields if f.encode_name == name), None)
            if field is None:
                return None, None
            kind, description = _unwrapped(field.type)
        else:
            args = get_args(kind) if get_origin(kind) is tuple else ()
            kind, description = _unwrapped(args[0]) if args else (None, None)
    return kind, description


def _unwrapped(kind: Any) -> tuple[Any, str | None]:
    description = None
    while True:
        if get_origin(kind) is Annotated:
            meta = [m for m in kind.__metadata__ if isinstance(m, Meta)]
            description = description or next((m.description for m in meta if m.description), None)
            kind = get_args(kind)[0]
        elif get_origin(kind) in (Union, types.UnionType):
            others = [a for a in get_args(kind) if a is not type(None)]
            kind = others[0]
        else:
            return kind, description


def _is_str_list(kind: Any) -> bool:
    return get_origin(kind) is tuple and _unwrapped(get_args(kind)[0])[0] is str


def _must_be(kind: Any) -> str:
    if kind is bool:
        return "must be true or false"
    if kind is int:
        return "must be a number"
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return "must be a JSON object"
    if get_origin(kind) is tuple:
        return "must be a list of strings" if _is_str_list(kind) else "must be a list"
    if get_origin(kind) is Literal:
        return "must be one of " + ", ".join(str(a) for a in get_args(kind))
    return "must be a string"
