"""Digests and the one JSON serialiser whose output is hashed."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_ANY_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    """A well-formed content digest (``algo:encoded``); sha256 and sha512 need lowercase hex of their length."""
    if not _ANY_DIGEST_RE.fullmatch(value):
        return False
    algorithm, encoded = value.split(":", 1)
    length = _HEX_LENGTHS.get(algorithm)
    return length is None or (len(encoded) == length and all(c in "0123456789abcdef" for c in encoded))


def is_sha256_digest(value: str) -> bool:
    return bool(DIGEST_RE.fullmatch(value))


def dump_json(document: Any) -> bytes:
    """Serialise a document wave creates. Digests are computed over exactly these bytes, once."""
    return orjson.dumps(document)
