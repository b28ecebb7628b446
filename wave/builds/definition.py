"""Request → build definition: the build file, its context, and the image's identity.

Pure: no I/O, so every kind of request (Dockerfile, conda, spack, Singularity, freeze) is checked with golden
files. What the builder needs is all here; what the service needs to coalesce builds (container id, target
image) is derived from it.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wave.builds import conda, naming, spack
from wave.builds.freeze import LayerDownload, docker_config, prepare_layers, singularity_config
from wave.builds.render import render
from wave.errors import BadRequest
from wave.oci.reference import InvalidReference, parse_reference

if TYPE_CHECKING:
    from wave.config import Settings
    from wave.model import SubmitRequest

_SINGULARITY_HEADER = re.compile(r"^\s*bootstrap\s*:", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class BuildDefinition:
    kind: str  # "dockerfile" | "conda" | "spack" | "freeze"
    format: str  # "docker" | "sif"
    platform: str
    build_file: str  # the Dockerfile, or the Singularity definition for sif
    container_id: str
    repository: str
    cache_repository: str | None
    target_image: str  # what is pushed; oras://… for sif
    tools: str | None = None
    context: Mapping[str, bytes] = field(default_factory=dict)  # files of context/
    downloads: tuple[LayerDownload, ...] = ()

    @property
    def build_file_name(self) -> str:
        return "Singularityfile" if self.format == "sif" else "Dockerfile"

    @property
    def image_reference(self) -> str:
        """The target as a plain registry reference (no ``oras://``): what exists once the build pushed."""
        return naming.plain_reference(self.target_image)


@dataclass(frozen=True)
class _Recipe:
    kind: str
    build_file: str
    context: dict[str, bytes] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)
    conda_file: str | None = None
    spack_file: str | None = None
    downloads: tuple[LayerDownload, ...] = ()


def define_build(request: SubmitRequest, settings: Settings, owner: str | None = None) -> BuildDefinition:
    """The build a request asks for; BadRequest names what is wrong with it. The request is valid (the
    model checked it); what is checked here is what only a build definition can tell. ``owner`` makes the
    build one user's alone (their own credentials open its base images): another id, another target."""
    fmt = request.format
    platform = str(request.platform)
    recipe = _recipe(request, settings, fmt, platform)
    repository = naming.resolve_repository(request.build_repository, settings)
    cache = naming.resolve_cache_repository(request.cache_repository, settings)
    parts = {"containerFile": recipe.build_file, "condaFile": recipe.conda_file, "spackFile": recipe.spack_file,
             "platform": platform, "repository": repository, "format": fmt,
             "context": _context_digest(recipe.context, recipe.downloads)}
    if owner is not None:  # only then: the ids of everyone else's builds stay what they were
        parts["owner"] = owner
    cid = naming.container_id(**parts)
    tools = naming.tools_tag(recipe.tools)
    return BuildDefinition(
        kind=recipe.kind,
        format=fmt,
        platform=platform,
        build_file=recipe.build_file,
        container_id=cid,
        repository=repository,
        cache_repository=cache,
        target_image=naming.target_image(repository, cid, tools, fmt),
        tools=tools,
        context=recipe.context,
        downloads=recipe.downloads,
    )


def _context_digest(files: Mapping[str, bytes], downloads: tuple[LayerDownload, ...]) -> str | None:
    if not files and not downloads:
        return None
    items = sorted([(name, hashlib.sha256(data).hexdigest()) for name, data in files.items()]
                   + [(d.filename, d.gzip_digest) for d in downloads])
    return hashlib.sha256(repr(items).encode()).hexdigest()


def _recipe(request: SubmitRequest, settings: Settings, fmt: str, platform: str) -> _Recipe:
    packages = request.packages
    if request.container_file:
        recipe = _container_file(request.container_file, fmt)
    elif request.conda_file or (packages and packages.type == "CONDA"):
        recipe = _conda(request, settings, fmt)
    elif request.spack_file or (packages and packages.type == "SPACK"):
        recipe = _spack(request, settings, fmt, platform)
    elif request.freeze and request.image_text:
        header = (f"BootStrap: docker\nFrom: {request.image_text}\n" if fmt == "sif"
                  else f"# wave generated container file\nFROM {request.image_text}\n")
        recipe = _Recipe("freeze", header)
    else:
        raise BadRequest("nothing to build: give containerFile, packages, condaFile or spackFile "
                         "(or containerImage with freeze)")
    if request.freeze and not request.container_config.is_empty:
        return _with_config(recipe, request, fmt)
    return recipe


