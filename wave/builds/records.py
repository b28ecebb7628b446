"""Build state in the shared key-value store, so every replica sees every build.

Three kinds of keys:
- ``build:record:<id>`` — the record (JSON): status, times, outcome, and a deadline + heartbeat, so a build
  whose replica died is seen as failed instead of PENDING forever;
- ``build:target:<image>`` — the id of the build currently producing that image: claimed with
  ``put_if_absent`` (one winner per image), released when the build ends (only by the build holding it:
  ``delete_if``), and expiring on its own after the build's deadline should its replica die;
- ``build:count:<container id>`` — the per-container counter that numbers builds (``<id>_<n>``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from wave.store.base import KeyValueStore

RECORD_TTL = 30 * 86400.0  # how long build status stays queryable
HEARTBEAT_INTERVAL = 10.0  # seconds between the owner's heartbeats
HEARTBEAT_GRACE = 60.0  # a PENDING build silent this long has lost its replica
DEADLINE_GRACE = 60.0  # beyond the build timeout: time to store the outcome


@dataclass(frozen=True)
class BuildRecord:
    id: str
    target_image: str
    status: str  # "PENDING" | "COMPLETED"
    start_time: float  # epoch seconds
    deadline: float  # epoch seconds after which a PENDING build is dead
    heartbeat: float
    platform: str = "linux/amd64"
    format: str = "docker"
    duration: float | None = None
    succeeded: bool | None = None
    reason: str | None = None
    user_name: str | None = None  # the Seqera Platform user who asked for it (None: anonymous)
    user_email: str | None = None

    @property
    def pending(self) -> bool:
        return self.status == "PENDING"

    def is_stale(self, now: float) -> bool:
        return self.pending and (now > self.deadline or now - self.heartbeat > HEARTBEAT_GRACE)

    def completed(self, succeeded: bool, reason: str | None, now: float) -> BuildRecord:
        return replace(self, status="COMPLETED", succeeded=succeeded, reason=reason,
                       duration=round(max(0.0, now - self.start_time), 3), heartbeat=now)

    def dead(self, now: float) -> BuildRecord:
        """This record as failed because its replica stopped reporting."""
        why = ("the build did not finish before its deadline" if now > self.deadline
               else "the wave replica running the build stopped (no heartbeat)")
        return replace(self.completed(False, why, now), duration=round(max(0.0, now - self.start_time), 3))

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> BuildRecord:
        return cls(**orjson.loads(data))


@dataclass(frozen=True)
class BuildStatus:
    """What ``GET /v1alpha1/builds/{id}/status`` shows."""

    id: str
    status: str  # "PENDING" | "COMPLETED"
    start_time: datetime  # UTC
    duration: float | None  # seconds, once completed
    succeeded: bool | None  # once completed
    target_image: str
    reason: str | None = None  # why a build failed

    @classmethod
    def of(cls, record: BuildRecord) -> BuildStatus:
        return cls(record.id, record.status, datetime.fromtimestamp(record.start_time, UTC), record.duration,
                   record.succeeded, record.target_image, record.reason)

    def to_json(self) -> dict[str, Any]:
        """The contract's fields: ``{id, status, startTime, duration, succeeded}`` (+ ``reason`` on failure)."""
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "startTime": self.start_time.isoformat().replace("+00:00", "Z"),
            "duration": self.duration,
            "succeeded": self.succeeded,
        }
        if self.reason:
            body["reason"] = self.reason
        return body


class BuildRecords:
    """Typed access to build keys; the atomic parts are the store's (``incr``, ``put_if_absent``, ``delete_if``)."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store

    async def next_id(self, container_id: str) -> str:
        return f"{container_id}_{await self._store.incr(f'build:count:{container_id}')}"

    async def get(self, build_id: str) -> BuildRecord | None:
        data = await self._store.get(f"build:record:{build_id}")
        return BuildRecord.from_bytes(data) if data else None

    async def put(self, record: BuildRecord) -> None:
        await self._store.put(f"build:record:{record.id}", record.to_bytes(), ttl=RECORD_TTL)

    async def delete(self, build_id: str) -> None:
        await self._store.delete(f"build:record:{build_id}")

    async def claim(self, target: str, build_id: str, ttl: float) -> bool:
        """Become the one build of ``target``; False when another build holds it."""
        return await self._store.put_if_absent(f"build:target:{target}", build_id.encode(), ttl=ttl)

    async def claimant(self, target: str) -> str | None:
        data = await self._store.get(f"build:target:{target}")
        return data.decode() if data else None

    async def release(self, target: str, build_id: str) -> bool:
        """Give up ``target`` if ``build_id`` still holds it; never removes a claim another build took after
        this one's expired (compare-and-delete). True when this call released it."""
        return await self._store.delete_if(f"build:target:{target}", build_id.encode())

    async def set_last_success(self, target: str, build_id: str) -> None:
        await self._store.put(f"build:last:{target}", build_id.encode(), ttl=RECORD_TTL)

    async def last_success(self, target: str) -> str | None:
        data = await self._store.get(f"build:last:{target}")
        return data.decode() if data else None


def now() -> float:
    """Wall-clock time: records are compared across replicas, so monotonic clocks would not do."""
    return time.time()
