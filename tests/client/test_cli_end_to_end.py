"""The ``wave`` client as a CI job runs it: a real ``wave`` command against a real wave and registry.

Each command runs as its own process (the console script), and what it prints is used the way the README
says: ``podman run "$(wave request …)"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.clients import Podman, missing_tools, skopeo_copy
from tests.support.images import DOCKER_MANIFEST, OCI_INDEX
from tests.support.registry import Registry, free_port, http_request
from tests.support.wave import WaveServer

WAVE = Path(sys.executable).with_name("wave")


def wave_cli(*args: str, server: WaveServer | str | None = None, timeout: float = 300,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVE_", "TOWER_"))}
    if server is not None:
        env["WAVE_SERVER"] = server if isinstance(server, str) else server.url
    return subprocess.run([str(WAVE), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def _scripts(root: Path) -> Path:
    (root / "opt" / "ci").mkdir(parents=True)
    (root / "file").write_text("hello from my CI job\n")
    (root / "opt" / "ci" / "run.sh").write_text("#!/bin/sh\necho \"running with $STAGE\"\n")
    (root / "opt" / "ci" / "run.sh").chmod(0o755)
    return root


def _layers_of(wave: WaveServer, target: str) -> list[dict[str, Any]]:
    token = target.split("/wt/", 1)[1].split("/", 1)[0]
    described = wave.request("GET", f"/container-token/{token}").json()
    assert isinstance(described, dict)
    layers = described["request"]["containerConfig"]["layers"]
    assert isinstance(layers, list)
    return layers


@pytest.mark.clients
def test_request_with_a_directory_layer_runs_in_podman(registry: Registry, wave: WaveServer, podman: Podman,
                                                       tmp_path: Path) -> None:
    scripts = _scripts(tmp_path / "scripts")
    done = wave_cli("request", registry.ref("library/busybox:latest"), "--layer", str(scripts),
                    "--env", "STAGE=test", "--cmd", "/opt/ci/run.sh", server=wave)
    assert done.returncode == 0, done.stderr
    target = done.stdout.strip()
    assert target.startswith(f"{wave.settings.public_authority}/wt/") and "\n" not in target
    assert podman.run(target, "cat", "/file") == "hello from my CI job\n"
    assert podman.run(target).strip() == "running with test"  # the mode survived: the script runs


def test_the_same_directory_twice_gives_the_same_digests(registry: Registry, wave: WaveServer,
                                                         tmp_path: Path) -> None:
    scripts = _scripts(tmp_path / "scripts")
    targets = []
    for _ in range(2):
        os.utime(scripts / "file")  # a fresh checkout: new mtimes, same content
        done = wave_cli("request", registry.ref("library/busybox:latest"), "--layer", str(scripts), server=wave)
        assert done.returncode == 0, done.stderr
        targets.append(done.stdout.strip())
    first, second = (_layers_of(wave, t) for t in targets)
    assert targets[0] != targets[1]  # two tokens…
    assert first == second and len(first) == 1  # …with one layer, byte for byte
    assert first[0]["gzipDigest"].startswith("sha256:") and first[0]["tarDigest"] != first[0]["gzipDigest"]


def test_request_output_formats_and_config(registry: Registry, wave: WaveServer) -> None:
    done = wave_cli("request", registry.ref("library/busybox:latest"), "--env", "A=1", "--entrypoint",
                    '["/bin/sh", "-c"]', "--cmd", "echo $A", "--workdir", "/tmp", "-o", "json", server=wave)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["containerImage"] == registry.ref("library/busybox:latest") and answer["containerToken"]
    token = answer["containerToken"]
    config = wave.request("GET", f"/container-token/{token}").json()["request"]["containerConfig"]  # type: ignore[index]
    assert config == {"entrypoint": ["/bin/sh", "-c"], "cmd": ["echo", "$A"], "env": ["A=1"], "workingDir": "/tmp"}
    as_yaml = wave_cli("request", registry.ref("library/busybox:latest"), "-o", "yaml", server=wave)
    assert yaml.safe_load(as_yaml.stdout)["targetImage"].startswith(wave.settings.public_authority)


def test_inspect_a_plain_image_and_an_index(registry: Registry, wave: WaveServer) -> None:
    plain = wave_cli("inspect", registry.ref("library/busybox:latest"), "-o", "json", server=wave)
    assert plain.returncode == 0, plain.stderr
    container = json.loads(plain.stdout)["container"]
    assert container["mediaType"] == DOCKER_MANIFEST and len(container["manifest"]["layers"]) == 2
    assert container["config"]["architecture"] == "amd64" and container["config"]["config"]["Cmd"] == ["sh"]

    index = wave_cli("inspect", registry.ref("library/busybox:multi-oci"), "-o", "yaml", server=wave)
    assert index.returncode == 0, index.stderr
    container = yaml.safe_load(index.stdout)["container"]
    assert container["mediaType"] == OCI_INDEX and "config" not in container
    assert {m["platform"]["architecture"] for m in container["index"]["manifests"]} == {"amd64", "arm64"}

    arm = wave_cli("inspect", registry.ref("library/busybox:multi-oci"), "--platform", "linux/arm64",
                   "-o", "json", server=wave)
    chosen = json.loads(arm.stdout)["container"]["platformManifest"]
    assert chosen["config"]["architecture"] == "arm64"


def test_errors_are_one_line_with_an_exit_code(registry: Registry, wave: WaveServer, tmp_path: Path) -> None:
    missing = wave_cli("request", registry.ref("library/nothing:here"), server=wave)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    assert missing.stderr.startswith("wave: wave answered 400: ")

    unreachable = wave_cli("status", "abc123", server=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3 and "cannot reach wave" in unreachable.stderr
    assert unreachable.stderr.count("\n") == 1

    bad_layer = wave_cli("request", "busybox", "--layer", str(tmp_path / "nope"), server=wave)
    assert bad_layer.returncode == 2 and "no such directory or file" in bad_layer.stderr
    bad_env = wave_cli("request", "busybox", "--env", "NOEQUALS", server=wave)
    assert bad_env.returncode == 2 and "KEY=value" in bad_env.stderr
    no_recipe = wave_cli("build", server=wave)
    assert no_recipe.returncode == 2 and "one of the arguments" in no_recipe.stderr


def test_help_has_examples() -> None:
    for command in ([], ["request"], ["build"], ["inspect"], ["status"]):
        done = wave_cli(*command, "--help")
        assert done.returncode == 0 and "examples:" in done.stdout, command


def test_status_of_a_plain_request(registry: Registry, wave: WaveServer) -> None:
    done = wave_cli("request", registry.ref("library/busybox:latest"), "-o", "json", server=wave)
    token = json.loads(done.stdout)["containerToken"]
    status = wave_cli("status", token, server=wave)
    assert status.returncode == 0 and "status: DONE" in status.stdout and "succeeded: true" in status.stdout


# --- builds -------------------------------------------------------------------------------------------

needs_buildah = pytest.mark.skipif(bool(missing_tools("buildah")), reason=missing_tools("buildah") or "")


@pytest.fixture
def build_wave(wave_factory: Any, registry: Registry) -> WaveServer:
    server: WaveServer = wave_factory(build_repo=f"{registry.host}/wave/cli-builds", build_timeout=300)
    return server


@needs_buildah
def test_build_await_of_a_dockerfile_succeeds(registry: Registry, build_wave: WaveServer, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {registry.ref('library/busybox:latest')}\n"
                          f"RUN echo built-by-wave-cli-{tmp_path.name} > /built.txt\n")
    done = wave_cli("build", "-f", str(dockerfile), "--await", "5m", server=build_wave)
    assert done.returncode == 0, done.stderr
    target = done.stdout.strip()
    assert "/wt/" in target and "\n" not in target
    assert "succeeded" in done.stderr and "build " in done.stderr  # the progress and the outcome, on stderr
    copied = skopeo_copy(target, tmp_path / "copy")
    assert copied.returncode == 0


@needs_buildah
def test_build_await_of_a_broken_dockerfile_exits_with_the_reason(registry: Registry, build_wave: WaveServer,
                                                                  tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {registry.ref('library/busybox:latest')}\nRUN echo broken-{tmp_path.name} && exit 3\n")
    done = wave_cli("build", "-f", str(dockerfile), "--await", "5m", server=build_wave)
    assert done.returncode == 1 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("wave: build ") and " failed: " in last, done.stderr
    assert "exited with status 3" in last and "`RUN echo broken-" in last, done.stderr
    assert "(log: wave logs " in last
    build_id = last.split()[2]
    log = wave_cli("logs", build_id, server=build_wave)
    assert log.returncode == 0 and f"broken-{tmp_path.name}" in log.stdout


@needs_buildah
def test_a_base_image_that_cannot_be_pulled_is_the_reason(build_wave: WaveServer, tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}/library/busybox:missing"  # nothing listens there
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {closed}\nRUN true\n")
    done = wave_cli("build", "-f", str(dockerfile), "--await", "5m", server=build_wave)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert f"failed: could not pull base image {closed}: " in last and "connection refused" in last, done.stderr


@needs_buildah
def test_build_with_a_cache_repository_fills_it(registry: Registry, build_wave: WaveServer, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {registry.ref('library/busybox:latest')}\nRUN echo cache-{tmp_path.name} > /c\n")
    cache = f"{registry.host}/wave/cli-cache-{tmp_path.name.lower().replace('_', '-')}"
    done = wave_cli("build", "-f", str(dockerfile), "--cache-repo", cache, "--await", "5m", server=build_wave)
    assert done.returncode == 0, done.stderr
    tags = http_request("GET", f"http://{registry.host}/v2/{cache.split('/', 1)[1]}/tags/list").json()
    assert isinstance(tags, dict) and tags["tags"], "buildah pushed its layer cache to the cache repository"


def test_the_platform_token_comes_from_the_environment(registry: Registry, wave: WaveServer) -> None:
    env_token = {**os.environ, "TOWER_ACCESS_TOKEN": "a-platform-token",
                 "TOWER_API_ENDPOINT": "http://127.0.0.1:1/api", "WAVE_SERVER": wave.url}
    done = subprocess.run([str(WAVE), "request", registry.ref("library/busybox:latest")], capture_output=True,
                          text=True, timeout=60, env=env_token)
    # wave was given the token and endpoint: it asks for a pairing with that Platform, which it does not have
    assert done.returncode == 1 and "http://127.0.0.1:1/api" in done.stderr, done.stderr
    bad = wave_cli("request", "busybox", "--tower-workspace-id", "abc", server=wave)
    assert bad.returncode == 2 and "must be a number" in bad.stderr
