"""Fixtures shared by every test: real registries and clients (tests.support) and a real wave server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.storage.s3server import *  # noqa: F403
from tests.support.fixtures import *  # noqa: F403
from tests.support.wave import WaveServer, start_wave


@pytest.fixture
def wave_factory(tmp_path: Path) -> Iterator[Any]:
    """Start wave servers with given settings; all are stopped after the test."""
    servers: list[WaveServer] = []

    def start(state_dir: Path | None = None, **overrides: Any) -> WaveServer:
        server = start_wave(state_dir or tmp_path / f"wave-{len(servers)}", **overrides)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def wave(wave_factory: Any) -> WaveServer:
    """A wave on its embedded defaults, on a free loopback port."""
    return wave_factory()
