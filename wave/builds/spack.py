"""Spack environments: the ``spack.yaml`` a build installs, and the tool names its tag shows."""

from __future__ import annotations

import re
from typing import Any

import yaml

_SPEC_NAME = re.compile(r"^([A-Za-z0-9_.-]+)(?:@([A-Za-z0-9_.:-]+))?")
SPACK_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


def spack_yaml(entries: tuple[str, ...]) -> str:
    document = {"spack": {"specs": list(entries), "concretizer": {"unify": True}}}
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False, allow_unicode=True)


def spack_arch(platform: str) -> str:
    """Spack's generic target for a platform (``linux/arm64`` → ``aarch64``)."""
    arch = platform.split("/")[1] if "/" in platform else platform
    return SPACK_ARCH.get(arch, arch)


def tool_names(spack_file: str) -> list[str]:
    """``<package>[-<version>]`` per spec of ``spack.specs``."""
    names: list[str] = []
    for spec in _specs(spack_file):
        match = _SPEC_NAME.match(spec.strip())
        if not match:
            continue
        tool = f"{match[1]}-{match[2]}" if match[2] else match[1]
        if tool not in names:
            names.append(tool)
    return names


def _specs(spack_file: str) -> list[str]:
    """``spack.specs`` as text; none when the file is not YAML or not shaped so (reading it only names the
    tools in a tag: the builder reports what is wrong with a bad file)."""
    try:
        document: Any = yaml.safe_load(spack_file)
    except yaml.YAMLError:
        return []
    spack = document.get("spack") if isinstance(document, dict) else None
    specs = spack.get("specs") if isinstance(spack, dict) else None
    return [s for s in specs if isinstance(s, str)] if isinstance(specs, list) else []
