"""Container tokens: issue, look up, revoke.

A token names one stored container request for its lifetime. Tokens are 128 random bits in lowercase hex
(container clients reject uppercase repository names) and expire with the record in the store.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import orjson

from wave.bounded import BoundedCache
from wave.oci.models import ContainerConfig, Layer
from wave.oci.platform import Platform, parse_platform
from wave.oci.reference import ImageRef, parse_reference
from wave.platform.models import PlatformIdentity
from wave.store import KeyValueStore, Put, Write

TOKEN_BYTES = 16


@dataclass(frozen=True)
class ContainerRequest:
    """What a token serves: the image to pull upstream and what to inject into it."""

    token: str
    image: ImageRef
    config: ContainerConfig
    platform: Platform
    created: float
    expires: float
    build_id: str | None = None
    freeze: bool = False
    user_email: str | None = None
    client_ip: str | None = None
    fusion: bool = False
    source_image: str | None = None  # as the client wrote it
    identity: PlatformIdentity | None = None  # the Seqera Platform user who asked (tokens sealed)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def augments(self) -> bool:
        return not self.config.is_empty

    @property
    def expiration(self) -> str:
        return iso_time(self.expires)

    def target_image(self, public_authority: str) -> str:
        """The image clients pull for this token: ``<wave host>/wt/<token>/<repository>(:tag|@digest)``.
        The one place it is spelled (the submit answer and the token description both show it)."""
        reference = f"@{self.image.digest}" if self.image.digest else f":{self.image.tag}"
        return f"{public_authority}/wt/{self.token}/{self.image.repository}{reference}"

    def to_json(self) -> bytes:
        record: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        record["image"] = str(self.image)
        record["platform"] = str(self.platform)
        config = msgspec.structs.asdict(self.config)  # attribute names: the stored format predates camelCase
        config["layers"] = [msgspec.structs.asdict(layer) for layer in self.config.layers]
        record["config"] = config
        return orjson.dumps(record)

    @classmethod
    def from_json(cls, data: bytes) -> ContainerRequest:
        record = orjson.loads(data)
        config = record["config"]
        record["config"] = ContainerConfig(
            entrypoint=tuple(config["entrypoint"]) if config["entrypoint"] is not None else None,
            cmd=tuple(config["cmd"]) if config["cmd"] is not None else None,
            env=tuple(config["env"]),
            working_dir=config["working_dir"],
            layers=tuple(Layer(**layer) for layer in config["layers"]),
        )
        record["image"] = parse_reference(record["image"])
        record["platform"] = parse_platform(record["platform"])
        if record.get("identity") is not None:
            record["identity"] = PlatformIdentity(**record["identity"])
        return cls(**record)


def iso_time(epoch: float) -> str:
    """ISO-8601 in UTC with microseconds, as the contract shows: ``2024-04-09T21:19:01.715321Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


KNOWN_TOKENS = 16384  # token records a process keeps in memory when revocations can be watched


class Revisions(Protocol):
    """A counter that every process sharing the store sees move when a token is revoked."""

    def value(self) -> int: ...

    def bump(self) -> None: ...


