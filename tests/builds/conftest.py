"""Fixtures for build tests: settings, requests, the real embedded store and local object storage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from wave.config import Settings, load_settings
from wave.model import CondaOpts, Packages, SpackOpts, SubmitRequest
from wave.oci.models import ContainerConfig
from wave.oci.platform import parse_platform
from wave.oci.reference import parse_reference
from wave.storage.local import LocalStorage
from wave.store.embedded import EmbeddedStore

__all__ = ["CondaOpts", "Packages", "SpackOpts", "make_request"]


def make_request(**fields: Any) -> SubmitRequest:
    """A validated request as the API hands it to the build service; only the fields a test cares about."""
    values: dict[str, Any] = {
        "container_image": None,
        "container_file": None,
        "container_config": ContainerConfig(),
        "conda_file": None,
        "spack_file": None,
        "packages": None,
        "platform": "linux/amd64",
        "build_repository": None,
        "cache_repository": None,
        "freeze": False,
        "format": "docker",
    }
    values.update(fields)
    if isinstance(values["container_image"], str):  # as a client writes it; the model holds it parsed
        values["source_image"] = values["container_image"]
        values["container_image"] = parse_reference(values["container_image"])
    values["platform"] = parse_platform(values["platform"])
    return SubmitRequest(**values)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("build_repo", "registry.example.com/wave/builds")
        return load_settings(environ={}, state_dir=tmp_path / "state", **overrides)

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    kv = await EmbeddedStore.open(tmp_path / "wave.db")
    yield kv
    await kv.close()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")
