"""Logs let an operator follow a token without being able to pull with it."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp import web

from wave.logs import JsonFormatter
from wave.middlewares import error_middleware, render_api
from wave.redact import redact_path

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

    app = web.Application(middlewares=[error_middleware(render_api)])
    app.router.add_get("/container-token/{token}", broken)
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
    lines.add("203.0.113.7", "GET", "/v2/", 200, 0.42)
    lines.add("203.0.113.8", "HEAD", "/v2/x", 404, 1.0)
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
        assert written[1].endswith("HEAD /v2/x 404 1.0ms")
