"""What a request asks wave to put into an image.

These are msgspec Structs so the request model (:mod:`wave.model`) decodes a body's ``containerConfig``
straight into them: the camelCase names and the ``Annotated`` constraints below are the contract's, and apply
when JSON is decoded. Built in code (tests, the token store) they take values as given: checking is the
decoder's job, once, where the request arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

MAX_LIST = 1000  # items of a string list (env, cmd, entrypoint, …)
MAX_LAYERS = 127  # with the image's own layers this stays under what registries and runtimes accept
MAX_TEXT_FIELD = 4096

SHA256 = Annotated[str, Meta(pattern=r"^sha256:[a-f0-9]{64}\Z",
                             description="must be a sha256 digest (sha256:<64 hex>)")]
StrList = Annotated[tuple[str, ...], Meta(max_length=MAX_LIST)]


class Layer(msgspec.Struct, frozen=True, rename="camel"):
    """A layer to append: ``location`` is an http(s) URL or ``data:`` + base64 of the gzip bytes."""

    location: Annotated[str, Meta(pattern=r"^(data:|https?://)",
                                  description="must be an http(s) URL or data: with base64 content")]
    gzip_digest: SHA256
    gzip_size: Annotated[int, Meta(gt=0, le=(1 << 63) - 1, description="must be a positive number of bytes")]
    tar_digest: SHA256

    @property
    def is_inline(self) -> bool:
        return self.location.startswith("data:")


class ContainerConfig(msgspec.Struct, frozen=True, rename="camel"):
    entrypoint: StrList | None = None
    cmd: StrList | None = None
    env: StrList = ()
    working_dir: Annotated[str, Meta(max_length=MAX_TEXT_FIELD)] | None = None
    layers: Annotated[tuple[Layer, ...], Meta(max_length=MAX_LAYERS)] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.entrypoint is not None or self.cmd is not None or self.env or self.working_dir
                    or self.layers)


def uses_fusion(config: ContainerConfig, fusion_hosts: Iterable[str]) -> bool:
    """Whether a request injects Fusion: one of its layers comes from a Fusion host (usage metrics count it)."""
    hosts = set(fusion_hosts)
    return any(urlsplit(layer.location).hostname in hosts for layer in config.layers if not layer.is_inline)