class TokenStore:
    """Token records in the shared store.

    With ``revisions`` (the embedded store: every process that can revoke shares one memory-mapped counter) a
    token's record is kept in memory and served without a store read as long as no token was revoked since it
    was read, anywhere, and it has not expired: the warm path of a pull costs a dictionary look-up and one
    memory load. Without it (Redis: replicas on other machines) every request is answered by a store read
    that started after it arrived (:class:`_SharedReads`). Either way a revoked token is refused from the
    moment its revocation returns."""

    def __init__(self, store: KeyValueStore, revisions: Revisions | None = None) -> None:
        self._store = store
        self._reads = _SharedReads(self._read)
        self._revisions = revisions
        self._known: BoundedCache[str, tuple[ContainerRequest, int]] = BoundedCache(KNOWN_TOKENS)

    @staticmethod
    def _key(token: str) -> str:
        return f"token/{token}"

    async def save(self, request: ContainerRequest, layers: Sequence[tuple[str, bytes]] = (),
                   also: Sequence[Write] = ()) -> None:
        """The token's record, its inline layers' bytes (digest, bytes; kept as long as the token) and the
        caller's other writes (usage records), all in one store call."""
        ttl = request.expires - time.time()
        writes: list[Write] = [Put(f"layer/{digest}", data, ttl=ttl) for digest, data in layers]
        writes.append(Put(self._key(request.token), request.to_json(), ttl=ttl))
        self._known.pop(request.token)
        await self._store.write_all([*writes, *also])

    def known(self, token: str) -> ContainerRequest | None:
        """The live request of a token when this process holds it and no token was revoked since it was read
        (the embedded store's warm path, without an await); None: ask :meth:`get`."""
        if self._revisions is None:
            return None
        known = self._known.get(token)
        if known is not None and known[1] == self._revisions.value() and known[0].expires > time.time():
            return known[0]
        return None

    async def get(self, token: str) -> ContainerRequest | None:
        """The live request of a token; concurrent look-ups of one token share a store read."""
        if not token or len(token) > 64:
            return None
        if self._revisions is None:
            return await self._reads.get(token)
        known = self.known(token)
        if known is not None:
            return known
        revision = self._revisions.value()  # before the read: a revocation during it moves the counter after
        self._known.pop(token)  # stale (revoked since, or expired), if it was held at all
        request = await self._reads.get(token)
        if request is not None:
            self._known.put(token, (request, revision))
        return request

    async def _read(self, token: str) -> ContainerRequest | None:
        data = await self._store.get(self._key(token))
        if data is None:
            return None
        request = ContainerRequest.from_json(data)
        return request if request.expires > time.time() else None

    async def save_layer(self, digest: str, data: bytes, ttl: float) -> None:
        """An inline layer's bytes, kept beside the token records (which every pull reads) rather than in them."""
        await self._store.put(f"layer/{digest}", data, ttl=ttl)

    async def layer(self, digest: str) -> bytes | None:
        return await self._store.get(f"layer/{digest}")

    async def revoke(self, token: str) -> bool:
        existed = await self.get(token) is not None
        await self._store.delete(self._key(token))
        self._known.pop(token)
        if self._revisions is not None:
            await asyncio.to_thread(self._revisions.bump)  # after the delete: readers that see it re-read
        return existed


class _SharedReads:
    """Reads of one token that arrive together share one store read, and none sees a stale answer.

    Every request is still answered by a store read that *starts after it arrived*: a request joins the next
    read (one not started yet), never one already running. So a token revoked or expired in the store is
    refused from the moment that is stored, on every replica, while a pull's many concurrent requests (and
    many clients pulling one image) cost one read, one executor round trip and one parse per batch.
    """

    def __init__(self, read: Callable[[str], Awaitable[ContainerRequest | None]]) -> None:
        self._read_store = read
        self._next: dict[str, asyncio.Task[ContainerRequest | None]] = {}  # formed, not started: joinable
        self._running: dict[str, asyncio.Task[ContainerRequest | None]] = {}

    async def get(self, token: str) -> ContainerRequest | None:
        batch = self._next.get(token)
        if batch is None:
            batch = asyncio.ensure_future(self._read(token, self._running.get(token)))
            self._next[token] = batch
        return await asyncio.shield(batch)  # a cancelled request never cancels the others' read

    async def _read(self, token: str,
                    previous: asyncio.Task[ContainerRequest | None] | None) -> ContainerRequest | None:
        if previous is not None:
            await asyncio.wait([previous])  # the read that was running when this batch formed
        this = asyncio.current_task()
        assert this is not None
        if self._next.get(token) is this:  # from here on, newcomers form the next batch
            del self._next[token]
        self._running[token] = this
        try:
            return await self._read_store(token)
        finally:
            if self._running.get(token) is this:
                del self._running[token]
