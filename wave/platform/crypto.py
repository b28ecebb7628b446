"""The cryptography Platform and wave share, and the sealing of secrets wave keeps in its store.

Platform hands wave a user's registry credentials only encrypted with wave's pairing public key, as a
*packet* ``1\\P\\<base64 encKey>\\<base64 encData>``: ``encKey`` is an AES-128 key encrypted with RSA PKCS#1
v1.5, ``encData`` the JSON payload under AES/ECB/PKCS5Padding. That format is weak (ECB, PKCS#1 v1.5) but it
is what Platform speaks, so it is accepted for compatibility and nothing else of wave uses it.

What wave itself keeps in the shared store (pairing private keys, a token's Platform tokens) is sealed with
AES-256-GCM under a key derived (HKDF-SHA256) from the operator's secret, with a context string as associated
data, so a sealed value cannot be moved to another key or record and still open.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RSA_BITS = 2048
PACKET_VERSION = "1"
PACKET_PUBLIC = "P"
SEAL_PREFIX = "v1:"


class CryptoError(ValueError):
    """A packet or a sealed value cannot be opened (wrong key, damaged, or not in the expected format)."""


def generate_key_pair() -> tuple[bytes, str]:
    """A new RSA-2048 pairing key: the private key as PKCS#8 PEM, the public key as base64 X.509 DER (what
    ``pairing-response`` carries). CPU-bound (tens of milliseconds): call it in a thread."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(public).decode()


def decrypt_packet(private_pem: bytes, packet: str) -> dict[str, Any]:
    """The JSON payload of a Platform keys packet, decrypted with the pairing private key."""
    parts = packet.split("\\")
    if len(parts) != 4 or parts[0] != PACKET_VERSION or parts[1] != PACKET_PUBLIC:
        raise CryptoError("the credentials packet is not in Platform's format (1\\P\\key\\data)")
    try:
        enc_key = base64.b64decode(parts[2], validate=True)
        enc_data = base64.b64decode(parts[3], validate=True)
        private = serialization.load_pem_private_key(private_pem, password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise CryptoError("the pairing key is not an RSA key")
        aes_key = private.decrypt(enc_key, asym_padding.PKCS1v15())
        if len(aes_key) not in (16, 24, 32):
            raise CryptoError("the packet's key has an invalid length")
        decryptor = Cipher(algorithms.AES(aes_key), modes.ECB()).decryptor()  # ECB: Platform's format
        padded = decryptor.update(enc_data) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        payload = unpadder.update(padded) + unpadder.finalize()
        document = orjson.loads(payload)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        # the reason may quote bytes of the secret: never pass it on
        raise CryptoError("the credentials packet cannot be decrypted with this pairing key") from None
    if not isinstance(document, dict):
        raise CryptoError("the credentials packet does not hold a JSON object")
    return document


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose from the operator's secret (any length, any text)."""
    ikm = secret.encode() if isinstance(secret, str) else secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"wave", info=purpose.encode()).derive(ikm)


def seal(key: bytes, plaintext: bytes, context: str) -> str:
    """AES-256-GCM; ``context`` (e.g. the record's key) is authenticated, not stored."""
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, context.encode())
    return SEAL_PREFIX + base64.b64encode(nonce + sealed).decode()


def unseal(key: bytes, sealed: str, context: str) -> bytes:
    if not sealed.startswith(SEAL_PREFIX):
        raise CryptoError("not a sealed value")
    try:
        raw = base64.b64decode(sealed[len(SEAL_PREFIX):], validate=True)
        return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode())
    except (binascii.Error, ValueError, InvalidTag):
        raise CryptoError("the sealed value cannot be opened with this key (was WAVE_SECRET_KEY changed?)") \
            from None


def local_secret(path: str) -> str:
    """This installation's own secret (created once, mode 0600): seals what only this replica must read
    back when the operator gives no ``WAVE_SECRET_KEY``. Blocking: call it in a thread."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    value = base64.b64encode(os.urandom(32)).decode()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    try:
        os.link(temporary, path)  # atomic, and complete: processes starting together all read one secret
    except FileExistsError:
        with open(path) as fh:
            value = fh.read().strip()
    finally:
        os.unlink(temporary)
    return value
