"""Build status and logs: ``/v1alpha1/builds/{id}/status`` and ``…/logs``."""

from __future__ import annotations

import re

from aiohttp import web

from wave import keys
from wave.errors import BadRequest, NotFound
from wave.responses import json_response

_BUILD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _build_id(request: web.Request) -> str:
    build_id = request.match_info["build_id"]
    if not _BUILD_ID_RE.fullmatch(build_id):
        raise BadRequest(f"invalid build id {build_id!r}")
    return build_id


async def status(request: web.Request) -> web.Response:
    build_id = _build_id(request)
    found = await request.app[keys.BUILDS].status(build_id)
    if found is None:
        raise NotFound(f"unknown build {build_id}")
    return json_response(found.to_json())


async def logs(request: web.Request) -> web.Response:
    build_id = _build_id(request)
    text = await request.app[keys.BUILDS].logs(build_id)
    if text is None:
        raise NotFound(f"no log for build {build_id}")
    return web.Response(body=text, content_type="text/plain", charset="utf-8")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1alpha1/builds/{build_id}/status", status),
        web.get("/v1alpha1/builds/{build_id}/logs", logs),
    ]
