"""Limits per caller: how many pulls and builds one caller may ask for in a period, counted in the shared store
so every replica enforces the same count.

A *pull* is a container request or a manifest request by tag (the one request of a pull that names what is
pulled; manifests by digest, blobs and HEADs are the rest of that same pull and are not counted). A *build* is
a container request that asks for a build (or a freeze). Callers are anonymous (keyed by the client address
wave sees, behind trusted proxies) or authenticated users (keyed by user), each kind with its own limits
(``WAVE_RATE_LIMIT_ANON_PULLS``, ``…_ANON_BUILDS``, ``…_USER_PULLS``, ``…_USER_BUILDS``, ``N/period`` or
``off``). A limit that is off costs nothing: no store call at all.

Counting uses fixed windows (``limits/<kind>/<caller>/<window start>``, expiring with the window): one atomic
``incr`` per key in both backends. Increments arriving in the same turn of the event loop are coalesced into
one ``incr`` whose result numbers each of them, so a burst of pulls costs one store call per caller, and the
count stays exact: the N+1st pull of a window is refused, on whichever replica it arrives.

A refusal is 429 with ``Retry-After`` (the seconds until the window ends): OCI ``TOOMANYREQUESTS`` on ``/v2``,
``{"message"}`` naming the limit and when it resets on the API; Prometheus counts refusals by limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wave.config import Rate, Settings
from wave.errors import ApiError, RateLimited
from wave.store import KeyValueStore
from wave.tokens import iso_time

if TYPE_CHECKING:
    from wave.platform.models import PlatformIdentity

Kind = Literal["pulls", "builds"]


@dataclass(frozen=True)
class Caller:
    """Who is asking, as limits see it: a key (never shown to anyone else) and whether it is a known user."""

    key: str
    authenticated: bool = False


def user_key(identity: PlatformIdentity | None) -> str | None:
    """How limits name a Seqera Platform user: the Platform they signed in to and their id there."""
    return f"{identity.endpoint}#{identity.user_id}" if identity is not None else None


def caller_identity(client_ip: str | None, user: str | None = None) -> Caller:
    """The caller of a request: the Platform user once one is known, otherwise the client address as wave sees
    it behind trusted proxies. The one place that decides it, so every limit keys alike."""
    if user:
        return Caller(f"user:{user}", authenticated=True)
    return Caller(f"ip:{client_ip or 'unknown'}")


class _Batch:
    """Increments of one key in one turn of the loop, written as one ``incr``."""

    def __init__(self) -> None:
        self.count = 0
        self.result: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class Limits:
    def __init__(self, settings: Settings, store: KeyValueStore,
                 on_refusal: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._rates: dict[tuple[Kind, bool], Rate | None] = {
            ("pulls", False): settings.rate_limit_anon_pulls, ("builds", False): settings.rate_limit_anon_builds,
            ("pulls", True): settings.rate_limit_user_pulls, ("builds", True): settings.rate_limit_user_builds,
        }
        # Whether any pull limit is on: the /v2 surface skips the call altogether when none is (every pull asks).
        self.pulls_limited = self._rates[("pulls", False)] is not None or self._rates[("pulls", True)] is not None
        self._allow_anonymous = settings.allow_anonymous
        self._on_refusal = on_refusal or (lambda limit: None)
        self._clock = clock
        self._batches: dict[str, _Batch] = {}

    def admit(self, caller: Caller, platform_token: bool) -> None:
        """``WAVE_ALLOW_ANONYMOUS=false``: a container request needs a Seqera Platform token (401 otherwise)."""
        if not self._allow_anonymous and not platform_token and not caller.authenticated:
            raise ApiError("this wave service does not serve anonymous requests: send a Seqera Platform access "
                           "token (towerAccessToken)", status=401)

    async def count(self, kind: Kind, caller: Caller) -> None:
        """Count one pull or build of the caller; RateLimited (429) when it is past the caller's limit."""
        rate = self._rates[(kind, caller.authenticated)]
        if rate is None:
            return
        now = self._clock()
        window = math.floor(now / rate.period) * rate.period
        position = await self._incr(f"limits/{kind}/{caller.key}/{int(window)}", rate.period)
        if position <= rate.count:
            return
        resets = window + rate.period
        retry_after = max(1, math.ceil(resets - now))
        who = "an authenticated user" if caller.authenticated else "an anonymous caller (by address)"
        name = f"{'user' if caller.authenticated else 'anon'}_{kind}"
        self._on_refusal(name)
        raise RateLimited(f"rate limit reached: {rate.text} {kind} for {who}; it resets at {iso_time(resets)} "
                          f"(in {retry_after}s)", headers={"Retry-After": str(retry_after)},
                          detail={"limit": rate.text, "resets": iso_time(resets)})

    async def _incr(self, key: str, ttl: float) -> int:
        """This increment's number in the window: coalesced with the others of this turn of the loop."""
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch()
            asyncio.get_running_loop().call_soon(self._flush, key, batch, ttl)
        batch.count += 1
        mine = batch.count
        total = await asyncio.shield(batch.result)
        return total - batch.count + mine

    def _flush(self, key: str, batch: _Batch, ttl: float) -> None:
        del self._batches[key]
        task = asyncio.ensure_future(self._store.incr(key, batch.count, ttl=ttl + 1))

        def done(finished: asyncio.Future[int]) -> None:
            if finished.cancelled():
                batch.result.cancel()
            elif finished.exception() is not None:
                batch.result.set_exception(finished.exception())  # type: ignore[arg-type]
            else:
                batch.result.set_result(finished.result())

        task.add_done_callback(done)
