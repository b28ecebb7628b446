"""Platforms (``os/arch[/variant]``) and picking one out of an index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}
_KNOWN_ARCHES = {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64"}


class InvalidPlatform(ValueError):
    pass


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, descriptor_platform: Mapping[str, Any] | None) -> bool:
        """True when an index entry's platform is this one, with the usual aliases (arm64 ≡ arm64/v8)."""
        if not descriptor_platform:
            return False
        other = platform_of(descriptor_platform)
        if (other.os, other.architecture) != (self.os, self.architecture):
            return False
        return _variant(self) == _variant(other) or self.variant is None


def _variant(p: Platform) -> str | None:
    if p.architecture == "arm64" and p.variant in (None, "", "v8"):
        return "v8"
    return p.variant or None


def platform_of(descriptor_platform: Mapping[str, Any]) -> Platform:
    arch = str(descriptor_platform.get("architecture", ""))
    return Platform(
        str(descriptor_platform.get("os", "")),
        _ARCH_ALIASES.get(arch, arch),
        descriptor_platform.get("variant") or None,
    )


DEFAULT_PLATFORM = Platform("linux", "amd64")


def parse_platform(text: str | None) -> Platform:
    """``linux/amd64``, ``amd64``, ``x86_64``, ``linux/arm64/v8``, ``aarch64`` …; empty means linux/amd64."""
    if not text:
        return DEFAULT_PLATFORM
    parts = str(text).strip().lower().split("/")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidPlatform(f"invalid platform {text!r} (expected os/arch[/variant], e.g. linux/amd64)")
    os_, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    if arch not in _KNOWN_ARCHES:
        raise InvalidPlatform(f"unknown architecture {parts[1]!r} in platform {text!r}")
    variant = parts[2] if len(parts) == 3 else None
    if arch == "arm64" and variant == "v8":
        variant = None
    return Platform(os_, arch, variant)
