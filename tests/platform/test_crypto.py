"""Wave's side of Platform's packet format against the fake's (independent) encryption, and the sealing."""

from __future__ import annotations

import base64
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.platform import encrypt_packet
from wave.platform import crypto
from wave.platform.client import normalize_endpoint


def test_a_packet_encrypted_with_the_pairing_public_key_decrypts() -> None:
    private, public = crypto.generate_key_pair()
    key = serialization.load_der_public_key(base64.b64decode(public))
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    payload = {"discriminator": "container-reg", "userName": "u", "password": "p\\w:d", "registry": "quay.io"}
    assert crypto.decrypt_packet(private, encrypt_packet(key, payload)) == payload


def test_a_packet_for_another_key_or_damaged_is_refused_without_detail() -> None:
    private, _ = crypto.generate_key_pair()
    _, other = crypto.generate_key_pair()
    key = serialization.load_der_public_key(base64.b64decode(other))
    assert isinstance(key, rsa.RSAPublicKey)
    packet = encrypt_packet(key, {"userName": "u", "password": "secret-value"})
    with pytest.raises(crypto.CryptoError) as caught:
        crypto.decrypt_packet(private, packet)
    assert "secret-value" not in str(caught.value)
    for bad in ("", "1\\P\\x", "2\\P\\AA==\\AA==", "1\\P\\!!\\AA=="):
        with pytest.raises(crypto.CryptoError):
            crypto.decrypt_packet(private, bad)


def test_sealed_values_open_only_with_their_key_and_context() -> None:
    key = crypto.derive_key("operator secret", "test")
    sealed = crypto.seal(key, b"token", "ctx")
    assert b"token" not in sealed.encode()
    assert crypto.unseal(key, sealed, "ctx") == b"token"
    with pytest.raises(crypto.CryptoError):
        crypto.unseal(key, sealed, "other")
    with pytest.raises(crypto.CryptoError):
        crypto.unseal(crypto.derive_key("another", "test"), sealed, "ctx")


@pytest.mark.parametrize(("given", "expected"), [
    (None, "https://api.cloud.seqera.io"),
    ("", "https://api.cloud.seqera.io"),
    ("https://api.tower.nf", "https://api.cloud.seqera.io"),
    ("https://api.tower.nf/", "https://api.cloud.seqera.io"),
    ("https://api.stage-tower.net", "https://api.cloud.stage-seqera.io"),
    ("http://localhost:8008/api/", "http://localhost:8008/api"),
])
def test_endpoints_are_normalised_with_the_legacy_rewrites(given: str | None, expected: str) -> None:
    assert normalize_endpoint(given) == expected


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(ValueError, match="towerEndpoint"):
        normalize_endpoint("ftp://x")


def test_the_local_secret_is_created_once_for_processes_starting_together(tmp_path: Path) -> None:
    path = str(tmp_path / "state" / "secret.key")
    with ProcessPoolExecutor(4) as pool:
        values = set(pool.map(crypto.local_secret, [path] * 8))
    assert len(values) == 1 and crypto.local_secret(path) in values
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path / "state") == ["secret.key"]
