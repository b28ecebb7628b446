"""Spack environments: the ``spack.yaml`` a build installs, and the tool names its tag shows."""

from __future__ import annotations

import re

import wave.builds.yamlish as yamlish

_SPEC_NAME = re.compile(r"^([A-Za-z0-9_.-]+)(?:@([A-Za-z0-9_.:-]+))?")
SPACK_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


def spack_yaml(entries: tuple[str, ...]) -> str:
    specs = "".join(f"  - {yamlish.scalar(e)}\n" for e in entries)
    return f"spack:\n  specs:\n{specs}  concretizer:\n    unify: true\n"


def spack_arch(platform: str) -> str:
    """Spack's generic target for a platform (``linux/arm64`` → ``aarch64``)."""
    arch = platform.split("/")[1] if "/" in platform else platform
    return SPACK_ARCH.get(arch, arch)


def tool_names(spack_file: str) -> list[str]:
    """``<package>[-<version>]`` per spec of ``spack.specs``."""
    names: list[str] = []
    for spec in yamlish.list_under(spack_file, ("spack", "specs")):
        match = _SPEC_NAME.match(spec.strip())
        if not match:
            continue
        tool = f"{match[1]}-{match[2]}" if match[2] else match[1]
        if tool not in names:
            names.append(tool)
    return names
