"""`wave serve` as a user starts it: from the console script and with python -m wave."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support.redis_url import database
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


@pytest.mark.parametrize("store", ["embedded", "redis", "uvloop"])
def test_workers_share_one_port_and_say_who_answered(tmp_path: Path, store: str) -> None:
    """``wave serve --workers 2``: both processes answer on one port (SO_REUSEPORT), on the embedded store and
    on Redis; /metrics and the log lines name the worker; SIGTERM stops them all."""
    port = free_port()
    env = {**os.environ, "WAVE_STATE_DIR": str(tmp_path), "WAVE_PORT": str(port)}
    env.pop("WAVE_WORKER", None)
    if store == "redis":
        client = redis.Redis.from_url(database(12))
        try:
            client.flushdb()
        except redis.ConnectionError:
            pytest.skip("no Redis for the tests (apt-get install redis-server)")
        finally:
            client.close()
        env["WAVE_REDIS_URL"] = database(12)
    if store == "uvloop":
        env["WAVE_EVENT_LOOP"] = "uvloop"
    log = tmp_path / "wave.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wave", "serve", "--workers", "2"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while seen != {"1", "2"}:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"workers seen: {seen}\n{log.read_text()}"
            try:
                text = http_request("GET", f"http://127.0.0.1:{port}/metrics").body.decode()
            except OSError:
                time.sleep(0.05)
                continue
            seen |= set(re.findall(r'wave_info\{[^}]*worker="(\d)"', text))
        answer = http_request("POST", f"http://127.0.0.1:{port}/v1alpha2/container",
                              {"Content-Type": "application/json"}, body=b"{}")
        assert answer.status == 400  # the API answers through either worker
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    text = log.read_text()
    assert "worker-1 INFO" in text and "worker-2 INFO" in text
    assert "uvloop loop" in text if store == "uvloop" else "asyncio loop" in text
