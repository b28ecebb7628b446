"""What a local build's RUN step can reach: not a service on the host's loopback, not the host's processes.

A real buildah build (``FROM scratch`` with a static busybox, so no registry is involved) probes a loopback
canary that counts connections, and counts the processes it sees in /proc. The chroot isolation is run too,
to show the probe works: there, the step reaches the canary and sees the host's processes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import missing_tools
from wave.builds.launchers.base import BuildJob
from wave.builds.launchers.local import LocalLauncher
from wave.builds.launchers.process import run_logged
from wave.config import load_settings

pytestmark = pytest.mark.skipif(bool(missing_tools("buildah", "runc")),
                                reason=missing_tools("buildah", "runc") or "")
BUSYBOX = shutil.which("busybox")

PROBE = """FROM scratch
COPY busybox /bin/busybox
COPY probe.sh /probe.sh
RUN ["/bin/busybox", "sh", "/probe.sh"]
"""
PROBE_SCRIPT = """B=/bin/busybox
$B mkdir -p /proc
echo processes: $($B ls /proc | $B grep -c '^[0-9]')
if echo probe | $B timeout 5 $B nc 127.0.0.1 {port}; then echo canary: reached; else echo canary: unreachable; fi
"""


class Canary:
    """A loopback listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def write(self, line: str) -> None:
        self.lines.append(line)


async def probe(tmp_path: Path, port: int, isolation: str) -> str:
    if BUSYBOX is None:
        pytest.skip("a static busybox is missing (apt-get install busybox-static)")
    workdir = tmp_path / f"job-{isolation}"
    (workdir / "context").mkdir(parents=True)
    shutil.copy(BUSYBOX, workdir / "context" / "busybox")
    (workdir / "context" / "probe.sh").write_text(PROBE_SCRIPT.format(port=port))
    (workdir / "Dockerfile").write_text(PROBE)
    settings = load_settings(environ={}, state_dir=tmp_path / "state", build_isolation=isolation)
    launcher = LocalLauncher(settings)
    job = BuildJob("probe_1", workdir, "Dockerfile", f"localhost/wave-probe-{isolation}:1", "linux/amd64",
                   "docker", 300.0)
    steps, cleanup = launcher._buildah(job, None)
    sink = Lines()
    status = await run_logged(dict(steps)["build"], sink, 300.0, dict(os.environ))
    await run_logged(cleanup, Lines(), 60.0, dict(os.environ))
    log = "".join(sink.lines)
    assert status == 0, log
    return log


def processes(log: str) -> int:
    match = re.search(r"^processes: ([0-9]+)$", log, re.M)  # the step's output, not its echoed command
    assert match is not None, log
    return int(match[1])


def canary_line(log: str) -> str:
    match = re.search(r"^canary: (reached|unreachable)$", log, re.M)
    assert match is not None, log
    return match[1]


async def test_a_run_step_cannot_reach_the_host_loopback_nor_see_its_processes(tmp_path: Path,
                                                                               canary: Canary) -> None:
    log = await probe(tmp_path, canary.port, "oci")
    assert canary_line(log) == "unreachable" and canary.connections == 0
    host_processes = sum(name.isdigit() for name in os.listdir("/proc"))
    assert processes(log) < 10 < host_processes


async def test_chroot_isolation_shares_the_host_network_which_the_probe_detects(tmp_path: Path,
                                                                              canary: Canary) -> None:
    log = await probe(tmp_path, canary.port, "chroot")
    assert canary_line(log) == "reached" and canary.connections == 1


def test_the_default_isolation_is_oci(tmp_path: Any) -> None:
    argv = LocalLauncher(load_settings(environ={}, state_dir=tmp_path)).isolation()
    assert argv[:2] == ["--isolation", "oci"] and "--network" in argv and "--pid" in argv
