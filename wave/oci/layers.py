"""Inline (``data:``) layers: decode them and check they are what the request says they are."""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib

from wave.oci.models import Layer


class InvalidLayer(ValueError):
    """The layer's bytes do not match its declared digests or size; the message says which."""


def inline_bytes(location: str) -> bytes:
    """The gzip bytes of a ``data:`` location (``data:[<mediatype>][;base64],<data>`` or ``data:<base64>``)."""
    payload = location[len("data:"):]
    if "," in payload:
        payload = payload.split(",", 1)[1]
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidLayer("layer location data: is not valid base64") from None


def tar_digest_of(gzip_bytes: bytes) -> str:
    """sha256 of the uncompressed tar, streamed through zlib so a bomb cannot fill memory."""
    digest = hashlib.sha256()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for start in range(0, len(gzip_bytes), 1 << 16):
            chunk = inflater.decompress(gzip_bytes[start:start + (1 << 16)])
            digest.update(chunk)
            while inflater.unconsumed_tail:
                digest.update(inflater.decompress(inflater.unconsumed_tail, 1 << 20))
        digest.update(inflater.flush())
    except zlib.error:
        raise InvalidLayer("layer data is not gzip") from None
    return "sha256:" + digest.hexdigest()


def verify_inline_layer(layer: Layer, max_size: int) -> bytes:
    """Decode a data: layer and check gzipSize, gzipDigest and tarDigest; returns the gzip bytes."""
    if len(layer.location) > max_size * 4 // 3 + 64:
        raise InvalidLayer(f"inline layer is larger than the limit of {max_size} bytes")
    data = inline_bytes(layer.location)
    if len(data) > max_size:
        raise InvalidLayer(f"inline layer is larger than the limit of {max_size} bytes")
    if len(data) != layer.gzip_size:
        raise InvalidLayer(f"gzipSize is {layer.gzip_size} but the layer data has {len(data)} bytes")
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != layer.gzip_digest:
        raise InvalidLayer(f"gzipDigest is {layer.gzip_digest} but the layer data hashes to {actual}")
    tar = tar_digest_of(data)
    if tar != layer.tar_digest:
        raise InvalidLayer(f"tarDigest is {layer.tar_digest} but the uncompressed layer hashes to {tar}")
    return data
