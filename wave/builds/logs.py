"""Build logs: collected line by line from a launcher, stored in object storage under
``builds/<build_id>.log`` in chunks (storage appends are costly on S3), bounded in size."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wave.storage.base import ObjectStorage

FLUSH_INTERVAL = 2.0  # seconds between appends while a build runs: other replicas see progress
FLUSH_BYTES = 256 << 10
MAX_STORED_BYTES = 4 << 20  # beyond this only the tail is kept: errors are at the end
TAIL_LINES = 200
MAX_LINE = 16 << 10


def log_key(build_id: str) -> str:
    return f"builds/{build_id}.log"


class BuildLog:
    """A :class:`~wave.builds.launchers.base.LogSink` writing to storage, keeping the tail in memory."""

    def __init__(self, storage: ObjectStorage, build_id: str) -> None:
        self._storage = storage
        self._key = log_key(build_id)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._stored = 0
        self._omitted = 0
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._last_flush = time.monotonic()

    async def write(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + " […]"
        self._tail.append(line)
        data = (line + "\n").encode("utf-8", "replace")
        if self._stored + self._pending_bytes + len(data) > MAX_STORED_BYTES:
            self._omitted += len(data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES or time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            await self.flush()

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        chunk = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        await self._storage.append(self._key, chunk)
        self._stored += len(chunk)

    async def close(self) -> None:
        """Flush what is left; when the log was cut, append its last lines after a marker."""
        if self._omitted:
            self._pending.append(f"[… {self._omitted} bytes of log omitted; the last lines follow …]\n".encode())
            self._pending += [(line + "\n").encode("utf-8", "replace") for line in self._tail]
            self._omitted = 0
        await self.flush()

    def text(self) -> bytes:
        """What is not yet stored (for a reader asking while the build runs on this replica)."""
        return b"".join(self._pending)

    def tail(self, lines: int) -> list[str]:
        return list(self._tail)[-lines:] if lines > 0 else []
