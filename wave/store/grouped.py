"""Group commit: ``write_all`` calls that arrive while one commit is in flight are committed together next.

Both stores pay per commit far more than per write: the embedded store a trip to its SQLite thread (sqlite3
hands the GIL back and forth on every statement, and while the loop is busy each hand-off waits), Redis a
round trip and a script call. Under load many container requests wait at once; committing them together
costs one of those for all of them, and with no load a call is committed at once, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from wave.store.writes import Write

# Commits a batch of calls (each call's writes) and returns, per call, None or the error that call gets. A
# store commits the whole batch as one and, when that fails, each call alone: one call's failure is its own.
CommitBatch = Callable[[list[Sequence[Write]]], Awaitable[list[BaseException | None]]]


class GroupCommit:
    def __init__(self, commit: CommitBatch) -> None:
        self._commit = commit
        self._queued: list[tuple[Sequence[Write], asyncio.Future[None]]] = []
        self._committer: asyncio.Future[None] | None = None

    async def write(self, writes: Sequence[Write]) -> None:
        """Every one of ``writes`` or none, committed when this returns; a caller that is cancelled while it
        waits still has its writes committed (as a single commit would)."""
        done = asyncio.get_running_loop().create_future()
        self._queued.append((writes, done))
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_queued())
        await done

    async def _commit_queued(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    failures = await self._commit([writes for writes, _ in batch])
                except Exception as exc:  # the store could not commit at all (unreachable): every call fails
                    failures = [exc] * len(batch)
                for (_, done), failure in zip(batch, failures, strict=True):
                    if done.done():
                        continue
                    if failure is None:
                        done.set_result(None)
                    else:
                        done.set_exception(failure)
        finally:
            self._committer = None


async def each_alone(batch: list[Sequence[Write]], commit_one: Callable[[Sequence[Write]], Awaitable[None]],
                     retryable: type[BaseException] | tuple[type[BaseException], ...]
                     ) -> list[BaseException | None]:
    """The batch as one commit; when that fails with ``retryable``, each call in its own commit."""
    try:
        await commit_one([op for writes in batch for op in writes])
        return [None] * len(batch)
    except retryable:
        if len(batch) == 1:
            raise
    failures: list[BaseException | None] = []
    for writes in batch:
        try:
            await commit_one(writes)
            failures.append(None)
        except retryable as exc:
            failures.append(exc)
    return failures
