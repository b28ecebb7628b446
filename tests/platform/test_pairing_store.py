"""Pairing records: one key pair per (service, endpoint), kept while its lease runs, renewed after; the private
key sealed in the store when WAVE_SECRET_KEY is given."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from wave.platform import pairing as pairing_module
from wave.platform.pairing import PairingStore
from wave.store.embedded import EmbeddedStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    backend = await EmbeddedStore.open(tmp_path / "wave.db")
    yield backend
    await backend.close()


async def test_a_record_is_kept_during_its_lease_and_renewed_after(store: EmbeddedStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pairings = PairingStore(store)
    assert await pairings.get("tower", "https://p.example/api") is None
    first = await pairings.acquire("tower", "https://p.example/api")
    assert first.pairing_id.isdigit() and first.expires > time.time() + 86000
    assert (await pairings.acquire("tower", "https://p.example/api")).pairing_id == first.pairing_id
    other = await pairings.acquire("tower", "https://other.example/api")
    assert other.pairing_id != first.pairing_id and other.public_key != first.public_key

    later = time.time() + pairing_module.LEASE + 1
    monkeypatch.setattr(pairing_module.time, "time", lambda: later)
    renewed = await PairingStore(store).acquire("tower", "https://p.example/api")
    assert renewed.pairing_id != first.pairing_id and renewed.public_key != first.public_key
    assert (await PairingStore(store).get("tower", "https://p.example/api")) == renewed


async def test_concurrent_renewals_hand_out_one_key(store: EmbeddedStore) -> None:
    records = await asyncio.gather(*(PairingStore(store).acquire("tower", "https://p.example/api")
                                     for _ in range(4)))
    assert len({r.pairing_id for r in records}) == 1


async def test_the_private_key_is_sealed_with_a_secret_key(store: EmbeddedStore) -> None:
    sealed = PairingStore(store, "operator-secret")
    record = await sealed.acquire("tower", "https://p.example/api")
    raw = [row for row in store._db.execute("SELECT value FROM kv").fetchall()]
    assert raw and all(b"PRIVATE KEY" not in bytes(value) for (value,) in raw)
    assert orjson.loads(bytes(raw[0][0]))["sealedPrivateKey"].startswith("v1:")
    assert (await PairingStore(store, "operator-secret").get("tower", "https://p.example/api")) == record
    assert await PairingStore(store, "another-secret").get("tower", "https://p.example/api") is None
    assert await PairingStore(store).get("tower", "https://p.example/api") is None  # sealed, no key given
