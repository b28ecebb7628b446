"""Image references (``[registry/]repository[:tag][@digest]``) with Docker Hub's conventions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from wave.oci.digest import is_digest

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST_RE = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")


ReferenceKind = Literal["digest", "tag", "bad-digest", "neither"]


def reference_kind(reference: str) -> ReferenceKind:
    """What a ``/manifests/<reference>`` or ``/blobs/<digest>`` path segment is.

    A well-formed digest or a tag; ``bad-digest`` for a digest whose algorithm or encoding is malformed (it has
    the ``algorithm:encoded`` shape, which no tag has: a tag never holds a colon); ``neither`` for anything else,
    which names nothing a registry could hold, so a lookup answers "unknown" (404), as distribution does."""
    if is_digest(reference):
        return "digest"
    if TAG_RE.fullmatch(reference):
        return "tag"
    return "bad-digest" if ":" in reference else "neither"


class InvalidReference(ValueError):
    """The text is not an image reference; the message says which part is wrong."""


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def endpoint(self) -> str:
        """The host wave talks to: Docker Hub's API lives on another host than its name."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    def with_reference(self, reference: str) -> ImageRef:
        if is_digest(reference):
            return ImageRef(self.registry, self.repository, None, reference)
        return ImageRef(self.registry, self.repository, reference, None)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_reference(text: str) -> ImageRef:
    """Parse a reference; one-part Docker Hub names get ``library/`` and a missing tag means ``latest``."""
    if not isinstance(text, str) or not text or text != text.strip() or len(text) > 512:
        raise InvalidReference(f"invalid image reference {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not is_digest(digest):
            raise InvalidReference(f"invalid digest {digest!r} in image reference {text!r}")
    registry = DOCKER_HUB
    first, slash, remainder = rest.partition("/")
    if slash and _looks_like_host(first):
        if not _HOST_RE.fullmatch(first):
            raise InvalidReference(f"invalid registry host {first!r} in image reference {text!r}")
        registry, rest = first.lower(), remainder
        if registry in {"index.docker.io", DOCKER_HUB_ENDPOINT}:
            registry = DOCKER_HUB
    tag = None
    name, colon, maybe_tag = rest.rpartition(":")
    if colon and "/" not in maybe_tag:
        rest, tag = name, maybe_tag
        if not TAG_RE.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r} in image reference {text!r}")
    if not REPOSITORY_RE.fullmatch(rest):
        raise InvalidReference(
            f"invalid repository name {rest!r} in image reference {text!r} (lowercase letters, digits, "
            "and . _ - separators)"
        )
    if registry == DOCKER_HUB and "/" not in rest:
        rest = f"library/{rest}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, rest, tag, digest)


def parse_repository(text: str) -> ImageRef:
    """A repository without tag or digest (``buildRepository``, ``cacheRepository``)."""
    ref = parse_reference(text)
    if ref.digest or (":" in text.rsplit("/", 1)[-1]):
        raise InvalidReference(f"a repository takes no tag or digest: {text!r}")
    return ImageRef(ref.registry, ref.repository)
