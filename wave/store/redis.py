"""The shared backend for several replicas: Redis, with namespaced and versioned keys.

Every operation is a single atomic Redis command (or a MULTI for incr + expiry, or a Lua script for
compare-and-delete and for a batch of writes), so two replicas racing for the same build or counter always
agree. A lost connection becomes :class:`Unavailable` (503) at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wave.errors import Unavailable
from wave.store.grouped import GroupCommit, each_alone
from wave.store.writes import HIncr, Incr, Put, Write

log = logging.getLogger("wave.store")
T = TypeVar("T")
PREFIX = "wave:v1:"
# compare-and-delete in one atomic step (an expired key reads as nil, so it never matches)
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


# write_all in one command: atomic like MULTI, one request and one reply however many writes (ARGV: op, 2 args).
# Redis does not roll a script back, so every increment is checked first: a batch either fails before its
# first write or applies whole (group commit retries the calls of a failed batch one by one).
_WRITE_ALL = """
local function integer(v)
    local n = tonumber(v)
    return n ~= nil and n == math.floor(n)
end
local a = 1
for k = 1, #KEYS do
    local op = ARGV[a]
    if op == 'i' then
        local v = redis.call('GET', KEYS[k])
        if v and not integer(v) then
            return redis.error_reply('ERR ' .. KEYS[k] .. ' holds no integer')
        end
    elseif op == 'h' then
        local t = redis.call('TYPE', KEYS[k]).ok
        if t ~= 'none' and (t ~= 'hash' or not (redis.call('HGET', KEYS[k], ARGV[a + 1]) == false
                                                  or integer(redis.call('HGET', KEYS[k], ARGV[a + 1])))) then
            return redis.error_reply('ERR ' .. KEYS[k] .. ' holds no counters')
        end
    end
    a = a + 3
end
a = 1
for k = 1, #KEYS do
    local op = ARGV[a]
    if op == 'p' then
        if ARGV[a + 2] == '' then
            redis.call('SET', KEYS[k], ARGV[a + 1])
        else
            redis.call('SET', KEYS[k], ARGV[a + 1], 'PX', ARGV[a + 2])
        end
    elseif op == 'i' then
        redis.call('INCRBY', KEYS[k], ARGV[a + 1])
        if ARGV[a + 2] ~= '' then
            redis.call('EXPIRE', KEYS[k], ARGV[a + 2], 'NX')
        end
    else
        redis.call('HINCRBY', KEYS[k], ARGV[a + 1], ARGV[a + 2])
    end
    a = a + 3
end
return #KEYS
"""


def _ms(ttl: float | None) -> int | None:
    return max(1, int(ttl * 1000)) if ttl is not None else None


class RedisStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._delete_if = client.register_script(_DELETE_IF)
        self._write_all = client.register_script(_WRITE_ALL)
        self._group = GroupCommit(self._commit_batch)

    @classmethod
    async def connect(cls, url: str) -> RedisStore:
        # A blocking pool queues a burst of concurrent calls instead of failing past max_connections.
        # driver_info=None: redis-py would otherwise read its package metadata from disk for every new
        # connection, on the event loop, to tell the server its library name.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=5, socket_connect_timeout=2,
                                                        socket_timeout=5, health_check_interval=15, driver_info=None)
        client = aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it
        store = cls(client)
        try:
            await store.ping()
        except Unavailable:
            await client.aclose()
            where = urlsplit(url)
            raise Unavailable(f"cannot reach redis at {where.hostname}:{where.port or 6379}{where.path}") from None
        return store

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("redis unavailable: %s", type(exc).__name__)
            raise Unavailable("the state store (redis) is unavailable; retry shortly") from None
        except RedisError as exc:
            log.error("redis error: %s", exc)
            raise Unavailable("the state store (redis) failed; retry shortly") from None

    async def get(self, key: str) -> bytes | None:
        value = await self._call(lambda: self._redis.get(PREFIX + key))
        return value.encode() if isinstance(value, str) else value  # bytes: the client never decodes

    async def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._call(lambda: self._redis.set(PREFIX + key, value, px=_ms(ttl)))

    async def put_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        return bool(await self._call(lambda: self._redis.set(PREFIX + key, value, px=_ms(ttl), nx=True)))

    async def delete(self, key: str) -> None:
        await self._call(lambda: self._redis.delete(PREFIX + key))

    async def delete_if(self, key: str, value: bytes) -> bool:
        deleted = await self._call(lambda: self._delete_if(keys=[PREFIX + key], args=[value]))
        return int(deleted) == 1

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        async def run() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(PREFIX + key, amount)
                if ttl is not None:
                    pipe.expire(PREFIX + key, max(1, int(ttl)), nx=True)
                results = await pipe.execute()
            return int(results[0])

        return await self._call(run)

    async def hincr(self, key: str, field: str, amount: int = 1) -> None:
        await self._call(lambda: self._redis.hincrby(PREFIX + key, field, amount))

    async def write_all(self, writes: Sequence[Write]) -> None:
        """All of ``writes`` in one script call, with the calls that arrive while one is in flight
        (:mod:`wave.store.grouped`): one round trip for many container requests."""
        if writes:
            await self._call(lambda: self._group.write(writes))

    async def _commit_batch(self, batch: list[Sequence[Write]]) -> list[BaseException | None]:
        return await each_alone(batch, self._run_script, ResponseError)

    async def _run_script(self, writes: Sequence[Write]) -> None:
        keys: list[str] = []
        args: list[bytes | str | int] = []
        for op in writes:
            keys.append(PREFIX + op.key)
            if isinstance(op, Put):
                ms = _ms(op.ttl)
                args += ["p", op.value, "" if ms is None else ms]
            elif isinstance(op, Incr):
                args += ["i", op.amount, "" if op.ttl is None else max(1, int(op.ttl))]
            elif isinstance(op, HIncr):
                args += ["h", op.field, op.amount]
        await self._write_all(keys=keys, args=args)

    async def hgetall(self, key: str) -> dict[str, int]:
        raw = await self._call(lambda: self._redis.hgetall(PREFIX + key))
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

    async def ping(self) -> None:
        await self._call(lambda: self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
