"""Usage metrics: who builds and pulls what, counted in the shared store.

The contract has two families of metrics endpoints, so two kinds of state are kept:

- **counters** (v1alpha2), as PROTOCOL §8 names them: ``metrics/<kind>/d/<yyyy-mm-dd>``,
  ``metrics/<kind>/o/<org>`` and ``metrics/<kind>/o/<org>/d/<date>``, for kind ``builds`` (each build
  launched), ``pulls`` (each image manifest served through a token) and ``fusion`` (those pulls whose request
  injects Fusion layers). One ``incr`` per key; a query is one ``get``.
- **records** (v1alpha1): each container request ("pull") and each finished build, grouped by day into three
  hashes per kind — ``metrics/records/<kind>/<day>/count`` (fields ``1``/``0``: the flag, i.e. fusion for
  pulls and success for builds), ``…/ip`` and ``…/user`` (fields ``<flag>:<ip or e-mail>``) — plus the same
  three under ``all`` for all-time totals. A date range is one ``hgetall`` per day, so a query costs at most
  ``MAX_RANGE_DAYS`` reads on either backend, using only the store protocol's operations.

Days are UTC. Recording never raises: usage metrics must not fail (or even slow much) a pull or a submit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

from wave.errors import BadRequest
from wave.oci.models import uses_fusion
from wave.store import HIncr, Incr, Write

if TYPE_CHECKING:
    from wave.config import Settings
    from wave.model import SubmitRequest
    from wave.prometheus import OpsMetrics
    from wave.store import KeyValueStore
    from wave.tokens import ContainerRequest

log = logging.getLogger("wave.metrics")

CounterKind = Literal["builds", "pulls", "fusion"]
RecordKind = Literal["builds", "pulls"]
Dimension = Literal["ip", "user"]

MAX_RANGE_DAYS = 366  # a leap year: "the last year" always fits
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
READ_CONCURRENCY = 16  # store reads in flight for one range query
_ALL = "all"
_ORG_RE = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")


_EPOCH = date(1970, 1, 1).toordinal()
_today_cache: tuple[int, date] = (-1, date.min)


def utc_today() -> date:
    """Today in UTC; every pull asks, so the date is made once a day (epoch seconds // 86400 is the UTC day)."""
    global _today_cache
    day = int(time.time() // 86400)
    if day != _today_cache[0]:
        _today_cache = (day, date.fromordinal(_EPOCH + day))
    return _today_cache[1]


def org_of(email: str | None) -> str | None:
    """The organisation of a user: the domain of the e-mail, lower-cased; None when there is no usable one."""
    if not email or "@" not in email:
        return None
    domain = email.rpartition("@")[2].strip().lower()
    return domain if _ORG_RE.fullmatch(domain) else None


def valid_org(org: str) -> bool:
    return _ORG_RE.fullmatch(org) is not None


@dataclass(frozen=True)
class Window:
    """The days a v1alpha1 query covers.

    ``start=None, end=None`` is all time (the all-time hash); ``start=None`` with an ``end`` is all time up to
    ``end`` (the all-time hash minus the days after ``end``: exact, and cheap while ``end`` is recent).
    """

    start: date | None = None
    end: date | None = None

    def checked(self, today: date) -> Window:
        """This window with an ``end`` filled in as the contract says, or BadRequest naming the parameter."""
        if self.start is None:
            if self.end is not None and (today - self.end).days > MAX_RANGE_DAYS:
                raise BadRequest(f"endDate {self.end} without a startDate must be within {MAX_RANGE_DAYS} days "
                                 f"of today; give a startDate too")
            return self
        end = self.end or today  # contract: only startDate -> endDate is today
        if self.start > end:
            raise BadRequest(f"startDate {self.start} is after endDate {end}")
        days = (end - self.start).days + 1
        if days > MAX_RANGE_DAYS:
            raise BadRequest(f"startDate {self.start} to endDate {end} spans {days} days; at most "
                             f"{MAX_RANGE_DAYS} are allowed (omit both dates for all-time totals)")
        return Window(self.start, end)


def _days(first: date, last: date) -> Iterable[date]:
    for n in range((last - first).days + 1):
        yield first + timedelta(days=n)


FLUSH_EVERY = 1.0  # seconds pull counts are summed in memory before one store call writes them


class BufferedCounters:
    """Counter increments summed in memory and written every ``FLUSH_EVERY`` seconds in one store call (one
    transaction or pipeline for every key): a pull costs a dictionary update, not a task or a store write.
    Increments of a write that failed are kept for the next one; :meth:`flush` writes at once (before a query
    of this replica, and at shutdown)."""

    def __init__(self, store: KeyValueStore, interval: float = FLUSH_EVERY) -> None:
        self._store = store
        self._interval = interval
        self._pending: Counter[tuple[str, ...]] = Counter()  # a group of keys -> how many times it was added
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Future[None] | None = None

    def add(self, keys: tuple[str, ...]) -> None:
        """Increment each of ``keys`` (a pull's day, organisation and kind counters) by one: one dictionary
        update for the group, expanded into keys when written."""
        self._pending[keys] += 1
        if self._timer is None and self._flushing is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._due)

    def _due(self) -> None:
        self._timer = None
        self._flushing = asyncio.ensure_future(self._write())  # one task per interval, however many pulls

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._flushing is not None:
            await asyncio.shield(self._flushing)
        if self._pending:
            self._flushing = asyncio.ensure_future(self._write())
            await asyncio.shield(self._flushing)

    async def _write(self) -> None:
        batch, self._pending = self._pending, Counter()
        amounts: Counter[str] = Counter()
        for keys, times in batch.items():
            for key in keys:
                amounts[key] += times
        try:
            await self._store.write_all([Incr(key, amount) for key, amount in amounts.items()])
        except Exception as exc:  # the store is down: keep the counts for the next write
            log.warning("could not write %d usage counters: %s", len(amounts), exc)
            self._pending.update(batch)
            raise
        finally:
            self._flushing = None
            if self._pending and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self._interval, self._due)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _flag(value: bool) -> str:
    return "1" if value else "0"


