"""Upstream's last good answers, to serve through an upstream outage.

When a registry is unreachable, answers 5xx or rate-limits wave (429), a manifest (or image config) that the
same repository, asked with the same credentials, served before is answered from here instead: the last one
seen for that tag or digest, for at most ``WAVE_STALE_TTL`` after it was fetched. Records are keyed by the
client's scope (registry, repository, credentials identity), so an outage never shows one repository (or
one set of credentials) what another was served. Records are written only when upstream is asked anyway
(the cold path), never on a warm pull.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable

from wave.store import KeyValueStore

log = logging.getLogger("wave.registry")


class LastGood:
    def __init__(self, store: KeyValueStore, ttl: float) -> None:
        self._store = store
        self._ttl = ttl

    @staticmethod
    def _key(scope: str, kind: str, name: str) -> str:
        return f"lastgood/{hashlib.sha256(scope.encode()).hexdigest()[:32]}/{kind}/{name}"

    async def remember_manifest(self, scope: str, references: tuple[str, ...], media_type: str, digest: str,
                                data: bytes) -> None:
        record = media_type.encode() + b"\n" + digest.encode() + b"\n" + data
        for reference in dict.fromkeys(references):
            await self._safely(self._store.put(self._key(scope, "manifest", reference), record, ttl=self._ttl))

    async def manifest(self, scope: str, reference: str) -> tuple[str, str, bytes] | None:
        """(media type, digest, bytes) last served for the reference, or None."""
        record = await self._read(self._key(scope, "manifest", reference))
        if record is None:
            return None
        media_type, _, rest = record.partition(b"\n")
        digest, _, data = rest.partition(b"\n")
        return media_type.decode(), digest.decode(), data

    async def remember_blob(self, scope: str, digest: str, data: bytes) -> None:
        await self._safely(self._store.put(self._key(scope, "blob", digest), data, ttl=self._ttl))

    async def blob(self, scope: str, digest: str) -> bytes | None:
        return await self._read(self._key(scope, "blob", digest))

    async def _read(self, key: str) -> bytes | None:
        try:
            return await self._store.get(key)
        except Exception as exc:  # the store failing too: there is nothing to fall back on
            log.warning("cannot read the last good upstream answer: %s", exc)
            return None

    @staticmethod
    async def _safely(write: Awaitable[None]) -> None:
        try:
            await write
        except Exception as exc:  # a lost record only means no fallback for it
            log.warning("cannot keep the last good upstream answer: %s", exc)
