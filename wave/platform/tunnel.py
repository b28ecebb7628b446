"""Calls to a paired Platform through its pairing socket, from any replica.

A socket (the surface :mod:`wave.api.pairing` holds it) is registered here as a :class:`Channel`. A call for
that endpoint becomes a ``proxy-http-request`` on the socket and waits for the ``proxy-http-response`` with
its ``msgId``. With several replicas (a Redis store), the replica holding a socket announces it under
``pairing/socket/<endpoint hash>`` and polls a queue in the store; another replica queues the call there
(``incr`` for a sequence number, the call under that number, sealed) and polls for the answer, both bounded in
time. Calls and answers in the store are sealed with a key derived from ``WAVE_SECRET_KEY`` (they carry the
user's access token), so the relay runs only when that key is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from wave.platform import crypto
from wave.platform.client import HttpAnswer, HttpCall, PlatformError
from wave.store.base import KeyValueStore

log = logging.getLogger("wave.platform")

ANNOUNCE_TTL = 15.0
ANNOUNCE_EVERY = 5.0
QUEUE_TTL = 120.0
MISSING_GRACE = 5.0  # a sequence number whose call is not (yet) in the store is given up after this


class Channel(Protocol):
    """A pairing socket: sends one JSON message to Platform."""

    async def send(self, message: dict[str, Any]) -> None: ...


def _hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()[:32]


def new_msg_id() -> str:
    return secrets.token_hex(16)


@dataclass
class _Endpoint:
    channels: list[Channel] = field(default_factory=list)
    relay: asyncio.Task[None] | None = None


class Tunnels:
    """The pairing sockets of this replica, and the relay to those of the others (a Transport)."""

    def __init__(self, store: KeyValueStore, timeout: float, *, relay_key: str = "", relay: bool = False,
                 poll: float = 0.05) -> None:
        self._store = store
        self._timeout = timeout
        self._seal = crypto.derive_key(relay_key, "pairing-relay") if relay_key else None
        self._relay = relay and self._seal is not None
        self._poll = poll
        self.replica = secrets.token_hex(8)
        self._local: dict[str, _Endpoint] = {}
        self._pending: dict[str, asyncio.Future[HttpAnswer]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.proxied = 0  # calls sent through a socket of this replica
        self.relayed = 0  # calls this replica queued for another replica's socket
        if relay and self._seal is None:
            log.warning("several replicas share a store but WAVE_SECRET_KEY is not set: calls to a paired "
                        "Platform are relayed only by the replica holding its socket")

    # --- sockets ------------------------------------------------------------------------------------

    async def opened(self, endpoint: str, channel: Channel) -> None:
        """A socket of ``endpoint`` is open here: calls go through it, and (with a relay) the other replicas
        know it from the moment this returns."""
        entry = self._local.setdefault(endpoint, _Endpoint())
        entry.channels.append(channel)
        if self._relay and entry.relay is None:
            await self._store.put(f"pairing/socket/{_hash(endpoint)}", self.replica.encode(), ttl=ANNOUNCE_TTL)
            entry.relay = asyncio.create_task(self._serve_queue(endpoint), name=f"pairing-relay-{_hash(endpoint)}")

    async def closed(self, endpoint: str, channel: Channel) -> None:
        entry = self._local.get(endpoint)
        if entry is None:
            return
        with contextlib.suppress(ValueError):
            entry.channels.remove(channel)
        if entry.channels:
            return
        del self._local[endpoint]
        if entry.relay is not None:
            entry.relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.relay
            with contextlib.suppress(Exception):
                await self._store.delete_if(f"pairing/socket/{_hash(endpoint)}", self.replica.encode())

    def is_open(self, endpoint: str) -> bool:
        return endpoint in self._local

    def delivered(self, message: dict[str, Any]) -> None:
        """A ``proxy-http-response`` from a socket; answers nobody waits for are dropped."""
        future = self._pending.get(str(message.get("msgId")))
        if future is None or future.done():
            return
        status = message.get("status")
        headers = message.get("headers") or {}
        if not isinstance(status, int) or not isinstance(headers, dict):
            future.set_exception(PlatformError("Seqera Platform sent a malformed proxy-http-response", 502))
            return
        clean = {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in headers.items()}
        body = message.get("body")
        future.set_result(HttpAnswer(status, body if isinstance(body, str) else "", clean))

    # --- the transport ------------------------------------------------------------------------------

    async def send(self, endpoint: str, call: HttpCall) -> HttpAnswer | None:
        if endpoint in self._local:
            return await self._through_socket(endpoint, call)
        if self._relay:
            return await self._through_relay(endpoint, call)
        return None

    async def _through_socket(self, endpoint: str, call: HttpCall) -> HttpAnswer:
        entry = self._local.get(endpoint)
        if entry is None or not entry.channels:
            raise PlatformError(f"the pairing socket of Seqera Platform at {endpoint} closed", 503)
        msg_id = new_msg_id()
        future: asyncio.Future[HttpAnswer] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        message = {"@type": "proxy-http-request", "msgId": msg_id, "method": call.method, "uri": call.uri,
                   "auth": call.auth, "body": call.body, "headers": dict(call.headers)}
        try:
            self.proxied += 1
            await entry.channels[-1].send(message)
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            raise PlatformError(f"Seqera Platform at {endpoint} did not answer through its pairing socket "
                                f"within {self._timeout:.0f}s", 504) from None
        except (ConnectionError, RuntimeError) as exc:
            raise PlatformError(f"the pairing socket of Seqera Platform at {endpoint} failed: "
                                f"{type(exc).__name__}", 503) from None
        finally:
            self._pending.pop(msg_id, None)

    async def _through_relay(self, endpoint: str, call: HttpCall) -> HttpAnswer | None:
        assert self._seal is not None
        h = _hash(endpoint)
        holder = await self._store.get(f"pairing/socket/{h}")
        if holder is None or holder.decode() == self.replica:
            return None  # no socket anywhere: the caller goes direct
        msg_id = new_msg_id()
        body = orjson.dumps({"msgId": msg_id, "method": call.method, "uri": call.uri, "auth": call.auth,
                             "body": call.body, "headers": dict(call.headers)})
        number = await self._store.incr(f"pairing/queue/{h}/seq", ttl=30 * 86400.0)
        await self._store.put(f"pairing/queue/{h}/{number}",
                              crypto.seal(self._seal, body, f"call/{h}/{number}").encode(), ttl=QUEUE_TTL)
        self.relayed += 1
        deadline = time.monotonic() + self._timeout + 1.0
        delay = 0.01
        while time.monotonic() < deadline:
            data = await self._store.get(f"pairing/answer/{msg_id}")
            if data is not None:
                await self._store.delete(f"pairing/answer/{msg_id}")
                answer = orjson.loads(crypto.unseal(self._seal, data.decode(), f"answer/{msg_id}"))
                if "error" in answer:
                    raise PlatformError(str(answer["error"]), int(answer.get("status", 503)))
                return HttpAnswer(int(answer["status"]), answer["body"] or "", answer["headers"])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        raise PlatformError(f"Seqera Platform at {endpoint} did not answer through the pairing socket held by "
                            f"another wave replica within {self._timeout:.0f}s", 504)

    async def _serve_queue(self, endpoint: str) -> None:
        """While this replica holds a socket of ``endpoint``: announce it, and answer the queued calls."""
        h = _hash(endpoint)
        announced = 0.0
        last = int(await self._store.get(f"pairing/queue/{h}/seq") or 0)
        missing: dict[int, float] = {}
        while True:
            try:
                now = time.monotonic()
                if now - announced > ANNOUNCE_EVERY:
                    await self._store.put(f"pairing/socket/{h}", self.replica.encode(), ttl=ANNOUNCE_TTL)
                    announced = now
                current = int(await self._store.get(f"pairing/queue/{h}/seq") or 0)
                for number in range(last + 1, current + 1):
                    missing[number] = now
                last = max(last, current)
                for number, since in list(missing.items()):
                    data = await self._store.get(f"pairing/queue/{h}/{number}")
                    if data is None:
                        if now - since > MISSING_GRACE:
                            del missing[number]
                        continue
                    del missing[number]
                    if await self._store.put_if_absent(f"pairing/queue/{h}/{number}/claim", self.replica.encode(),
                                                       ttl=QUEUE_TTL):
                        task = asyncio.create_task(self._answer(endpoint, h, number, data))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store hiccuped: keep serving
                log.warning("pairing relay for %s: %s", endpoint, type(exc).__name__)
            await asyncio.sleep(self._poll)

    async def _answer(self, endpoint: str, h: str, number: int, data: bytes) -> None:
        assert self._seal is not None
        try:
            call = orjson.loads(crypto.unseal(self._seal, data.decode(), f"call/{h}/{number}"))
        except (crypto.CryptoError, orjson.JSONDecodeError):
            log.warning("pairing relay for %s: a queued call cannot be opened", endpoint)
            return
        msg_id = str(call["msgId"])
        answer: dict[str, Any]
        try:
            result = await self._through_socket(endpoint, HttpCall(call["method"], call["uri"], call.get("auth"),
                                                                   call.get("body"), call.get("headers") or {}))
            answer = {"status": result.status, "body": result.body, "headers": dict(result.headers)}
        except PlatformError as exc:
            answer = {"error": exc.message, "status": exc.status}
        with contextlib.suppress(Exception):
            await self._store.put(f"pairing/answer/{msg_id}",
                                  crypto.seal(self._seal, orjson.dumps(answer), f"answer/{msg_id}").encode(),
                                  ttl=QUEUE_TTL)

    async def close(self) -> None:
        for entry in list(self._local.values()):
            if entry.relay is not None:
                entry.relay.cancel()
        for task in [e.relay for e in self._local.values() if e.relay is not None] + list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._local.clear()
