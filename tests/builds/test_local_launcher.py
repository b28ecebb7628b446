"""The local launcher's plumbing: builder choice, plain-http registries, credentials file, docker path."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

from wave.builds.launchers.base import BuildJob
from wave.builds.launchers.local import LocalLauncher
from wave.builds.launchers.registries import (
    plain_http_registries,
    referenced_registries,
    write_auth_file,
    write_registries_conf,
)
from wave.config import load_settings


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def write(self, line: str) -> None:
        self.lines.append(line.rstrip("\n"))


async def test_sif_and_a_missing_builder_are_explained(tmp_path: Path) -> None:
    launcher = LocalLauncher(load_settings(environ={}, state_dir=tmp_path), which=lambda _: None)
    assert "singularity" in (await launcher.unavailable("sif") or "")
    assert "buildah, which is not installed" in (await launcher.unavailable("docker") or "")
    assert await LocalLauncher(load_settings(environ={}, state_dir=tmp_path),
                               which=lambda t: f"/usr/bin/{t}").unavailable("docker") is None


def test_builder_choice(tmp_path: Path) -> None:
    def tool(**kw: Any) -> str:
        return LocalLauncher(load_settings(environ={}, state_dir=tmp_path, **kw)).tool

    assert tool() == "buildah"
    assert tool(docker_host="unix:///run/docker.sock") == "docker"
    assert tool(local_builder="docker") == "docker"
    assert tool(local_builder="buildah", docker_host="unix:///run/docker.sock") == "buildah"


def test_only_loopback_and_insecure_registries_speak_plain_http(tmp_path: Path) -> None:
    dockerfile = ("FROM --platform=linux/amd64 127.0.0.1:5000/library/busybox:latest AS base\n"
                  "FROM base\nFROM ubuntu:22.04\nCOPY --from=localhost:5001/tools:1 /x /x\n")
    hosts = referenced_registries(dockerfile, "registry.internal:5000/wave/builds:abc")
    assert hosts == {"127.0.0.1:5000", "docker.io", "localhost:5001", "registry.internal:5000"}
    plain = plain_http_registries(hosts, ["registry.internal:5000"])
    assert plain == ["127.0.0.1:5000", "localhost:5001", "registry.internal:5000"]
    conf = write_registries_conf(tmp_path / "registries.conf", plain).read_text()
    assert conf.count("insecure = true") == 3 and "docker.io\"\ninsecure" not in conf


def test_auth_file_is_private_and_complete(tmp_path: Path) -> None:
    path = write_auth_file(tmp_path / "config.json", {"docker.io": ("me", "pw:1"), "127.0.0.1:5000": ("u", "p")})
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    auths = json.loads(path.read_text())["auths"]
    assert base64.b64decode(auths["docker.io"]["auth"]) == b"me:pw:1"
    assert auths["https://index.docker.io/v1/"] == auths["docker.io"]
    assert base64.b64decode(auths["127.0.0.1:5000"]["auth"]) == b"u:p"
    assert write_auth_file(tmp_path / "none.json", {}) is None


async def test_docker_builder_gets_host_and_config_dir_never_credentials_on_its_command_line(
        tmp_path: Path, monkeypatch: Any) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "calls.txt"
    fake = bindir / "docker"
    fake.write_text(f'#!/bin/sh\necho "$DOCKER_HOST $*" >> {record}\n'
                    'cat "$2/config.json" >/dev/null || exit 9\necho "step output"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    settings = load_settings(environ={}, state_dir=tmp_path, docker_host="tcp://127.0.0.1:2375",
                             registry_credentials={"registry.example.com": ("u", "secret-pw")})
    workdir = tmp_path / "build"
    (workdir / "context").mkdir(parents=True)
    (workdir / "Dockerfile").write_text("FROM alpine\n")
    job = BuildJob("abc_1", workdir, "Dockerfile", "registry.example.com/wave/builds:abc", "linux/arm64",
                   "docker", 30.0)
    log = Lines()
    result = await LocalLauncher(settings).launch(job, log)
    assert result.succeeded, log.lines
    calls = record.read_text().splitlines()
    config_dir = workdir / "docker"
    assert calls[0] == (f"tcp://127.0.0.1:2375 --config {config_dir} build --pull --platform linux/arm64 "
                        f"-f {workdir}/Dockerfile -t {job.target_image} {workdir}/context")
    assert calls[1] == f"tcp://127.0.0.1:2375 --config {config_dir} push {job.target_image}"
    assert calls[2].endswith(f"rmi -f {job.target_image}")
    assert "secret-pw" not in record.read_text() and "step output" in log.lines


async def test_builder_exit_status_and_timeout_become_reasons(tmp_path: Path, monkeypatch: Any) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "buildah"
    fake.write_text('#!/bin/sh\ncase "$*" in *" bud "*) [ -f "$STOP" ] && exec sleep 60; exit 4;; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("STOP", str(tmp_path / "stop"))
    workdir = tmp_path / "build"
    (workdir / "context").mkdir(parents=True)
    (workdir / "Dockerfile").write_text("FROM alpine\n")
    launcher = LocalLauncher(load_settings(environ={}, state_dir=tmp_path))
    job = BuildJob("abc_1", workdir, "Dockerfile", "127.0.0.1:5000/w:abc", "linux/amd64", "docker", 0.5)
    result = await launcher.launch(job, Lines())
    assert (result.succeeded, result.reason) == (False, "buildah build failed with exit status 4")
    (tmp_path / "stop").touch()
    result = await launcher.launch(job, Lines())
    assert (result.succeeded, result.reason) == (False,
                                                 "the build timed out after 0.5s (during build; WAVE_BUILD_TIMEOUT)")
