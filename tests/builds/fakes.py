"""A scripted launcher: the service's behaviour (coalescing, failures, timeouts, waiting) is tested without
a builder, each outcome decided by the test."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from wave.builds.launchers.base import BuildJob, LaunchResult, LogSink


@dataclass
class ScriptedLauncher:
    name: str = "scripted"
    result: LaunchResult = field(default_factory=lambda: LaunchResult(True))
    error: Exception | None = None
    hang: bool = False  # ignore the timeout (a broken launcher)
    why_not: str | None = None
    existing: set[str] | None = None  # a successful build adds its target here (the "registry")
    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    jobs: list[BuildJob] = field(default_factory=list)
    cancelled: int = 0

    async def unavailable(self, format: str) -> str | None:
        return self.why_not

    async def launch(self, job: BuildJob, log: LogSink) -> LaunchResult:
        self.jobs.append(job)
        self.started.set()
        await log.write(f"building {job.target_image}")
        try:
            if self.hang:
                await asyncio.Event().wait()
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        await log.write("step 2/2: done" if self.result.succeeded else "error: something broke")
        if self.result.succeeded and self.existing is not None:
            self.existing.add(job.target_image.removeprefix("oras://"))
        return self.result

    async def close(self) -> None:
        return None


class Registry:
    """What ``image_exists`` answers: a set of references."""

    def __init__(self) -> None:
        self.images: set[str] = set()
        self.asked: list[str] = []

    async def exists(self, ref: str) -> bool:
        self.asked.append(ref)
        return ref in self.images
