"""Builds on this machine: buildah (RUN steps in their own network and PID namespaces through runc, vfs storage
under the state directory) or a docker daemon when one is configured. Builds OCI images only: no singularity here.

A failed build's reason is the cause in one line (``could not pull base image X: …``), read from the
builder's own ``Error:`` line, since an exit status alone tells a user nothing. With a cache repository,
buildah builds with ``--layers`` and pushes and reuses the layer cache there (``--cache-to``/``--cache-from``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wave.builds.launchers.base import BuildJob, LaunchResult, LogSink
from wave.builds.launchers.process import run_logged
from wave.builds.launchers.registries import (
    plain_http_registries,
    referenced_registries,
    registry_host,
    write_auth_file,
    write_registries_conf,
)
from wave.units import format_duration

if TYPE_CHECKING:
    from wave.config import Settings

log = logging.getLogger("wave.builds")

_ERROR_LINE = re.compile(r"^(?:Error|ERROR|error)(?:\[\d+\])?:?\s+(.+)$")
_PULL_FAILED = re.compile(r"(?:initializing source docker://|pull access denied for |pulling image )(\S+?)[:,] (.+)")
_SHORT_NAME = re.compile(r'short-name "(\S+)" (.+)')
_STEP_FAILED = re.compile(r'building at STEP "(.+?)": (?:while running runtime: )?exit status (\d+)')
_PUSH_FAILED = re.compile(r"(?:pushing image|writing blob|trying to reuse blob).*?(?:to |docker://)(\S+?): (.+)")
MAX_REASON = 400  # characters of a builder's error line kept in a reason (one line in a status answer)


def _one_line(text: str) -> str:
    """The builder's message on one line, bounded, without a repeated last part ("manifest unknown: manifest
    unknown")."""
    parts = [p for p in re.sub(r"\s+", " ", text).strip().split(": ") if p]
    while len(parts) > 1 and parts[-1] == parts[-2]:
        parts.pop()
    joined = ": ".join(parts)
    return joined if len(joined) <= MAX_REASON else joined[: MAX_REASON - 1] + "…"


def failure_reason(tool: str, phase: str, status: int, error_line: str | None) -> str:
    """Why a builder step failed, in a sentence: the base image that could not be pulled, the push that
    failed, or the builder's last error line, with the exit status."""
    if error_line:
        for pattern, what in ((_PULL_FAILED, "could not pull base image"), (_SHORT_NAME, "could not pull base image"),
                              (_PUSH_FAILED, "could not push")):
            found = pattern.search(error_line)
            if found and (phase == "build" or what == "could not push"):
                return f"{what} {found[1].strip(chr(34))}: {_one_line(found[2])}"
        step = _STEP_FAILED.search(error_line)
        if step:
            return f"{tool} {phase} failed: the step `{_one_line(step[1])}` exited with status {step[2]}"
        return f"{tool} {phase} failed with exit status {status}: {_one_line(error_line)}"
    return f"{tool} {phase} failed with exit status {status}"


