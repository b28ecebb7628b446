"""Real builds with buildah against a real registry: build, push, pull, run.

The registry is the session's lab registry (tests.support) holding library/busybox; builds push to
``wave/builds`` in it. ``image_exists`` is wave's own registry client, as the app wires it.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.builds.conftest import CondaOpts, Packages, make_request
from tests.support.clients import Podman, missing_tools, skopeo_inspect
from tests.support.registry import Registry
from wave.builds.launchers.base import BuildJob, LaunchResult, LogSink
from wave.builds.launchers.local import LocalLauncher
from wave.builds.service import BuildService
from wave.config import Settings
from wave.oci.models import ContainerConfig, Layer
from wave.oci.reference import parse_reference
from wave.registry.client import RegistryClient
from wave.storage.local import LocalStorage
from wave.store.embedded import EmbeddedStore

pytestmark = pytest.mark.skipif(bool(missing_tools("buildah")), reason=missing_tools("buildah") or "")

RUN_DOCKERFILE = """FROM {host}/library/busybox:latest
ENV GREETING="hello from buildah" WAVE_LAB=1
RUN echo "$GREETING" > /greeting.txt && mkdir -p /opt/app && echo built > /opt/app/marker
CMD ["cat", "/greeting.txt"]
"""
# A stand-in for mambaorg/micromamba: its micromamba records what it was asked to install.
FAKE_MAMBA_DOCKERFILE = r"""FROM {host}/library/busybox:latest
ENV MAMBA_USER=mambauser MAMBA_ROOT_PREFIX=/opt/conda
RUN printf '%s\n' '#!/bin/sh' \
      'mkdir -p "$MAMBA_ROOT_PREFIX/conda-meta"' \
      'echo "micromamba $*" >> "$MAMBA_ROOT_PREFIX/conda-meta/calls.log"' \
      'while [ $# -gt 0 ]; do [ "$1" = -f ] && cp "$2" "$MAMBA_ROOT_PREFIX/conda-meta/env.yml"; shift; done' \
      > /bin/micromamba \
    && chmod 755 /bin/micromamba \
    && echo 'mambauser:x:57439:57439::/home/mambauser:/bin/sh' >> /etc/passwd \
    && echo 'mambauser:x:57439:' >> /etc/group \
    && mkdir -p /opt/conda && chown mambauser:mambauser /opt/conda
