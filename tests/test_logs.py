"""Logs let an operator follow a token without being able to pull with it."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
from typing import Any

import pytest
from aiohttp import web

from wave.edge import Edge
from wave.logs import MALFORMED_BURST, JsonFormatter, install_redaction
from wave.prometheus import OpsMetrics
from wave.redact import MAX_LINE, redact_path, redact_text

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("path", [
    f"/v2/wt/{TOKEN}/library/busybox/manifests/latest",
    f"/container-token/{TOKEN}",
    f"/v1alpha2/container/{TOKEN}/status",
])
def test_every_route_that_carries_a_token_is_logged_with_its_first_8_characters(path: str) -> None:
    shown = redact_path(path)
    assert TOKEN not in shown and TOKEN[:8] + "…" in shown


def test_digests_and_other_paths_are_left_alone() -> None:
    digest = "sha256:" + "a" * 64
    path = f"/v2/wt/{TOKEN}/library/busybox/blobs/{digest}"
    assert redact_path(path).endswith(digest)
    assert redact_path("/v1alpha1/builds/0123456789abcdef_1/status") == "/v1alpha1/builds/0123456789abcdef_1/status"


async def test_unhandled_errors_log_the_path_without_the_token(aiohttp_client: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application()
    app.add_routes(Edge((), OpsMetrics()).routes([web.get("/container-token/{token}", broken)]))
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR):
        response = await client.get(f"/container-token/{TOKEN}")
    assert response.status == 500 and "a bug" not in await response.text()
    assert "unhandled error" in caplog.text and TOKEN not in caplog.text


def test_json_format_writes_one_object_a_line_with_the_request_fields() -> None:
    record = logging.LogRecord("wave.access", logging.INFO, __file__, 1, "%s %s", ("GET", "/v2/"), None)
    record.http = {"client": "203.0.113.7", "method": "GET", "path": "/v2/", "status": 200, "ms": 0.4}
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "GET /v2/" and entry["level"] == "INFO" and entry["logger"] == "wave.access"
    assert entry["http"]["status"] == 200 and entry["time"].endswith("+00:00")
    assert "\n" not in line


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_request_lines_are_written_in_batches_in_the_log_format(fmt: str) -> None:
    import io

    from wave.logs import AccessLines

    stream = io.StringIO()
    lines = AccessLines(logging.StreamHandler(stream), fmt, worker="2")
    lines.add("203.0.113.7", "GET", "/v2/", 200, 0.00042)  # seconds
    lines.add("203.0.113.8", "HEAD", f"/v2/wt/{TOKEN}/x/manifests/latest", 404, 0.001)
    assert stream.getvalue() == ""  # not yet: one write for the batch
    lines.flush()
    written = stream.getvalue().splitlines()
    assert len(written) == 2
    if fmt == "json":
        entry = json.loads(written[0])
        assert entry["logger"] == "wave.access" and entry["worker"] == "2" and entry["http"]["status"] == 200
        assert entry["message"] == "203.0.113.7 GET /v2/ 200 0.4ms"
    else:
        assert written[0].endswith(" worker-2 INFO wave.access 203.0.113.7 GET /v2/ 200 0.4ms")
        assert written[1].endswith(f"HEAD /v2/wt/{TOKEN[:8]}…/x/manifests/latest 404 1.0ms")  # redacted


# --- what a hostile client can make wave log ---------------------------------------------------------

SECRET_BASIC = base64.b64encode(b"metrics-admin:correct-horse-battery").decode()


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("request_bytes", [
    # an oversized Authorization header carrying a real credential
    b"GET /v1alpha2/metrics/pulls HTTP/1.1\r\nHost: w\r\nAuthorization: Basic " + SECRET_BASIC.encode()
    + b"=" * 0 + b"A" * 9000 + b"\r\n\r\n",
    # an oversized URL with a token in it
    f"GET /v2/wt/{TOKEN}/library/busybox/manifests/".encode() + b"a" * 9000 + b" HTTP/1.1\r\nHost: w\r\n\r\n",
    # malformed request lines with a token in them
    f"GET /v2/wt/{TOKEN}/x/manifests/latest HTTP/1.1 trailing\r\nHost: w\r\n\r\n".encode(),
    f"GET /v2/wt/{TOKEN}/x/manifests/latest\x00 HTTP/1.1\r\nHost: w\r\n\r\n".encode(),
    f"G\x01T /v2/wt/{TOKEN} HTTP/1.1\r\nHost: w\r\n\r\n".encode(),
    # oversized cookies
    b"GET / HTTP/1.1\r\nHost: w\r\nCookie: session=" + SECRET_BASIC.encode() + b"s" * 9000 + b"\r\n\r\n",
], ids=["authorization", "long-url", "bad-version", "nul-in-path", "bad-method", "cookie"])
def test_a_malformed_request_is_one_warning_line_without_its_bytes(wave: Any, request_bytes: bytes,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    install_redaction().malformed.window_start = -1e9  # a fresh rate-limit window for this test
    with caplog.at_level(logging.DEBUG):
        answer = _raw(wave.port, request_bytes)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer[:20]
    text = caplog.text
    assert "Traceback" not in text and TOKEN not in text and SECRET_BASIC[:16] not in text
    assert "correct-horse" not in text and "sssssssss" not in text
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(lines) <= 1 and all(r.levelno == logging.WARNING and "malformed request" in r.getMessage()
                                   for r in lines)


def test_a_flood_of_malformed_requests_is_logged_at_a_bounded_rate(wave: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    install_redaction().malformed.window_start = -1e9
    with caplog.at_level(logging.DEBUG):
        for _ in range(MALFORMED_BURST * 3):
            _raw(wave.port, b"GET / HTTP/1.1 junk\r\n\r\n")
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(lines) == MALFORMED_BURST


def test_redact_text_removes_credentials_and_shortens_tokens() -> None:
    text = redact_text(f"Authorization: Basic {SECRET_BASIC} cookie=abc; token {TOKEN} digest sha256:{'a' * 64} "
                       f"Bearer eyJhbGciOi.x.y and /v2/wt/{TOKEN}/busybox" + "z" * 5000)
    assert SECRET_BASIC not in text and "abc;" not in text and TOKEN not in text and "eyJhbGciOi" not in text
    assert f"sha256:{'a' * 64}" in text and TOKEN[:8] + "…" in text
    assert len(text) < MAX_LINE + 100


async def test_an_unhandled_error_answers_an_error_id_and_logs_it_on_one_line(
        aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError(f"a bug near Authorization: Basic {SECRET_BASIC}")

    app = web.Application()
    app.add_routes(Edge((), OpsMetrics()).routes([web.get(path, broken) for path in ("/broken", "/v2/broken")]))
    client = await aiohttp_client(app)
    for path in ("/broken", "/v2/broken"):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            response = await client.get(path)
        assert response.status == 500 and response.content_type == "application/json"
        body = await response.json()
        assert list(body) == (["errors"] if path.startswith("/v2") else ["message"])
        error_id = re.search(r"error id ([0-9a-f]{12})", await response.text())
        assert error_id is not None
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and error_id[1] in errors[0].getMessage() and errors[0].exc_info is None
        assert "\n" not in errors[0].getMessage() and SECRET_BASIC not in caplog.text


def test_the_service_log_of_wave_serve_greps_clean_after_hostile_requests(tmp_path: Any) -> None:
    """The production path (``wave serve``: its handler's filter, batched request lines) with the requests that
    used to leak: an oversized Authorization with a real credential, a long URL and bad request lines with a
    token, a valid request carrying credentials and cookies, a body whose encoding does not decode."""
    import hashlib
    import os
    import subprocess
    import sys
    import time

    from tests.support.registry import free_port, http_request

    port = free_port()
    digest = hashlib.sha256(b"correct-horse-battery").hexdigest()
    env = {**os.environ, "WAVE_STATE_DIR": str(tmp_path), "WAVE_PORT": str(port), "WAVE_LOG_LEVEL": "DEBUG",
           "WAVE_METRICS_ACCOUNTS": f"metrics-admin:{digest}"}
    proc = subprocess.Popen([sys.executable, "-m", "wave", "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:  # until it answers (it has no other way to say it is up)
            try:
                http_request("GET", f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "wave did not start"
                time.sleep(0.05)
        secret, token = SECRET_BASIC.encode(), TOKEN.encode()
        for request_bytes in (
            b"GET /v1alpha2/metrics/pulls HTTP/1.1\r\nHost: w\r\nAuthorization: Basic " + secret + b"A" * 9000
            + b"\r\n\r\n",
            b"GET /v2/wt/" + token + b"/x/manifests/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: w\r\n\r\n",
            b"GET /v2/wt/" + token + b"/x/manifests/latest HTTP/1.1 junk\r\nHost: w\r\n\r\n",
            b"GET /v2/wt/" + token + b"/library/busybox/manifests/latest HTTP/1.1\r\nHost: w\r\nAuthorization: "
            b"Basic " + secret + b"\r\nCookie: session=" + secret + b"\r\nConnection: close\r\n\r\n",
            b"GET /v1alpha2/metrics/pulls HTTP/1.1\r\nHost: w\r\nAuthorization: Basic " + secret
            + b"\r\nConnection: close\r\n\r\n",
            b"POST /v1alpha2/container HTTP/1.1\r\nHost: w\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n"
            b"Connection: close\r\n\r\n0123456789",
        ):
            assert _raw(port, request_bytes).startswith(b"HTTP/1.")
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert "malformed request from" in output and "GET /v1alpha2/metrics/pulls" in output  # it did log
    assert "Traceback" not in output and TOKEN not in output
    assert SECRET_BASIC[:16] not in output and "correct-horse" not in output
    assert "session=" + SECRET_BASIC[:8] not in output