def _with_config(recipe: _Recipe, request: SubmitRequest, fmt: str) -> _Recipe:
    layers = prepare_layers(request.container_config)
    render_config = singularity_config if fmt == "sif" else docker_config
    text = recipe.build_file if recipe.build_file.endswith("\n") else recipe.build_file + "\n"
    return _Recipe(
        kind=recipe.kind,
        build_file=text + render_config(request.container_config, layers.names),
        context={**recipe.context, **layers.files},
        tools=recipe.tools,
        conda_file=recipe.conda_file,
        spack_file=recipe.spack_file,
        downloads=layers.downloads,
    )


def _container_file(text: str, fmt: str) -> _Recipe:
    if fmt == "sif" and not _SINGULARITY_HEADER.search(text):
        raise BadRequest("format sif needs a Singularity definition file in containerFile "
                         "(starting with 'Bootstrap: docker'), not a Dockerfile")
    return _Recipe("dockerfile", text)


def _image(text: str, what: str) -> str:
    """An image named by a setting (the request's own images the model checked)."""
    try:
        parse_reference(text)
    except InvalidReference as exc:
        raise BadRequest(f"{what}: {exc}") from None
    return text


def _shell_words(packages: str | None) -> str:
    """Base packages as shell words: ``numpy>=1.2`` must not become a redirection."""
    return " ".join(shlex.quote(p) for p in (packages or "").split())


def _conda(request: SubmitRequest, settings: Settings, fmt: str) -> _Recipe:
    packages = request.packages
    if packages is not None:
        opts = packages.conda_opts
        image = opts.mamba_image or _image(settings.conda_image, "WAVE_CONDA_IMAGE")
        base = opts.base_packages if opts.base_packages is not None else settings.conda_base_packages
        commands = "\n".join(opts.commands)
        if packages.env_file:
            conda_file = conda.with_channels(packages.env_file, packages.channels)
            tools = conda.tool_names(conda_file)
        else:  # the model guarantees entries or an env file
            conda_file = conda.conda_yaml(packages.entries, packages.channels)
            tools = conda.entry_tools(packages.entries)
    else:
        assert request.conda_file is not None
        conda_file = request.conda_file if request.conda_file.endswith("\n") else request.conda_file + "\n"
        image, base, commands = settings.conda_image, settings.conda_base_packages, ""
        tools = conda.tool_names(conda_file)
    words = _shell_words(base)
    if fmt == "sif":
        step = f"    micromamba install -y -n base {words}" if words else ""
        build_file = render("conda.def", mamba_image=image, base_packages_step=step, commands=commands)
    else:
        step = f"    && micromamba install -y -n base {words} \\" if words else ""
        build_file = render("conda.Dockerfile", mamba_image=image, base_packages_step=step, commands=commands)
    return _Recipe("conda", build_file, {"conda.yml": conda_file.encode()}, tools, conda_file=conda_file)


def _spack(request: SubmitRequest, settings: Settings, fmt: str, platform: str) -> _Recipe:
    packages = request.packages
    if packages is not None:
        opts = packages.spack_opts
        base, commands = opts.base_packages, "\n".join(opts.commands)
        if packages.env_file:
            spack_file = packages.env_file if packages.env_file.endswith("\n") else packages.env_file + "\n"
        else:  # the model guarantees entries or an env file
            spack_file = spack.spack_yaml(packages.entries)
        tools = spack.tool_names(spack_file)
    else:
        assert request.spack_file is not None
        spack_file = request.spack_file if request.spack_file.endswith("\n") else request.spack_file + "\n"
        base, commands = None, ""
        tools = spack.tool_names(spack_file)
    words = _shell_words(base)
    values = {
        "builder_image": _image(settings.spack_builder_image, "WAVE_SPACK_BUILDER_IMAGE"),
        "runner_image": _image(settings.spack_runner_image, "WAVE_SPACK_RUNNER_IMAGE"),
        "spack_arch": spack.spack_arch(platform),
        "commands": commands,
    }
    if fmt == "sif":
        step = f"    spack -e . add {words}" if words else ""
        build_file = render("spack.def", base_packages_step=step, **values)
    else:
        step = f"    && spack -e . add {words} \\" if words else ""
        build_file = render("spack.Dockerfile", base_packages_step=step, **values)
    return _Recipe("spack", build_file, {"spack.yaml": spack_file.encode()}, tools, spack_file=spack_file)