class UsageMetrics:
    """Records usage events and answers the metrics endpoints' queries.

    ``ops`` (optional) also counts builds by state for the Prometheus endpoint; ``clock`` lets tests put
    events on given days.
    """

    def __init__(self, store: KeyValueStore, settings: Settings, ops: OpsMetrics | None = None,
                 clock: Callable[[], date] = utc_today) -> None:
        self._store = store
        self._counters = BufferedCounters(store)
        self._pull_keys: dict[tuple[bool, str | None], tuple[date, tuple[str, ...]]] = {}  # counter keys of a pull
        self._fusion_hosts = frozenset(settings.fusion_hosts)
        self._ops = ops
        self._today = clock

    # --- events -------------------------------------------------------------------------------------

    async def container_requested(self, request: SubmitRequest, container: ContainerRequest | None,
                                  build_id: str | None) -> None:
        """A container request: the v1alpha1 "pull" record (the contract counts requests, not downloads)."""
        fusion = container.fusion if container is not None else uses_fusion(request.container_config,
                                                                                self._fusion_hosts)
        await self._safely("container request", self._record("pulls", fusion, request.client_ip,
                                                               request.user_email))

    def count_pull(self, container: ContainerRequest) -> None:
        """Count an image pull: summed in memory and written within a second, so a pull never waits for (or
        fails with) a counter."""
        day = self._today()
        memo = self._pull_keys.get((container.fusion, container.user_email))
        if memo is None or memo[0] != day:
            kinds: list[CounterKind] = ["pulls", "fusion"] if container.fusion else ["pulls"]
            memo = self._pull_keys[(container.fusion, container.user_email)] = (day, tuple(self._counter_keys(
                kinds, container.user_email)))
            if len(self._pull_keys) > 4096:
                self._pull_keys.clear()
        self._counters.add(memo[1])

    async def image_pulled(self, container: ContainerRequest) -> None:
        """An image manifest served through a token: v1alpha2 ``pulls`` (and ``fusion``) counters, written now."""
        self.count_pull(container)
        await self._safely("pull", self._counters.flush())

    async def flush(self) -> None:
        """Write the counts this replica holds in memory (queries call it, so they see this replica's pulls)."""
        await self._safely("pull", self._counters.flush())

    async def close(self) -> None:
        await self.flush()
        self._counters.close()

    async def build_launched(self, build_id: str, user_email: str | None, client_ip: str | None) -> None:
        """A build started (not one served from cache): v1alpha2 ``builds`` counters."""
        if self._ops is not None:
            self._ops.build_state("launched")
        await self._safely("build launch", self._count(["builds"], user_email))

    async def build_finished(self, build_id: str, user_email: str | None, client_ip: str | None,
                             succeeded: bool) -> None:
        """A build ended: the v1alpha1 build record, with its outcome."""
        if self._ops is not None:
            self._ops.build_state("succeeded" if succeeded else "failed")
        await self._safely("build outcome", self._record("builds", succeeded, client_ip, user_email))

    @staticmethod
    async def _safely(what: str, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:  # the store is down or failing: lose one count, not the request
            log.warning("could not record a %s in usage metrics: %s", what, exc)

    def _counter_keys(self, kinds: Iterable[CounterKind], email: str | None) -> list[str]:
        day, org = self._today().isoformat(), org_of(email)
        keys = []
        for kind in kinds:
            keys.append(f"metrics/{kind}/d/{day}")
            if org:
                keys += [f"metrics/{kind}/o/{org}", f"metrics/{kind}/o/{org}/d/{day}"]
        return keys

    async def _count(self, kinds: Iterable[CounterKind], email: str | None) -> None:
        await self._store.write_all([Incr(key) for key in self._counter_keys(kinds, email)])

    def container_request_writes(self, request: SubmitRequest, container: ContainerRequest | None) -> list[Write]:
        """The writes of :meth:`container_requested`, for the caller to send with its own (one store call)."""
        fusion = container.fusion if container is not None else uses_fusion(request.container_config,
                                                                                self._fusion_hosts)
        return self._record_writes("pulls", fusion, request.client_ip, request.user_email)

    def _record_writes(self, kind: RecordKind, flag: bool, ip: str | None, email: str | None) -> list[Write]:
        f = _flag(flag)
        writes: list[Write] = []
        for day in (self._today().isoformat(), _ALL):
            base = f"metrics/records/{kind}/{day}"
            writes.append(HIncr(f"{base}/count", f))
            if ip:
                writes.append(HIncr(f"{base}/ip", f"{f}:{ip}"))
            if email:
                writes.append(HIncr(f"{base}/user", f"{f}:{email}"))
        return writes

    async def _record(self, kind: RecordKind, flag: bool, ip: str | None, email: str | None) -> None:
        await self._store.write_all(self._record_writes(kind, flag, ip, email))

    # --- queries ------------------------------------------------------------------------------------

    async def counter(self, kind: CounterKind, day: date | None = None, org: str | None = None) -> int:
        """A v1alpha2 count: by day, by organisation, or both (at least one)."""
        if day is None and org is None:
            raise BadRequest("give a date (yyyy-mm-dd), an org, or both")
        parts = [f"metrics/{kind}"]
        if org is not None:
            parts.append(f"o/{org.lower()}")
        if day is not None:
            parts.append(f"d/{day.isoformat()}")
        await self.flush()
        value = await self._store.get("/".join(parts))
        return int(value) if value else 0

    async def total(self, kind: RecordKind, window: Window, flag: bool | None = None) -> int:
        """A v1alpha1 count over a window, optionally only records whose flag (fusion/success) is ``flag``."""
        counts = await self._sum(kind, "count", window)
        return sum(n for field, n in counts.items() if flag is None or field == _flag(flag))

    async def grouped(self, kind: RecordKind, by: Dimension, window: Window, flag: bool | None = None,
                      limit: int = DEFAULT_LIMIT) -> dict[str, int]:
        """A v1alpha1 count per IP or user e-mail over a window: the ``limit`` largest, largest first."""
        merged: Counter[str] = Counter()
        for field, n in (await self._sum(kind, by, window)).items():
            f, _, who = field.partition(":")
            if flag is None or f == _flag(flag):
                merged[who] += n
        ranked = sorted(((who, n) for who, n in merged.items() if n > 0), key=lambda item: (-item[1], item[0]))
        return dict(ranked[:limit])

    async def _sum(self, kind: RecordKind, dim: str, window: Window) -> Counter[str]:
        today = self._today()
        window = window.checked(today)
        if window.start is not None and window.end is not None:
            return await self._sum_days(kind, dim, _days(window.start, window.end))
        total: Counter[str] = Counter(await self._store.hgetall(f"metrics/records/{kind}/{_ALL}/{dim}"))
        if window.end is not None and window.end < today:
            total.subtract(await self._sum_days(kind, dim, _days(window.end + timedelta(days=1), today)))
        return total

    async def _sum_days(self, kind: RecordKind, dim: str, days: Iterable[date]) -> Counter[str]:
        """Sum the per-day hashes, a few reads at a time: enough to hide round trips, few enough not to drain
        the Redis connection pool that pulls and submits share."""
        keys = [f"metrics/records/{kind}/{day.isoformat()}/{dim}" for day in days]
        total: Counter[str] = Counter()
        for i in range(0, len(keys), READ_CONCURRENCY):
            for counts in await asyncio.gather(*(self._store.hgetall(k) for k in keys[i:i + READ_CONCURRENCY])):
                total.update(counts)
        return total
