"""What a request asks wave to put into an image."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Layer:
    """A layer to append: ``location`` is an http(s) URL or ``data:`` + base64 of the gzip bytes."""

    location: str
    gzip_digest: str
    gzip_size: int
    tar_digest: str

    @property
    def is_inline(self) -> bool:
        return self.location.startswith("data:")


@dataclass(frozen=True)
class ContainerConfig:
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str | None = None
    layers: tuple[Layer, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.entrypoint is not None or self.cmd is not None or self.env or self.working_dir
                    or self.layers)


def uses_fusion(config: ContainerConfig, fusion_hosts: Iterable[str]) -> bool:
    """Whether a request injects Fusion: one of its layers comes from a Fusion host (usage metrics count it)."""
    hosts = set(fusion_hosts)
    return any(urlsplit(layer.location).hostname in hosts for layer in config.layers if not layer.is_inline)