class _ErrorCapture:
    """Passes every line to the build log and keeps the builder's last error line."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink
        self.last_error: str | None = None

    async def write(self, line: str) -> None:
        found = _ERROR_LINE.match(line.strip())
        if found:
            self.last_error = found[1]
        await self._sink.write(line)


class LocalLauncher:
    name = "local"

    def __init__(self, settings: Settings, which: Callable[[str], str | None] = shutil.which) -> None:
        self._settings = settings
        self._which = which
        use_docker = settings.local_builder == "docker" or (settings.local_builder == "auto"
                                                              and bool(settings.docker_host))
        self.tool = "docker" if use_docker else "buildah"

    async def unavailable(self, format: str) -> str | None:
        if format == "sif":
            return ("format sif needs singularity, which is not installed with wave's local builder: "
                    "Singularity images are built by the kubernetes launcher (WAVE_BUILD_LAUNCHER=kubernetes)")
        if not await asyncio.to_thread(self._which, self.tool):  # it reads the file system: not on the loop
            return (f"container builds need {self.tool}, which is not installed on this wave service "
                    "(install buildah, or set WAVE_LOCAL_BUILDER=docker and WAVE_DOCKER_HOST)")
        return None

    async def launch(self, job: BuildJob, log_sink: LogSink) -> LaunchResult:
        why_not = await self.unavailable(job.format)
        if why_not:
            return LaunchResult(False, why_not)
        deadline = time.monotonic() + job.timeout
        env, auth = await asyncio.to_thread(self._prepare, job)
        if self.tool == "docker":
            steps, cleanup = self._docker(job, docker_dir_of(job), env)
        else:
            steps, cleanup = self._buildah(job, auth)
        try:
            for phase, argv in steps:
                if phase == "push":
                    log.info("build %s pushing %s", job.build_id, job.target_image)
                await log_sink.write(f"wave: {phase} {job.target_image} with {self.tool}")
                capture = _ErrorCapture(log_sink)
                status = await run_logged(argv, capture, deadline - time.monotonic(), env)
                if status is None:
                    return LaunchResult(False, f"the build timed out after {format_duration(job.timeout)} "
                                               f"(during {phase}; WAVE_BUILD_TIMEOUT)")
                if status != 0:
                    return LaunchResult(False, failure_reason(self.tool, phase, status, capture.last_error))
            return LaunchResult(True)
        finally:
            await run_logged(cleanup, _Discard(), 60.0, env)

    def _prepare(self, job: BuildJob) -> tuple[dict[str, str], Path | None]:
        """The builder's environment: plain-http registries and the credentials file (None when none was
        written). Runs in a thread: it reads and writes files."""
        env = dict(os.environ)
        build_file = (job.workdir / job.build_file).read_text()
        hosts = referenced_registries(build_file, job.target_image)
        cache_host = registry_host(job.cache_repository) if job.cache_repository else None
        if cache_host:
            hosts.add(cache_host)
        conf = write_registries_conf(job.workdir / "registries.conf",
                                     plain_http_registries(hosts, self._settings.insecure_registries))
        env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
        docker_dir = docker_dir_of(job)
        docker_dir.mkdir(mode=0o700, exist_ok=True)
        auth = docker_dir / "config.json"
        write_auth_file(auth, {**self._settings.registry_credentials, **job.credentials})
        return env, auth if auth.exists() else None

    def _buildah_base(self) -> list[str]:
        root = Path(self._settings.state_dir) / "buildah"
        return ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]

    def isolation(self) -> list[str]:
        """How RUN steps are isolated. ``oci`` (the default; runc): their own network namespace (a private
        bridge with outbound NAT: no host loopback), PID, IPC and UTS namespaces, so a step cannot reach a
        service listening on the host's loopback nor see the host's processes. ``chroot`` shares the host's
        network and PID namespace: only for machines without an OCI runtime, where builds are trusted."""
        if self._settings.build_isolation == "chroot":
            return ["--isolation", "chroot"]
        return ["--isolation", "oci", "--network", "private", "--pid", "private", "--ipc", "private",
                "--uts", "private"]

    def _buildah(self, job: BuildJob, auth: Path | None) -> tuple[list[tuple[str, list[str]]], list[str]]:
        base = self._buildah_base()
        authfile = ["--authfile", str(auth)] if auth else []
        cache = []
        if job.cache_repository:  # intermediate layers cached in (and reused from) the cache repository
            cache = ["--layers", "--cache-to", job.cache_repository, "--cache-from", job.cache_repository]
        # --pull=always: the storage is shared by every build, and a base image one user's credentials pulled
        # must not serve another user's build from the local store (each build proves its own access)
        bud = [*base, "bud", *self.isolation(), "--pull=always", "--platform", job.platform, *authfile, *cache,
               "-f", str(job.workdir / job.build_file), "-t", job.target_image, str(job.context_dir)]
        push = [*base, "push", *authfile, job.target_image]
        return [("build", bud), ("push", push)], [*base, "rmi", "-f", job.target_image]

    def _docker(self, job: BuildJob, config_dir: Path,
                env: dict[str, str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
        if self._settings.docker_host:
            env["DOCKER_HOST"] = self._settings.docker_host
        base = ["docker", "--config", str(config_dir)]
        build = [*base, "build", "--pull", "--platform", job.platform,
                 "-f", str(job.workdir / job.build_file), "-t", job.target_image, str(job.context_dir)]
        return [("build", build), ("push", [*base, "push", job.target_image])], [*base, "rmi", "-f",
                                                                                 job.target_image]

    async def close(self) -> None:
        return None


def docker_dir_of(job: BuildJob) -> Path:
    """Where a build's docker client configuration (its credentials) lives."""
    return job.workdir / "docker"


class _Discard:
    async def write(self, line: str) -> None:
        return None
