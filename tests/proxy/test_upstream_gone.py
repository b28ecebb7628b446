"""Pulls that keep working when the upstream registry has gone away: blobs from the blob cache, manifests
this repository already resolved from the store (with a ``Warning``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import Podman, skopeo_copy
from tests.support.images import push_lab_images
from tests.support.layers import make_layer
from tests.support.registry import Registry, start_registry

HELLO = make_layer({"opt/wave/hello.txt": "hello from an injected layer\n",
                    "opt/wave/bin/greet": "#!/bin/sh\necho \"greetings, $WHO\"\n"})


def augmented(image: str) -> dict[str, Any]:
    return {"containerImage": image,
            "containerConfig": {"env": ["WHO=wave", "PATH=/opt/wave/bin:/usr/bin:/bin"], "cmd": ["greet"],
                                "workingDir": "/opt/wave", "layers": [HELLO.request()]}}


@pytest.fixture
def doomed_registry(tmp_path: Path, lab_layout: Path) -> Iterator[Registry]:
    """A registry of this test's own, which the test stops."""
    registry = start_registry(tmp_path / "doomed-registry")
    try:
        push_lab_images(lab_layout, registry)
        yield registry
    finally:
        registry.stop()


@pytest.mark.clients
def test_a_pull_works_from_the_cache_after_the_registry_went_away(wave_factory: Any, doomed_registry: Registry,
                                                                 tmp_path: Path) -> None:
    wave = wave_factory(blob_cache=str(tmp_path / "blob-cache"), upstream_retries=1,
                        upstream_connect_timeout=2.0)
    plain = wave.submit({"containerImage": doomed_registry.ref("library/busybox:latest")})
    extended = wave.submit(augmented(doomed_registry.ref("library/busybox:oci")))
    skopeo_copy(plain["targetImage"], tmp_path / "before")
    first = Podman(tmp_path / "podman-1")
    try:
        first.pull(extended["targetImage"])
    finally:
        first.cleanup()

    doomed_registry.stop()

    skopeo_copy(plain["targetImage"], tmp_path / "after")  # a new client storage: every blob is fetched again
    assert sorted(p.name for p in (tmp_path / "after").iterdir()) == sorted(
        p.name for p in (tmp_path / "before").iterdir())
    second = Podman(tmp_path / "podman-2")
    try:
        second.pull(extended["targetImage"])
        assert second.run(extended["targetImage"]).strip() == "greetings, wave"
    finally:
        second.cleanup()
