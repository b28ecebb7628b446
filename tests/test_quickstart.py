"""The README's quick start, run as a new user runs it: ``make lab``, wave, then the commands the lab prints.

The lab's commands are run as printed (only ``.venv/bin/wave`` is this interpreter's console script), on a
clean state directory, and the README must show the same commands (for the default port 5000).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import missing_tools
from tests.support.images import static_busybox_missing
from tests.support.registry import free_port, http_request

ROOT = Path(__file__).resolve().parents[1]
WAVE = Path(sys.executable).with_name("wave")
README = (ROOT / "README.md").read_text()


def _lab(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.support.labctl", action], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def lab_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    reason = missing_tools("docker-registry", "skopeo", "umoci", "jq", "openssl") or static_busybox_missing()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVE_", "TOWER_"))}
    env.update(LAB_DIR=str(tmp_path / "lab"), LAB_PORT=str(free_port()), TMPDIR=str(tmp_path))
    yield env
    _lab("stop", env)


@pytest.fixture
def wave_serve(tmp_path: Path, lab_env: dict[str, str]) -> Iterator[str]:
    """``wave serve`` as ``make run`` starts it, on a clean state directory."""
    port = free_port()
    env = {**lab_env, "WAVE_STATE_DIR": str(tmp_path / "state"), "WAVE_PORT": str(port)}
    proc = subprocess.Popen([str(WAVE), "serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_request("GET", f"{url}/health", timeout=1).status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _try_lines(printed: str) -> list[str]:
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("try "))
    commands = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        commands.append(line.strip())
    return commands


def test_the_quick_start_works_on_a_clean_state(lab_env: dict[str, str], wave_serve: str, tmp_path: Path) -> None:
    started = _lab("start", lab_env)
    assert started.returncode == 0, started.stderr
    host = f"127.0.0.1:{lab_env['LAB_PORT']}"
    assert f"lab registry on http://{host}" in started.stdout
    commands = _try_lines(started.stdout)
    assert len(commands) >= 3 and all(host in c for c in commands)

    env = {**lab_env, "WAVE_SERVER": wave_serve}
    outputs = []
    for command in commands:
        shell = command.replace(".venv/bin/wave", str(WAVE))
        done = subprocess.run(["bash", "-c", shell], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        outputs.append(done.stdout)
    assert re.fullmatch(r"localhost:\d+/wt/[0-9a-f]+/library/busybox:latest\n", outputs[0])
    copied = tmp_path / "wave-busybox"
    assert (copied / "manifest.json").exists() and len(list(copied.iterdir())) >= 4  # manifest, config, layers
    assert "mediaType: application/vnd.oci.image.index.v1+json" in outputs[2]

    again = _lab("start", lab_env)  # idempotent: a second `make lab` finds it running
    assert again.returncode == 0 and f"lab registry on http://{host}" in again.stdout
    assert _lab("stop", lab_env).stdout.strip() == "lab registry stopped"
    with pytest.raises(OSError):
        http_request("GET", f"http://{host}/v2/", timeout=1)

    for command in commands:  # the README shows these very commands, for the default port
        assert command.replace(host, "127.0.0.1:5000") in README, command


def test_the_readme_has_no_dead_relative_links() -> None:
    assert "../shared" not in README
    for target in re.findall(r"\]\((?!https?://|#)([^)#]+)", README):
        assert (ROOT / target).exists(), target
