"""Pairing records: one RSA-2048 key pair and ``pairingId`` per (service, endpoint), in the shared store.

Platform encrypts a user's credentials with the public key it received when it paired, so every replica must
be able to read the private key: it lives in the store, sealed (AES-GCM) when the operator gives
``WAVE_SECRET_KEY``. A record's lease lasts a day and the record 30 days; an expired lease gets a new key
pair at the next socket open (one replica generates it: the others wait for its record).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field

import orjson

from wave.bounded import BoundedCache
from wave.platform import crypto
from wave.store.base import KeyValueStore

log = logging.getLogger("wave.platform")

LEASE = 86400.0
RECORD_TTL = 30 * 86400.0
CACHE_TTL = 10.0  # how long a replica trusts the record it read (a renewal is seen within this)
RENEW_LOCK_TTL = 15.0


@dataclass(frozen=True)
class PairingRecord:
    service: str
    endpoint: str
    pairing_id: str
    public_key: str  # base64 X.509 DER, as sent in pairing-response
    private_key: bytes = field(repr=False)  # PKCS#8 PEM
    expires: float  # end of the lease (epoch seconds)

    @property
    def expired(self) -> bool:
        return self.expires <= time.time()


def _key(service: str, endpoint: str) -> str:
    return f"pairing/record/{service}/{hashlib.sha256(endpoint.encode()).hexdigest()[:32]}"


class PairingStore:
    def __init__(self, store: KeyValueStore, secret_key: str = "") -> None:
        self._store = store
        self._seal_key = crypto.derive_key(secret_key, "pairing-keys") if secret_key else None
        self._cache: BoundedCache[str, PairingRecord] = BoundedCache(1024, ttl=CACHE_TTL)

    async def get(self, service: str, endpoint: str) -> PairingRecord | None:
        """The record (lease expired or not: keys it handed out still decrypt), or None when never paired."""
        key = _key(service, endpoint)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        data = await self._store.get(key)
        record = self._decode(key, data) if data is not None else None
        if record is not None:
            self._cache.put(key, record)
        return record

    async def acquire(self, service: str, endpoint: str) -> PairingRecord:
        """The record to announce on a new socket: the stored one while its lease runs, else a new one."""
        key = _key(service, endpoint)
        deadline = time.monotonic() + RENEW_LOCK_TTL
        while True:
            data = await self._store.get(key)
            record = self._decode(key, data) if data is not None else None
            if record is not None and not record.expired:
                self._cache.put(key, record)
                return record
            lock = f"{key}/renewing"
            token = secrets.token_hex(8).encode()
            if await self._store.put_if_absent(lock, token, ttl=RENEW_LOCK_TTL) or time.monotonic() > deadline:
                try:
                    record = await self._create(service, endpoint)
                    await self._store.put(key, self._encode(key, record), ttl=RECORD_TTL)
                finally:
                    await self._store.delete_if(lock, token)
                self._cache.put(key, record)
                log.info("new pairing key %s for %s at %s", record.pairing_id, service, endpoint)
                return record
            await asyncio.sleep(0.1)  # another replica is generating it

    @staticmethod
    async def _create(service: str, endpoint: str) -> PairingRecord:
        private, public = await asyncio.to_thread(crypto.generate_key_pair)
        pairing_id = str(secrets.randbelow(10**18 - 10**17) + 10**17)  # a random decimal, as Platform expects
        return PairingRecord(service, endpoint, pairing_id, public, private, time.time() + LEASE)

    def _encode(self, key: str, record: PairingRecord) -> bytes:
        body: dict[str, object] = {"service": record.service, "endpoint": record.endpoint,
                                   "pairingId": record.pairing_id, "publicKey": record.public_key,
                                   "expires": record.expires}
        if self._seal_key is not None:
            body["sealedPrivateKey"] = crypto.seal(self._seal_key, record.private_key, key)
        else:
            body["privateKey"] = record.private_key.decode()
        return orjson.dumps(body)

    def _decode(self, key: str, data: bytes) -> PairingRecord | None:
        try:
            body = orjson.loads(data)
            if "sealedPrivateKey" in body:
                if self._seal_key is None:
                    log.error("the pairing key of %s is sealed but WAVE_SECRET_KEY is not set", body.get("endpoint"))
                    return None
                private = crypto.unseal(self._seal_key, body["sealedPrivateKey"], key)
            else:
                private = body["privateKey"].encode()
            return PairingRecord(body["service"], body["endpoint"], str(body["pairingId"]), body["publicKey"],
                                 private, float(body["expires"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, crypto.CryptoError) as exc:
            log.error("unreadable pairing record %s: %s", key, exc)
            return None