USER mambauser
"""


class CountingLauncher(LocalLauncher):
    """The real local launcher, counting how often the service calls it."""

    calls = 0

    async def launch(self, job: BuildJob, log_sink: LogSink) -> LaunchResult:
        self.calls += 1
        return await super().launch(job, log_sink)


@pytest.fixture
async def make_builds(tmp_path: Path, store: EmbeddedStore,
                      storage: LocalStorage) -> AsyncIterator[Callable[..., tuple[BuildService, CountingLauncher]]]:
    sessions: list[aiohttp.ClientSession] = []
    services: list[BuildService] = []

    def make(registry: Registry, **overrides: Any) -> tuple[BuildService, CountingLauncher]:
        from wave.config import load_settings

        settings: Settings = load_settings(environ={}, state_dir=tmp_path / "state",
                                           build_repo=f"{registry.host}/wave/builds", **overrides)
        session = aiohttp.ClientSession()
        sessions.append(session)
        client = RegistryClient(session, settings)

        async def image_exists(ref: str) -> bool:
            return await client.exists(parse_reference(ref))

        launcher = CountingLauncher(settings)
        service = BuildService(settings, store, storage, launcher, image_exists)
        services.append(service)
        return service, launcher

    yield make
    for service in services:
        await service.close()
    for session in sessions:
        await session.close()


async def test_dockerfile_build_coalesces_pushes_runs_and_is_cached(
        registry: Registry, make_builds: Any, podman: Podman) -> None:
    builds, launcher = make_builds(registry)
    request = make_request(container_file=RUN_DOCKERFILE.format(host=registry.host))
    tickets = await asyncio.gather(*(builds.submit(request) for _ in range(3)))
    build_id = tickets[0].build_id
    assert build_id is not None and {t.build_id for t in tickets} == {build_id}
    assert not any(t.cached for t in tickets)
    status = await builds.wait(build_id, timeout=120)
    log = (await builds.logs(build_id) or b"").decode()
    assert status.succeeded is True, f"{status.reason}\n{log}"
    assert launcher.calls == 1
    assert "STEP 3/4: RUN" in log or "RUN echo" in log

    target = tickets[0].target_image
    assert target.startswith(f"{registry.host}/wave/builds:")
    config = skopeo_inspect(target, config=True)
    assert "GREETING=hello from buildah" in config["config"]["Env"]
    assert podman.run(target).strip() == "hello from buildah"
    assert podman.run(target, "cat", "/opt/app/marker").strip() == "built"

    again = await builds.submit(request)
    assert again.cached and again.build_id == build_id and launcher.calls == 1


async def test_failing_dockerfile_fails_with_its_log(registry: Registry, make_builds: Any) -> None:
    builds, _ = make_builds(registry)
    dockerfile = f"FROM {registry.host}/library/busybox:latest\nRUN echo about to fail && exit 3\n"
    ticket = await builds.submit(make_request(container_file=dockerfile))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=120)
    assert status.status == "COMPLETED" and status.succeeded is False
    # the cause in one line (the failing step and its status), and where the log is
    assert status.reason == ("buildah build failed: the step `RUN echo about to fail && exit 3` exited with status 3; "
                             f"log: /v1alpha1/builds/{ticket.build_id}/logs")
    tail = await builds.log_tail(ticket.build_id, 20)
    assert "about to fail" in tail and "exit status 3" in tail


async def test_build_past_its_timeout_is_stopped_and_says_why(registry: Registry, make_builds: Any) -> None:
    builds, _ = make_builds(registry, build_timeout=3.0)
    dockerfile = f"FROM {registry.host}/library/busybox:latest\nRUN sleep 60\n"
    ticket = await builds.submit(make_request(container_file=dockerfile))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=60)
    assert status.succeeded is False and "timed out after 3s" in (status.reason or "")
    assert status.duration is not None and status.duration < 30


async def test_conda_build_runs_micromamba_with_the_generated_environment(
        registry: Registry, make_builds: Any, podman: Podman) -> None:
    builds, _ = make_builds(registry)
    base = await builds.submit(make_request(container_file=FAKE_MAMBA_DOCKERFILE.format(host=registry.host)))
    assert base.build_id is not None
    assert (await builds.wait(base.build_id, timeout=120)).succeeded, await builds.logs(base.build_id)

    packages = Packages("CONDA", entries=("salmon=1.10.1", "bwa", "pip:multiqc"), channels=("bioconda",),
                        conda_opts=CondaOpts(mamba_image=base.target_image, base_packages="procps-ng"))
    ticket = await builds.submit(make_request(packages=packages))
    assert ticket.build_id is not None and ":salmon-1.10.1_bwa_multiqc--" in ticket.target_image
    status = await builds.wait(ticket.build_id, timeout=120)
    assert status.succeeded, await builds.logs(ticket.build_id)
    env_yml = podman.run(ticket.target_image, "cat", "/opt/conda/conda-meta/env.yml")
    assert env_yml == "channels:\n- bioconda\ndependencies:\n- salmon=1.10.1\n- bwa\n- pip\n- pip:\n  - multiqc\n"
    calls = podman.run(ticket.target_image, "cat", "/opt/conda/conda-meta/calls.log").splitlines()
    assert calls == ["micromamba install -y -n base -f /tmp/conda.yml",
                     "micromamba install -y -n base procps-ng", "micromamba clean -a -y"]
    assert podman.run(ticket.target_image, "id", "-u").strip() == "0"  # USER root after the install


def _layer(files: dict[str, bytes]) -> tuple[bytes, Layer]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    blob = gzip.compress(raw.getvalue(), mtime=0)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    tar_digest = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return blob, Layer("data:" + base64.b64encode(blob).decode(), digest, len(blob), tar_digest)


async def test_freeze_bakes_config_and_layers_into_a_real_image(
        registry: Registry, make_builds: Any, podman: Podman, aiohttp_server: Any) -> None:
    _, inline = _layer({"opt/inline.txt": b"from an inline layer\n"})
    remote_blob, remote = _layer({"opt/remote.txt": b"from an http layer\n"})

    async def serve_layer(_: web.Request) -> web.Response:
        return web.Response(body=remote_blob)

    app = web.Application()
    app.router.add_get("/layer.tar.gz", serve_layer)
    server = await aiohttp_server(app)
    remote = Layer(str(server.make_url("/layer.tar.gz")), remote.gzip_digest, remote.gzip_size, remote.tar_digest)
    config = ContainerConfig(env=("FROZEN=yes", "PRICE=$5", "my.setting-1=a \"b\""), working_dir="/opt",
                             cmd=("cat", "inline.txt"), layers=(inline, remote))
    builds, _ = make_builds(registry, layer_allowed_hosts=("127.0.0.0/8",))  # the layer server is on loopback
    ticket = await builds.submit(make_request(freeze=True, container_image=f"{registry.host}/library/busybox:latest",
                                              container_config=config))
    assert ticket.freeze and ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=120)
    assert status.succeeded, await builds.logs(ticket.build_id)
    assert podman.run(ticket.target_image).strip() == "from an inline layer"
    assert podman.run(ticket.target_image, "cat", "/opt/remote.txt").strip() == "from an http layer"
    env = skopeo_inspect(ticket.target_image, config=True)["config"]["Env"]
    assert "FROZEN=yes" in env and "PRICE=$5" in env and 'my.setting-1=a "b"' in env


async def test_credentials_reach_buildah_through_an_auth_file(basic_registry: Registry, make_builds: Any) -> None:
    from tests.support.fixtures import REG_PASSWORD, REG_USER

    builds, _ = make_builds(basic_registry, registry_credentials={basic_registry.host: (REG_USER, REG_PASSWORD)})
    dockerfile = f"FROM {basic_registry.host}/library/busybox:latest\nRUN echo private > /private.txt\n"
    ticket = await builds.submit(make_request(container_file=dockerfile))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=120)
    log = (await builds.logs(ticket.build_id) or b"").decode()
    assert status.succeeded, log
    assert REG_PASSWORD not in log
    assert skopeo_inspect(ticket.target_image, creds=basic_registry.creds)["Name"].endswith("/wave/builds")
