"""The embedded backend: SQLite under the state directory, so one process needs no other service and
keeps its state across a restart. Calls run on one dedicated thread, never on the event loop."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import mmap
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from wave.store.grouped import GroupCommit, each_alone
from wave.store.writes import HIncr, Incr, Put, Write

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (key TEXT NOT NULL, field TEXT NOT NULL, value INTEGER NOT NULL,
                                     PRIMARY KEY (key, field));
"""
_PURGE_EVERY = 1000  # writes between sweeps of expired rows
_ROWS_PER_STATEMENT = 300  # 3 parameters a row, well below SQLite's 32,766 parameters a statement


def _parts(rows: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        yield rows[start:start + _ROWS_PER_STATEMENT]


class RevisionFile:
    """A counter every process on this machine shares through a memory-mapped 8-byte file: reading it is one
    memory load (no system call, no thread), bumping it takes a file lock. A process that caches what the
    store holds re-reads when the counter moved (token revocations: wave.tokens)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size < 8:
            os.ftruncate(self._fd, 8)
        self._map = mmap.mmap(self._fd, 8)
        self._word = memoryview(self._map).cast("Q")  # one aligned 8-byte word: read and written whole

    def value(self) -> int:
        return int(self._word[0])

    def bump(self) -> None:
        """Blocking (a file lock): call it from a thread."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._word[0] = self._word[0] + 1
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._word.release()
        self._map.close()
        os.close(self._fd)


class EmbeddedStore:
    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor,
                 revisions: RevisionFile | None = None) -> None:
        self._db = connection
        self._executor = executor
        self._writes = 0
        self._group = GroupCommit(self._commit_batch)
        self.revisions = revisions  # bumped on every token revocation, by any process sharing the file

    @classmethod
    async def open(cls, path: Path) -> EmbeddedStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wave-sqlite")

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (time.time(),))
            return db

        loop = asyncio.get_running_loop()
        db = await loop.run_in_executor(executor, connect)
        revisions = await loop.run_in_executor(executor, RevisionFile, path.with_name(path.name + "-revisions"))
        return cls(db, executor, revisions)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @staticmethod
    def _expiry(ttl: float | None) -> float | None:
        return time.time() + ttl if ttl is not None else None

    def _after_write(self) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            self._db.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (time.time(),))

    async def get(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            row = self._db.execute(
                "SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)", (key, time.time())
            ).fetchone()
            return bytes(row[0]) if row else None

        return await self._run(read)

    async def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        def write() -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)", (key, value, self._expiry(ttl))
            )
            self._after_write()

        await self._run(write)

    async def put_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        def write() -> bool:
            now = time.time()
            cursor = self._db.execute(
                "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value, expires = excluded.expires "
                "WHERE kv.expires IS NOT NULL AND kv.expires <= ?",
                (key, value, self._expiry(ttl), now),
            )
            self._after_write()
            return cursor.rowcount == 1

        return await self._run(write)

    async def delete(self, key: str) -> None:
        await self._run(lambda: self._db.execute("DELETE FROM kv WHERE key = ?", (key,)) and None)

    async def delete_if(self, key: str, value: bytes) -> bool:
        def write() -> bool:
            cursor = self._db.execute(
                "DELETE FROM kv WHERE key = ? AND value = ? AND (expires IS NULL OR expires > ?)",
                (key, value, time.time()),
            )
            return cursor.rowcount == 1

        return await self._run(write)

    def _incr(self, key: str, amount: int, ttl: float | None, now: float) -> int:
        """Inside a transaction: read-modify-write must not interleave."""
        row = self._db.execute(
            "SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)", (key, now)
        ).fetchone()
        if row is None:
            value = amount
            self._db.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                (key, str(value).encode(), self._expiry(ttl)),
            )
        else:
            value = int(bytes(row[0])) + amount
            self._db.execute("UPDATE kv SET value = ? WHERE key = ?", (str(value).encode(), key))
        return value

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        def write() -> int:
            with self._db:  # one transaction
                self._db.execute("BEGIN IMMEDIATE")
                return self._incr(key, amount, ttl, time.time())

        return await self._run(write)

    async def write_all(self, writes: Sequence[Write]) -> None:
        """All of ``writes`` or none, in one transaction with the calls that arrive while a commit runs
        (:mod:`wave.store.grouped`): one transaction per container request (~60 µs of SQLite) cost ~600 µs
        of the store thread's time under load, most of it waiting for the GIL between statements."""
        if writes:
            await self._group.write(writes)

    async def _commit_batch(self, batch: list[Sequence[Write]]) -> list[BaseException | None]:
        return await each_alone(batch, lambda writes: self._run(functools.partial(self._transaction, writes)),
                                Exception)

    def _transaction(self, writes: Sequence[Write]) -> None:
        """In the store's thread: one transaction, one statement per kind of write (puts, then counters, then
        increments; a store call never mixes kinds on one key) — not one per write, for the same GIL hand-offs."""
        now = time.time()
        puts = [(op.key, op.value, op.ttl) for op in writes if isinstance(op, Put)]
        fields = [(op.key, op.field, op.amount) for op in writes if isinstance(op, HIncr)]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for part in _parts(puts):
                self._db.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES "
                                 + ",".join(["(?, ?, ?)"] * len(part)),
                                 [v for key, value, ttl in part for v in (key, value, self._expiry(ttl))])
            for counters in _parts(fields):
                self._db.execute("INSERT INTO counters (key, field, value) VALUES "
                                 + ",".join(["(?, ?, ?)"] * len(counters))
                                 + " ON CONFLICT (key, field) DO UPDATE SET value = value + excluded.value",
                                 [v for row in counters for v in row])
            for op in writes:
                if isinstance(op, Incr):
                    self._incr(op.key, op.amount, op.ttl, now)
        self._after_write()

    async def hincr(self, key: str, field: str, amount: int = 1) -> None:
        await self._run(
            lambda: self._db.execute(
                "INSERT INTO counters (key, field, value) VALUES (?, ?, ?) "
                "ON CONFLICT (key, field) DO UPDATE SET value = value + excluded.value",
                (key, field, amount),
            )
            and None
        )

    async def hgetall(self, key: str) -> dict[str, int]:
        def read() -> dict[str, int]:
            rows = self._db.execute("SELECT field, value FROM counters WHERE key = ?", (key,)).fetchall()
            return {field: int(value) for field, value in rows}

        return await self._run(read)

    async def ping(self) -> None:
        await self._run(lambda: self._db.execute("SELECT 1").fetchone() and None)

    async def close(self) -> None:
        await self._run(self._db.close)
        if self.revisions is not None:
            self.revisions.close()
        await asyncio.to_thread(self._executor.shutdown, wait=True)  # joining the thread blocks: not on the loop
