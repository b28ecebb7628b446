"""A real S3 endpoint on loopback for tests: ``moto_server`` runs as a subprocess, ``moto_s3`` gives each
test an empty bucket on it, ``aws_test_env`` keeps real AWS out of reach.

Reusable from any test package: ``from tests.storage.s3server import *`` in its conftest (or
``pytest_plugins = ["tests.storage.s3server"]`` in the top one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import boto3
import pytest

__all__ = ["REGION", "S3Endpoint", "aws_test_env", "moto_s3", "moto_server"]

REGION = "us-east-1"
START_DEADLINE = 30.0
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "wave-test-key", "AWS_SECRET_ACCESS_KEY": "wave-test-secret"}


class S3Endpoint(NamedTuple):
    endpoint_url: str
    bucket: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _start(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto on a free port and wait, with a deadline, until it answers. A port taken between choosing
    and binding makes the server exit at once: try another port."""
    env = {**os.environ, **DUMMY_CREDENTIALS}
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(url):
                return proc, url
            time.sleep(0.1)
        _stop(proc)
    raise RuntimeError(f"moto_server did not start; its log:\n{log_path.read_text(errors='replace')[-4000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of one moto S3 server shared by the whole test session."""
    with tempfile.TemporaryDirectory(prefix="wave-moto-") as tmp:
        proc, url = _start(Path(tmp) / "moto.log")
        try:
            yield url
        finally:
            _stop(proc)


@pytest.fixture
def aws_test_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Dummy AWS credentials in the environment, and the developer's own AWS configuration (profiles, shared
    files) and the instance metadata service out of reach: a test never talks to real AWS."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return dict(DUMMY_CREDENTIALS)


@pytest.fixture
def moto_s3(moto_server: str, aws_test_env: dict[str, str]) -> S3Endpoint:
    """``(endpoint_url, bucket)``: a fresh, empty bucket on the shared moto server, with ``aws_test_env``."""
    bucket = f"wave-test-{uuid.uuid4().hex[:16]}"
    client = boto3.session.Session().client("s3", endpoint_url=moto_server, region_name=REGION)
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        client.close()
    return S3Endpoint(moto_server, bucket)
