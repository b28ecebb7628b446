"""Inline (``data:``) layers: decode them and check they are what the request says they are."""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib

from wave.oci.models import Layer
from wave.units import format_size


class InvalidLayer(ValueError):
    """The layer's bytes do not match its declared digests or size; the message says which."""


class TooLarge(InvalidLayer):
    """The layer inflates past the uncompressed budget it was given (a gzip bomb, or simply too much)."""


def inline_bytes(location: str) -> bytes:
    """The gzip bytes of a ``data:`` location (``data:[<mediatype>][;base64],<data>`` or ``data:<base64>``)."""
    payload = location[len("data:"):]
    if "," in payload:
        payload = payload.split(",", 1)[1]
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidLayer("layer location data: is not valid base64") from None


def tar_digest_of(gzip_bytes: bytes, max_size: int = 1 << 30) -> str:
    """sha256 of the uncompressed tar, inflated in bounded steps so a bomb cannot fill memory.

    Every gzip member counts (as Go and containerd read them); a truncated stream, trailing junk or more than
    ``max_size`` uncompressed bytes is refused.
    """
    return tar_digest_and_size(gzip_bytes, max_size)[0]


def tar_digest_and_size(gzip_bytes: bytes, max_size: int = 1 << 30) -> tuple[str, int]:
    """The tar's digest and uncompressed size; inflation stops (TooLarge) as soon as ``max_size`` is passed,
    so the work is bounded by the budget, not by what the bomb would inflate to."""
    digest = hashlib.sha256()
    total = 0
    pending = memoryview(gzip_bytes)
    if not pending:
        raise InvalidLayer("layer data is empty")
    while pending:
        if bytes(pending[:2]) != b"\x1f\x8b":
            raise InvalidLayer("layer data is not gzip" + (": junk after the gzip stream" if total else ""))
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = bytes(pending)
        try:
            chunk = inflater.decompress(data, _step(total, max_size))
            while True:
                total += len(chunk)
                if total > max_size:
                    raise TooLarge(f"uncompressed layer is larger than the limit of {format_size(max_size)}")
                digest.update(chunk)
                if inflater.eof or not inflater.unconsumed_tail:
                    break
                chunk = inflater.decompress(inflater.unconsumed_tail, _step(total, max_size))
        except zlib.error:
            raise InvalidLayer("layer data is not gzip") from None
        if not inflater.eof:
            raise InvalidLayer("layer data is not gzip: the gzip stream is truncated")
        pending = memoryview(inflater.unused_data)
    return "sha256:" + digest.hexdigest(), total


def _step(total: int, max_size: int) -> int:
    """Bytes to inflate next: 1 MiB at a time, and never more than one byte past the limit."""
    return max(1, min(1 << 20, max_size - total + 1))


def verify_inline_layer(layer: Layer, max_size: int, max_uncompressed: int | None = None) -> bytes:
    """Decode a data: layer and check gzipSize, gzipDigest and tarDigest; returns the gzip bytes.

    CPU-bound for large layers: callers on an event loop run it in a thread."""
    return verify_inline_layer_sized(layer, max_size, max_uncompressed)[0]


def verify_inline_layer_sized(layer: Layer, max_size: int, max_uncompressed: int | None = None) -> tuple[bytes, int]:
    """As verify_inline_layer, and the uncompressed size (what a request's budget is charged)."""
    max_uncompressed = max_uncompressed if max_uncompressed is not None else max(max_size * 16, 64 << 20)
    too_large = f"inline layer is larger than the limit of {format_size(max_size)} (WAVE_MAX_INLINE_LAYER_SIZE)"
    if len(layer.location) > max_size * 4 // 3 + 64:
        raise InvalidLayer(too_large)
    data = inline_bytes(layer.location)
    if len(data) > max_size:
        raise InvalidLayer(too_large)
    if len(data) != layer.gzip_size:
        raise InvalidLayer(f"gzipSize is {layer.gzip_size} but the layer data has {len(data)} bytes")
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != layer.gzip_digest:
        raise InvalidLayer(f"gzipDigest is {layer.gzip_digest} but the layer data hashes to {actual}")
    tar, size = tar_digest_and_size(data, max_uncompressed)
    if tar != layer.tar_digest:
        raise InvalidLayer(f"tarDigest is {layer.tar_digest} but the uncompressed layer hashes to {tar}")
    return data, size
