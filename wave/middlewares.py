"""The middlewares every request passes: its client's address, and the rendering of errors.

Errors are rendered by the application that serves the route: the ``/v2`` sub-application answers OCI error
JSON (``{"errors":[{"code","message","detail"}]}``), the control API ``{"message": …}``. Nothing else turns
exceptions into responses, and a client never sees a traceback.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from wave import keys
from wave.addresses import client_address
from wave.errors import ApiError, RegistryError, WaveError
from wave.proxy.cache import API_VERSION
from wave.redact import redact_path, redact_text
from wave.responses import json_response

log = logging.getLogger("wave.errors")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Renderer = Callable[[web.Request, WaveError], web.Response]
_OCI_CODES = {404: "NAME_UNKNOWN", 405: "UNSUPPORTED"}  # aiohttp's own errors on /v2, as the spec names them


def oci_body(code: str, message: str, detail: Any = None) -> bytes:
    return orjson.dumps({"errors": [{"code": code, "message": message, "detail": detail}]})


def render_oci(request: web.Request, exc: WaveError) -> web.Response:
    headers = {**API_VERSION, **exc.headers}
    code = exc.code if isinstance(exc, RegistryError) else "UNAVAILABLE" if exc.status >= 500 else "UNKNOWN"
    detail = exc.detail if isinstance(exc, RegistryError) else None
    # Rendered for HEAD too: aiohttp sends no body then, but the Content-Length a GET would have.
    return json_response(oci_body(code, exc.message, detail), exc.status, headers)


def render_api(request: web.Request, exc: WaveError) -> web.Response:
    return json_response({"message": exc.message}, exc.status, exc.headers)


def _as_wave_error(exc: web.HTTPException, oci: bool) -> WaveError:
    """aiohttp's own HTTP errors (no route, wrong method, body too large) in wave's shape."""
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    if oci:
        return RegistryError(exc.reason, status=exc.status, code=_OCI_CODES.get(exc.status, "UNKNOWN"), headers=headers)
    return ApiError(exc.reason, status=exc.status, headers=headers)


def error_middleware(render: Renderer) -> Middleware:
    """Render WaveError, aiohttp's HTTP errors in the same shape, and anything else as a logged 500 without
    internals. The error is also left on the request (``keys.ERROR``) for request accounting."""
    oci = render is render_oci

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except WaveError as exc:
            error = exc
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = _as_wave_error(exc, oci)
        except Exception as exc:
            error = internal_error(request, exc, oci)
        request[keys.ERROR] = error
        return render(request, error)

    return middleware


def internal_error(request: web.Request, exc: BaseException, oci: bool) -> WaveError:
    """A bug, answered as a 500 whose message carries an error id, and logged as one line with that id (the
    exception and where it was raised; the traceback only at debug level): an operator finds the line from
    the id a user reports, and a client never sees internals."""
    error_id = secrets.token_hex(6)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    log.error("unhandled error %s on %s %s: %s: %s%s", error_id, request.method, redact_path(request.path)[:512],
              type(exc).__name__, redact_text(str(exc), 300), where)
    log.debug("traceback of error %s", error_id, exc_info=exc)
    message = f"internal error (error id {error_id}); the service log has the details under this id"
    if oci:
        return RegistryError(message, status=500, code="UNKNOWN", detail={"errorId": error_id})
    return WaveError(message)


def client_address_middleware(trusted: tuple[str, ...]) -> Middleware:
    """Record each request's client address as ``request[keys.CLIENT_IP]`` (metrics and access logs use it)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[keys.CLIENT_IP] = client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
        return await handler(request)

    return middleware
