"""Inline ``data:`` layers: decoding and checking them against the request (wave.oci.layers)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import random
import tarfile
import tracemalloc

import pytest

from wave.oci.layers import InvalidLayer, inline_bytes, tar_digest_of, verify_inline_layer
from wave.oci.models import Layer

LIMIT = 1 << 20


def sha256(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(content), 0
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


TAR = tar_of({"opt/wave/hello.sh": b"#!/bin/sh\necho hello from an injected layer\n"})
GZIP = gzip.compress(TAR, mtime=0)


def layer(gzip_bytes: bytes = GZIP, tar: bytes = TAR, prefix: str = "data:", **overrides: object) -> Layer:
    """A layer as a client declares it: data: location and the digests/size of what it encoded."""
    fields = {"location": prefix + base64.b64encode(gzip_bytes).decode(), "gzip_digest": sha256(gzip_bytes),
              "gzip_size": len(gzip_bytes), "tar_digest": sha256(tar)}
    fields.update(overrides)
    return Layer(**fields)  # type: ignore[arg-type]


# --- decoding ----------------------------------------------------------------------------------------


def test_plain_data_prefix_decodes_to_the_gzip_bytes():
    assert inline_bytes("data:" + base64.b64encode(GZIP).decode()) == GZIP


@pytest.mark.parametrize("prefix", ["data:application/gzip;base64,", "data:;base64,",
                                    "data:application/vnd.oci.image.layer.v1.tar+gzip;base64,"])
def test_data_url_with_media_type_decodes_to_the_gzip_bytes(prefix):
    assert inline_bytes(prefix + base64.b64encode(GZIP).decode()) == GZIP


@pytest.mark.parametrize("payload", ["not base64!", "QUJD\nREVG", "QUJ", "-_-_"])
def test_invalid_base64_is_reported(payload):
    with pytest.raises(InvalidLayer, match="not valid base64"):
        inline_bytes("data:" + payload)


def test_non_ascii_payload_is_reported_as_invalid_base64():
    with pytest.raises(InvalidLayer, match="not valid base64"):
        inline_bytes("data:ÄÖÜ=")


# --- verification ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["data:", "data:application/gzip;base64,"])
def test_matching_layer_is_accepted_and_its_gzip_bytes_returned(prefix):
    assert verify_inline_layer(layer(prefix=prefix), LIMIT) == GZIP


def test_wrong_gzip_size_names_gzip_size():
    with pytest.raises(InvalidLayer, match=rf"gzipSize is {len(GZIP) + 1} but the layer data has {len(GZIP)} bytes"):
        verify_inline_layer(layer(gzip_size=len(GZIP) + 1), LIMIT)


def test_wrong_gzip_digest_names_gzip_digest_and_the_actual_digest():
    wrong = "sha256:" + "0" * 64
    with pytest.raises(InvalidLayer, match="gzipDigest") as caught:
        verify_inline_layer(layer(gzip_digest=wrong), LIMIT)
    assert wrong in str(caught.value)
    assert sha256(GZIP) in str(caught.value)


def test_tar_digest_of_the_gzip_instead_of_the_tar_names_tar_digest():
    with pytest.raises(InvalidLayer, match="tarDigest") as caught:
        verify_inline_layer(layer(tar_digest=sha256(GZIP)), LIMIT)
    assert sha256(TAR) in str(caught.value)


def test_data_that_is_not_gzip_is_reported():
    raw = TAR  # an uncompressed tar sent where gzip was expected
    with pytest.raises(InvalidLayer, match="not gzip"):
        verify_inline_layer(layer(gzip_bytes=raw, tar=raw), LIMIT)


def test_layer_exactly_at_the_size_cap_is_accepted():
    assert verify_inline_layer(layer(), len(GZIP)) == GZIP


def test_layer_over_the_size_cap_is_refused_naming_the_limit():
    with pytest.raises(InvalidLayer, match=rf"larger than the limit of {len(GZIP) - 1} bytes"):
        verify_inline_layer(layer(), len(GZIP) - 1)


def test_huge_location_is_refused_before_decoding():
    huge = Layer("data:" + "A" * (4 * LIMIT), sha256(b""), 1, sha256(b""))
    with pytest.raises(InvalidLayer, match="larger than the limit of 1 MiB \\(WAVE_MAX_INLINE_LAYER_SIZE\\)"):
        verify_inline_layer(huge, LIMIT)


def test_size_is_checked_before_digests():
    with pytest.raises(InvalidLayer, match="gzipSize"):
        verify_inline_layer(layer(gzip_size=1, gzip_digest="sha256:" + "0" * 64), LIMIT)


# --- tar digests -------------------------------------------------------------------------------------


def test_tar_digest_is_the_sha256_of_the_uncompressed_bytes():
    assert tar_digest_of(GZIP) == sha256(TAR)


def test_tar_digest_of_a_layer_larger_than_one_read_chunk():
    big_tar = tar_of({"noise": random.Random(7).randbytes(300_000), "zeros": bytes(1 << 20)})
    big_gzip = gzip.compress(big_tar, mtime=0)
    assert len(big_gzip) > 1 << 16
    assert tar_digest_of(big_gzip) == sha256(big_tar)


def test_multi_member_gzip_layer_is_accepted():
    members = gzip.compress(TAR[:512], mtime=0) + gzip.compress(TAR[512:], mtime=0)  # as bgzip/pigz -i write
    assert gzip.decompress(members) == TAR  # valid gzip per RFC 1952
    assert verify_inline_layer(layer(gzip_bytes=members), LIMIT) == members


def test_truncated_gzip_is_reported_as_not_gzip():
    truncated = GZIP[: len(GZIP) // 2]
    with pytest.raises(InvalidLayer, match="not gzip"):
        tar_digest_of(truncated)


def test_gzip_followed_by_junk_is_reported_as_not_gzip():
    with pytest.raises(InvalidLayer, match="not gzip"):
        tar_digest_of(GZIP + b"junk that no gzip reader accepts")


def test_decompression_bomb_is_hashed_in_bounded_memory():
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # ~64 KiB that inflates to 64 MiB
    tracemalloc.start()
    try:
        tar_digest_of(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
