"""Fixtures shared by every test: real registries and clients (tests.support) and a real wave server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import blockbuster_ctx

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


@pytest.fixture(autouse=True)
def no_blocking_calls_on_the_loop() -> Iterator[None]:
    """Fail any test in which wave's own code blocks the event loop (file, socket, sleep, subprocess calls made
    on the loop's thread), whether the loop is the test's or a wave server's: those stall every request."""
    with blockbuster_ctx("wave"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (``CI=true``) a test skipped for a missing tool or service fails: every skip in this suite is
    one, and .ci/run must install what the tests need. Locally a skip stays a skip, naming the package."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {reason}"
