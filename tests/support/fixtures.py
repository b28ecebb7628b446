"""pytest fixtures for real upstream registries and clients.

Use: `from tests.support.fixtures import *` in a conftest.

Why: tests of the proxy need real upstreams (open, basic auth, Bearer token auth) holding real images, and
real clients. The lab layout is built once per session and pushed once into each registry, which lives for
the whole session (each starts lazily, only when a test asks for it). A fixture skips only when a Debian
tool is missing, and says which package provides it; anything else that goes wrong is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import Containerd, Dockerd, Podman, missing_tools
from tests.support.images import IMAGE_TOOLS, build_lab_layout, push_lab_images, static_busybox_missing
from tests.support.registry import Kind, Registry, start_registry

__all__ = [
    "REG_PASSWORD",
    "REG_USER",
    "basic_registry",
    "bearer_registry",
    "containerd",
    "dockerd",
    "lab_layout",
    "podman",
    "registry",
]

REG_USER = "wave"
REG_PASSWORD = "s3cret-pass"


def _require(*tools: str) -> None:
    reason = missing_tools(*tools)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OCI layout with every lab image (small ones only), built once per session."""
    _require(*IMAGE_TOOLS)
    reason = static_busybox_missing()
    if reason:
        pytest.skip(reason)
    return build_lab_layout(tmp_path_factory.mktemp("lab-layout"))


def _registry_with_images(
    tmp_path_factory: pytest.TempPathFactory, layout: Path, kind: Kind
) -> Iterator[Registry]:
    tools = ["docker-registry", "skopeo", "jq"] + (["htpasswd"] if kind == "basic" else [])
    tools += ["openssl"] if kind == "bearer" else []
    _require(*tools)
    creds = (None, None) if kind == "open" else (REG_USER, REG_PASSWORD)
    reg = start_registry(tmp_path_factory.mktemp(f"registry-{kind}"), kind, *creds)
    try:
        push_lab_images(layout, reg)
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, lab_layout: Path) -> Iterator[Registry]:
    """Open registry (no auth) holding every lab image (tests.support.images.LAB_REFS)."""
    yield from _registry_with_images(tmp_path_factory, lab_layout, "open")


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory, lab_layout: Path) -> Iterator[Registry]:
    """Registry with HTTP basic auth (REG_USER/REG_PASSWORD) holding every lab image."""
    yield from _registry_with_images(tmp_path_factory, lab_layout, "basic")


@pytest.fixture(scope="session")
def bearer_registry(tmp_path_factory: pytest.TempPathFactory, lab_layout: Path) -> Iterator[Registry]:
    """Registry with Docker-style Bearer token auth, like Docker Hub: anonymous pull everywhere except
    private/*, REG_USER/REG_PASSWORD for everything; holds every lab image incl. private/busybox."""
    yield from _registry_with_images(tmp_path_factory, lab_layout, "bearer")


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """podman with fresh, private storage under this test's tmp_path."""
    _require("podman", "runc", "conmon")
    client = Podman(tmp_path / "podman")
    try:
        yield client
    finally:
        client.cleanup()


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    """A private containerd (fresh content store) for `ctr images pull --plain-http`."""
    _require("containerd", "ctr")
    with Containerd(tmp_path / "containerd") as engine:
        yield engine


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private dockerd for `docker pull` (loopback registries are plain http to docker by default)."""
    if not Dockerd.available():
        pytest.skip("dockerd missing (apt-get install docker.io)")
    engine = Dockerd(tmp_path_factory.mktemp("dockerd")).start()
    yield engine
    engine.stop()
