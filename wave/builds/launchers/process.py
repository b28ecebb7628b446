"""Run a builder command with its output streamed to the build log, bounded by a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

from wave.builds.launchers.base import LogSink

LINE_LIMIT = 1 << 20  # longest output line read whole (progress output can be long)


async def run_logged(argv: Sequence[str], log: LogSink, time_limit: float,
                     env: Mapping[str, str] | None = None) -> int | None:
    """The exit status, or None when ``time_limit`` passed (the process group is then killed). Cancelling
    the caller kills the process group too: a builder never outlives its build."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        limit=LINE_LIMIT,
    )
    try:
        async with asyncio.timeout(max(time_limit, 0.001)):
            assert proc.stdout is not None
            async for raw in proc.stdout:
                await log.write(raw.decode("utf-8", "replace"))
            return await proc.wait()
    except TimeoutError:
        return None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
