"""The one interface every builder sits behind, so the service never knows where a build runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class BuildJob:
    """Everything a launcher needs. ``workdir`` holds the build file (``Dockerfile`` or ``Singularityfile``)
    and ``context/`` (with ``conda.yml`` / ``spack.yaml`` / layer files)."""

    build_id: str
    workdir: Path
    build_file: str  # file name inside workdir
    target_image: str  # oras://… for sif
    platform: str
    format: str  # "docker" | "sif"
    timeout: float  # seconds; the launcher stops the build after it
    cache_repository: str | None = None
    # the requester's own registry credentials by host (from Seqera Platform), over wave's configured ones;
    # launchers hand them to the builder in a file or a Secret, never on a command line
    credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    @property
    def context_dir(self) -> Path:
        return self.workdir / "context"


@dataclass(frozen=True)
class LaunchResult:
    succeeded: bool
    reason: str | None = None  # why it failed, in a sentence a user can act on


class LogSink(Protocol):
    """Where a launcher writes the build's output, line by line (the service stores it)."""

    async def write(self, line: str) -> None: ...


class Launcher(Protocol):
    name: str

    async def unavailable(self, format: str) -> str | None:
        """Why this launcher cannot build ``format`` here (a 400 message at request time), or None."""
        ...

    async def launch(self, job: BuildJob, log: LogSink) -> LaunchResult:
        """Build and push; return the outcome. Must stop the build by ``job.timeout`` and clean up after
        itself when cancelled."""
        ...

    async def close(self) -> None: ...
