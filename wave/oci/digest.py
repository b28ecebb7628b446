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


class DigestMismatch(ValueError):
    """Bytes that were to be the blob a digest names hash to something else."""

    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(f"expected {expected}, got {actual} over {size} bytes")
        self.expected = expected
        self.actual = actual
        self.size = size


class DigestVerifier:
    """Hashes a blob incrementally as its bytes pass, to check at the end that they are what ``expected`` names.

    Why: a proxy sends upstream's bytes under the digest the client asked for; without this a corrupt or lying
    upstream would be passed on as if it were the blob. Feed every byte once, in order (:meth:`update`), then
    call :meth:`verify` before the last bytes leave. An algorithm wave cannot compute (anything but sha256 and
    sha512) is not verifiable: :attr:`checks` is False and :meth:`verify` passes.
    """

    __slots__ = ("_hash", "expected", "size")

    def __init__(self, expected: str) -> None:
        self.expected = expected
        self.size = 0
        algorithm = expected.split(":", 1)[0]
        self._hash = hashlib.new(algorithm) if algorithm in _HEX_LENGTHS else None

    @property
    def checks(self) -> bool:
        return self._hash is not None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)

    @property
    def actual(self) -> str | None:
        """The digest of the bytes seen so far (None when the algorithm is not verifiable)."""
        return None if self._hash is None else f"{self._hash.name}:{self._hash.hexdigest()}"

    def verify(self) -> None:
        """Raise :class:`DigestMismatch` unless the bytes seen are the blob ``expected`` names."""
        actual = self.actual
        if actual is not None and actual != self.expected:
            raise DigestMismatch(self.expected, actual, self.size)


def dump_json(document: Any) -> bytes:
    """Serialise a document wave creates. Digests are computed over exactly these bytes, once."""
    return orjson.dumps(document)
