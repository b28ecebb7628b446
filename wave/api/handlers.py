"""Control API handlers: parse, call a service, render JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import orjson
from aiohttp import web

from wave import __version__, keys
from wave.api.answers import ContainerAnswer
from wave.api.schema import parse_submit
from wave.containers import SubmitResult
from wave.errors import ApiError, BadRequest
from wave.responses import json_response
from wave.tokens import iso_time
from wave.units import format_size


async def read_json(request: web.Request) -> object:
    """The body as JSON whatever its Content-Type says: ``curl -d`` sends JSON as a form, and users use it.
    A body over the limit is a 413 that names the limit and its setting; one that does not arrive within the
    body timeout a 408; one that does not decode (its Content-Encoding) a 400."""
    timeout = request.app[keys.SETTINGS].client_body_timeout
    try:
        async with asyncio.timeout(timeout):  # a body trickled byte by byte must not hold a handler for ever
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = format_size(request.app[keys.SETTINGS].max_request_size)
        raise ApiError(f"the request body is larger than the limit of {limit} (WAVE_MAX_REQUEST_SIZE); "
                       "put big layers at an http(s) URL instead of inline", status=413) from None
    except TimeoutError:
        raise ApiError(f"the request body did not arrive within {timeout:g}s", status=408,
                       headers={"Connection": "close"}) from None
    except web.RequestPayloadError as exc:  # a Content-Encoding that does not decode, a truncated chunk
        raise BadRequest(f"the request body cannot be read: {exc}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


async def _submit(request: web.Request, *, v2: bool) -> web.Response:
    settings = request.app[keys.SETTINGS]
    submit = parse_submit(await read_json(request), v2=v2, max_inline=settings.max_inline_layer_size,
                          client_ip=request.get(keys.CLIENT_IP, request.remote))
    return json_response(submitted(await request.app[keys.CONTAINERS].submit(submit)))


def submitted(result: SubmitResult) -> dict[str, Any]:
    """A submit's answer as the contract spells it (the model /openapi.json publishes); absent values are left
    out."""
    answer = ContainerAnswer(
        container_token=result.token,
        target_image=result.target_image,
        expiration=iso_time(result.expires) if result.expires is not None else None,
        container_image=result.container_image,
        build_id=result.build_id,
        cached=result.cached,
        freeze=result.freeze,
    )
    body: dict[str, Any] = msgspec.to_builtins(answer)
    return body


async def container_token(request: web.Request) -> web.Response:
    return await _submit(request, v2=False)


async def container_v2(request: web.Request) -> web.Response:
    return await _submit(request, v2=True)


async def service_info(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    return json_response({"serviceInfo": {"version": __version__, "commitId": settings.commit_id}})
