"""`wave serve` as a user starts it: from the console script and with python -m wave."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.registry import free_port, http_request

ROOT = Path(__file__).resolve().parents[1]


def _serve(argv: list[str], env: dict[str, str], port: int, cwd: Path = ROOT) -> dict:  # type: ignore[type-arg]
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                return http_request("GET", f"http://127.0.0.1:{port}/service-info").json()  # type: ignore[return-value]
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "wave did not start"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_console_script_serves_from_any_directory(tmp_path: Path) -> None:
    port = free_port()
    script = Path(sys.executable).with_name("wave")
    env = {**os.environ, "WAVE_STATE_DIR": str(tmp_path)}
    assert script.exists(), "the project is installed with its wave console script"
    # Started outside the repository, where the standard library's own `wave` module would win.
    answer = _serve([str(script), "serve", "--port", str(port)], env, port, cwd=tmp_path)
    assert answer["serviceInfo"]["version"]


def test_python_m_wave_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WAVE_STATE_DIR": str(tmp_path), "WAVE_PORT": str(port)}
    assert "serviceInfo" in _serve([sys.executable, "-m", "wave", "serve"], env, port)


def test_bad_configuration_stops_start_up_with_a_message(tmp_path: Path) -> None:
    env = {**os.environ, "WAVE_STATE_DIR": str(tmp_path), "WAVE_TOKEN_TTL": "forever"}
    done = subprocess.run([sys.executable, "-m", "wave", "serve"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "WAVE_TOKEN_TTL" in done.stderr and "Traceback" not in done.stderr
