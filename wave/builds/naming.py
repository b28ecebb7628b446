"""Build identity: what a build is called and where its image goes.

The same inputs must always give the same target image, so a thousand identical requests find one image (or
one build in progress) instead of starting a thousand builds. The id is a content hash of everything that
determines the image; the tag carries the tool names in front of it so people can read what is inside.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

from wave.errors import BadRequest
from wave.oci.reference import InvalidReference, parse_repository

if TYPE_CHECKING:
    from wave.config import Settings

ID_LENGTH = 16  # hex chars of the content hash, as the reference service uses
MAX_TOOLS_LENGTH = 80  # tag = <tools>--<id> stays well under the 128-char tag limit
_NOT_TAG_CHAR = re.compile(r"[^a-zA-Z0-9_.-]")
_EDGE = re.compile(r"^[^a-zA-Z0-9]+|[^a-zA-Z0-9]+$")


def container_id(**parts: str | None) -> str:
    """First 16 hex chars of the sha256 of the canonical JSON of ``parts`` (None parts included, so adding
    a field never collides with an older id that lacked it)."""
    canonical = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:ID_LENGTH]


def tools_tag(names: Iterable[str]) -> str | None:
    """Tool names joined by ``_`` as a valid tag prefix: invalid characters dropped, cut at a whole name when
    longer than MAX_TOOLS_LENGTH (else hard-cut), no separator at either end; None when nothing is left."""
    parts = [p for p in (_NOT_TAG_CHAR.sub("", name) for name in names) if p]
    text = ""
    for part in parts:
        candidate = f"{text}_{part}" if text else part
        if len(candidate) > MAX_TOOLS_LENGTH:
            text = text or candidate[:MAX_TOOLS_LENGTH]
            break
        text = candidate
    text = _EDGE.sub("", text)
    return text or None


def target_image(repository: str, cid: str, tools: str | None, format: str) -> str:
    """``<repo>:<tools>--<id>`` or ``<repo>:<id>``; Singularity images are ORAS artifacts: ``oras://…``."""
    tag = f"{tools}--{cid}" if tools else cid
    image = f"{repository}:{tag}"
    return f"oras://{image}" if format == "sif" else image


def build_id(cid: str, count: int) -> str:
    return f"{cid}_{count}"


def plain_reference(target: str) -> str:
    """The registry reference of a target (without ``oras://``): what exists upstream once built."""
    return target.removeprefix("oras://")


def resolve_repository(requested: str | None, settings: Settings) -> str:
    """The request's buildRepository, else WAVE_BUILD_REPO; validated so a bad name fails at submit time,
    not minutes later in the builder."""
    if requested:
        return _valid_repository(requested, "buildRepository")
    if settings.build_repo:
        return _valid_repository(settings.build_repo, "WAVE_BUILD_REPO")
    raise BadRequest("no build repository: set WAVE_BUILD_REPO or buildRepository")


def resolve_cache_repository(requested: str | None, settings: Settings) -> str | None:
    if requested:
        return _valid_repository(requested, "cacheRepository")
    return _valid_repository(settings.cache_repo, "WAVE_CACHE_REPO") if settings.cache_repo else None


def _valid_repository(text: str, what: str) -> str:
    text = text.strip().rstrip("/")
    try:
        parse_repository(text)
    except InvalidReference as exc:
        raise BadRequest(f"invalid {what} {text!r}: {exc}") from None
    return text
