"""The one way wave answers with JSON."""

from __future__ import annotations

import orjson
from aiohttp import web


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, content_type="application/json", headers=headers)
