"""Freeze: bake a request's ``containerConfig`` into a real image instead of augmenting it on every pull.

Layers become files of the build context (inline ``data:`` layers are decoded now; ``http(s)`` layers are
downloaded into the context when the build starts), so ``ADD`` unpacks them exactly as a registry client
would apply a layer; an ``ADD <url>`` would only copy the tarball into the image.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass

from wave.errors import BadRequest
from wave.oci.layers import InvalidLayer, inline_bytes
from wave.oci.models import ContainerConfig, Layer

# The request model (wave.model) has checked the config: env items are KEY=value with keys Dockerfile ENV
# takes as they are, and shell names only for format sif (Singularity's %environment is a shell script);
# layer digests are sha256 and locations data: or http(s).
LAYERS_DIR = "/opt/wave/layers"


@dataclass(frozen=True)
class LayerDownload:
    """An http(s) layer fetched into ``context/<filename>`` before the builder runs."""

    url: str
    filename: str
    gzip_digest: str
    gzip_size: int


@dataclass(frozen=True)
class FrozenLayers:
    files: dict[str, bytes]  # inline layers, by context file name
    downloads: tuple[LayerDownload, ...]
    names: tuple[str, ...]  # every layer's context file name, in order


def layer_file_name(layer: Layer) -> str:
    return f"layer-{layer.gzip_digest.removeprefix('sha256:')}.tar.gz"


def _decode_inline(layer: Layer) -> bytes:
    try:
        blob = inline_bytes(layer.location)  # the one decoder of data: locations (pulls use it too)
    except InvalidLayer as exc:
        raise BadRequest(str(exc)) from None
    if "sha256:" + hashlib.sha256(blob).hexdigest() != layer.gzip_digest:
        raise BadRequest(f"inline layer does not match its gzipDigest {layer.gzip_digest}")
    return blob


def prepare_layers(config: ContainerConfig) -> FrozenLayers:
    files: dict[str, bytes] = {}
    downloads: list[LayerDownload] = []
    names: list[str] = []
    for layer in config.layers:
        name = layer_file_name(layer)
        names.append(name)
        if layer.is_inline:
            files[name] = _decode_inline(layer)
        else:
            downloads.append(LayerDownload(layer.location, name, layer.gzip_digest, layer.gzip_size))
    return FrozenLayers(files, tuple(downloads), tuple(names))


def _single_line(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise BadRequest(f"{what} cannot contain a line break: {value[:60]!r}")
    return value


def _env_pairs(config: ContainerConfig) -> list[tuple[str, str]]:
    pairs = []
    for item in config.env:
        key, _, value = item.partition("=")
        pairs.append((key, _single_line(value, "containerConfig.env")))
    return pairs


def _docker_quote(value: str) -> str:
    """A Dockerfile double-quoted word with the literal value (``$`` not expanded, like an image config)."""
    return '"' + re.sub(r'(["\\$])', r"\\\1", value) + '"'


def docker_config(config: ContainerConfig, layer_names: tuple[str, ...]) -> str:
    """Dockerfile instructions applying ``config`` to the image built so far."""
    lines = [f"ADD {name} /" for name in layer_names]
    if config.working_dir:
        lines.append(f"WORKDIR {_single_line(config.working_dir, 'containerConfig.workingDir')}")
    lines += [f"ENV {key}={_docker_quote(value)}" for key, value in _env_pairs(config)]
    if config.entrypoint is not None:
        lines.append(f"ENTRYPOINT {json.dumps(list(config.entrypoint))}")
    if config.cmd is not None:
        lines.append(f"CMD {json.dumps(list(config.cmd))}")
    return "".join(line + "\n" for line in lines)


def singularity_config(config: ContainerConfig, layer_names: tuple[str, ...]) -> str:
    """Singularity sections applying ``config``: layers unpacked in %post, env in %environment, and
    entrypoint/cmd/workingDir folded into %runscript (Singularity has no separate notions of them)."""
    out: list[str] = []
    if layer_names:
        out.append("%files")
        out += [f"    context/{name} {LAYERS_DIR}/{name}" for name in layer_names]
    post = [f"    tar -xzf {LAYERS_DIR}/{n} -C / && rm -f {LAYERS_DIR}/{n}" for n in layer_names]
    if config.working_dir:
        post.append(f"    mkdir -p {shlex.quote(_single_line(config.working_dir, 'containerConfig.workingDir'))}")
    if post:
        out += ["%post", *post]
    env = _env_pairs(config)
    if env:
        out += ["%environment", *(f"    export {key}={shlex.quote(value)}" for key, value in env)]
    if config.entrypoint is not None or config.cmd is not None or config.working_dir:
        out.append("%runscript")
        if config.working_dir:
            out.append(f"    cd {shlex.quote(config.working_dir)}")
        if config.cmd:
            out.append(f'    if [ "$#" -eq 0 ]; then set -- {shlex.join(config.cmd)}; fi')
        out.append(f'    exec {shlex.join(config.entrypoint or ())} "$@"'.replace("exec  ", "exec "))
    return "".join(line + "\n" for line in out)
