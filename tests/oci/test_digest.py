"""Digests and the serialiser whose output is hashed (wave.oci.digest)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from wave.oci.digest import (
    DigestMismatch,
    DigestVerifier,
    dump_json,
    is_digest,
    is_sha256_digest,
    sha256_digest,
)

DATA = Path(__file__).parent / "data"
HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of b""


def test_sha256_digest_of_empty_bytes_is_the_well_known_value():
    assert sha256_digest(b"") == f"sha256:{HEX}"


def test_sha256_digest_matches_hashlib():
    data = b'{"schemaVersion":2}'
    assert sha256_digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_sha256_digest_of_real_manifest_is_the_digest_the_registry_served():
    data = (DATA / "busybox-latest.docker-manifest.json").read_bytes()
    assert sha256_digest(data) == "sha256:f54ec7892acabf4be6b508bf3585d840fc1fe6efc4de29130e44385f7df673a6"


@pytest.mark.parametrize("value", [f"sha256:{HEX}", "sha512:" + "0" * 128, "multihash+base58:QmRZxt2b1FVZPNqd8hs",
                                   "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"])
def test_is_digest_accepts_the_oci_digest_grammar(value):
    assert is_digest(value)


@pytest.mark.parametrize("value", ["", "sha256", "sha256:", f"SHA256:{HEX}", f":{HEX}", f"sha256:{HEX}!",
                                   f"sha256 :{HEX}", "latest"])
def test_is_digest_rejects_what_is_not_a_digest(value):
    assert not is_digest(value)


def test_is_sha256_digest_wants_64_lowercase_hex():
    assert is_sha256_digest(f"sha256:{HEX}")
    assert not is_sha256_digest(f"sha256:{HEX.upper()}")
    assert not is_sha256_digest(f"sha256:{HEX[:-1]}")
    assert not is_sha256_digest(f"sha256:{HEX}0")
    assert not is_sha256_digest(f"sha512:{HEX}")


@pytest.mark.parametrize("check", [is_sha256_digest, is_digest])
def test_digest_with_trailing_newline_is_rejected(check):
    assert not check(f"sha256:{HEX}\n")


def test_dump_json_is_compact_and_keeps_key_order():
    document = {"schemaVersion": 2, "mediaType": "x", "config": {"size": 1, "digest": "d"}}
    assert dump_json(document) == b'{"schemaVersion":2,"mediaType":"x","config":{"size":1,"digest":"d"}}'


def test_dump_json_writes_non_ascii_as_utf8():
    assert dump_json({"created_by": "é"}) == '{"created_by":"é"}'.encode()


def test_dump_json_is_deterministic_and_round_trips():
    document = {"b": [1, 2, {"z": None}], "a": "x"}
    assert dump_json(document) == dump_json(orjson.loads(dump_json(document)))


def test_verifier_hashes_pieces_in_order_and_passes_the_whole():
    data = b"0123456789" * 1000
    verifier = DigestVerifier(sha256_digest(data))
    for start in range(0, len(data), 777):
        verifier.update(memoryview(data)[start:start + 777])
    verifier.verify()
    assert verifier.checks and verifier.size == len(data) and verifier.actual == sha256_digest(data)


def test_verifier_refuses_other_bytes_and_says_what_they_hash_to():
    verifier = DigestVerifier(sha256_digest(b"the blob"))
    verifier.update(b"not the blob")
    with pytest.raises(DigestMismatch) as caught:
        verifier.verify()
    assert caught.value.actual == sha256_digest(b"not the blob") and caught.value.size == len(b"not the blob")


def test_verifier_checks_sha512_too():
    good = DigestVerifier("sha512:" + hashlib.sha512(b"x").hexdigest())
    good.update(b"x")
    good.verify()
    bad = DigestVerifier("sha512:" + hashlib.sha512(b"x").hexdigest())
    bad.update(b"y")
    with pytest.raises(DigestMismatch):
        bad.verify()


def test_verifier_cannot_check_an_algorithm_it_does_not_know():
    verifier = DigestVerifier("blake3:" + "0" * 64)
    verifier.update(b"anything")
    verifier.verify()  # nothing to compare with: passes, and says so
    assert not verifier.checks and verifier.actual is None and verifier.size == 8
