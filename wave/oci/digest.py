"""Digests and the one JSON serialiser whose output is hashed."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    """A well-formed content digest of any algorithm (``algo:hex``)."""
    return bool(_ANY_DIGEST_RE.match(value))


def is_sha256_digest(value: str) -> bool:
    return bool(DIGEST_RE.match(value))


def dump_json(document: Any) -> bytes:
    """Serialise a document wave creates. Digests are computed over exactly these bytes, once."""
    return orjson.dumps(document)
