"""Builds on this machine: buildah (rootless-friendly: chroot isolation, vfs storage under the state
directory) or a docker daemon when one is configured. Builds OCI images only: no singularity here."""

from __future__ import annotations

import asyncio
import logging
import os
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
    write_auth_file,
    write_registries_conf,
)

if TYPE_CHECKING:
    from wave.config import Settings

log = logging.getLogger("wave.builds")


class LocalLauncher:
    name = "local"

    def __init__(self, settings: Settings, which: Callable[[str], str | None] = shutil.which) -> None:
        self._settings = settings
        self._which = which
        use_docker = settings.local_builder == "docker" or (settings.local_builder == "auto"
                                                              and bool(settings.docker_host))
        self.tool = "docker" if use_docker else "buildah"

    def unavailable(self, format: str) -> str | None:
        if format == "sif":
            return ("format sif needs singularity, which is not installed with wave's local builder: "
                    "Singularity images are built by the kubernetes launcher (WAVE_BUILD_LAUNCHER=kubernetes)")
        if not self._which(self.tool):
            return (f"container builds need {self.tool}, which is not installed on this wave service "
                    "(install buildah, or set WAVE_LOCAL_BUILDER=docker and WAVE_DOCKER_HOST)")
        return None

    async def launch(self, job: BuildJob, log_sink: LogSink) -> LaunchResult:
        why_not = self.unavailable(job.format)
        if why_not:
            return LaunchResult(False, why_not)
        deadline = time.monotonic() + job.timeout
        env, auth = await asyncio.to_thread(self._prepare, job)
        if self.tool == "docker":
            steps, cleanup = self._docker(job, auth.parent, env)
        else:
            steps, cleanup = self._buildah(job, auth if auth.exists() else None)
        try:
            for phase, argv in steps:
                if phase == "push":
                    log.info("build %s pushing %s", job.build_id, job.target_image)
                await log_sink.write(f"wave: {phase} {job.target_image} with {self.tool}")
                status = await run_logged(argv, log_sink, deadline - time.monotonic(), env)
                if status is None:
                    return LaunchResult(False, f"the build timed out after {job.timeout:.0f}s (during {phase})")
                if status != 0:
                    return LaunchResult(False, f"{self.tool} {phase} failed with exit status {status}")
            return LaunchResult(True)
        finally:
            await run_logged(cleanup, _Discard(), 60.0, env)

    def _prepare(self, job: BuildJob) -> tuple[dict[str, str], Path]:
        """The builder's environment: plain-http registries and the credentials file."""
        env = dict(os.environ)
        build_file = (job.workdir / job.build_file).read_text()
        hosts = referenced_registries(build_file, job.target_image)
        conf = write_registries_conf(job.workdir / "registries.conf",
                                     plain_http_registries(hosts, self._settings.insecure_registries))
        env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
        docker_dir = job.workdir / "docker"
        docker_dir.mkdir(mode=0o700, exist_ok=True)
        auth = docker_dir / "config.json"
        write_auth_file(auth, {**self._settings.registry_credentials, **job.credentials})
        return env, auth

    def _buildah_base(self) -> list[str]:
        root = Path(self._settings.state_dir) / "buildah"
        return ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]

    def _buildah(self, job: BuildJob, auth: Path | None) -> tuple[list[tuple[str, list[str]]], list[str]]:
        base = self._buildah_base()
        authfile = ["--authfile", str(auth)] if auth else []
        bud = [*base, "bud", "--isolation", "chroot", "--pull", "--platform", job.platform, *authfile,
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


class _Discard:
    async def write(self, line: str) -> None:
        return None
