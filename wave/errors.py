"""Errors that reach a client, and the one middleware that renders them.

On ``/v2/`` every error is OCI error JSON (``{"errors":[{"code","message","detail"}]}``); on the control API it
is ``{"message": …}``. Handlers and services raise these; nothing else turns exceptions into responses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from wave.logs import redact_path
from wave.responses import json_response

log = logging.getLogger("wave.errors")


class WaveError(Exception):
    """Base of every error with a client-facing status and message."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class ApiError(WaveError):
    """A control API error: ``{"message": …}``."""

    status = 400


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class Unavailable(WaveError):
    """A dependency (the store, an upstream) cannot be reached; retrying later may work."""

    status = 503


class RegistryError(WaveError):
    """An OCI distribution error, rendered as OCI error JSON on ``/v2/``."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None,
                 headers: dict[str, str] | None = None, code: str | None = None):
        super().__init__(message, status=status, headers=headers)
        self.detail = detail
        if code is not None:
            self.code = code


def _registry_error(name: str, code: str, status: int) -> type[RegistryError]:
    return type(name, (RegistryError,), {"code": code, "status": status, "__doc__": f"OCI ``{code}``."})


NameUnknown = _registry_error("NameUnknown", "NAME_UNKNOWN", 404)
NameInvalid = _registry_error("NameInvalid", "NAME_INVALID", 400)
ManifestUnknown = _registry_error("ManifestUnknown", "MANIFEST_UNKNOWN", 404)
ManifestInvalid = _registry_error("ManifestInvalid", "MANIFEST_INVALID", 400)
BlobUnknown = _registry_error("BlobUnknown", "BLOB_UNKNOWN", 404)
DigestInvalid = _registry_error("DigestInvalid", "DIGEST_INVALID", 400)
Unauthorized = _registry_error("Unauthorized", "UNAUTHORIZED", 401)
Denied = _registry_error("Denied", "DENIED", 403)
UnsupportedOperation = _registry_error("UnsupportedOperation", "UNSUPPORTED", 405)
TooManyRequests = _registry_error("TooManyRequests", "TOOMANYREQUESTS", 429)
UpstreamUnavailable = _registry_error("UpstreamUnavailable", "UNAVAILABLE", 502)


def oci_body(code: str, message: str, detail: Any = None) -> bytes:
    return orjson.dumps({"errors": [{"code": code, "message": message, "detail": detail}]})


def render(request: web.Request, exc: WaveError) -> web.Response:
    on_registry = request.path.startswith("/v2")
    if on_registry:
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **exc.headers}
        code = exc.code if isinstance(exc, RegistryError) else "UNAVAILABLE" if exc.status >= 500 else "UNKNOWN"
        detail = exc.detail if isinstance(exc, RegistryError) else None
        body = b"" if request.method == "HEAD" else oci_body(code, exc.message, detail)
        return json_response(body, exc.status, headers)
    return json_response({"message": exc.message}, exc.status, exc.headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render WaveError as JSON, aiohttp's own HTTP errors in the same shape, and anything else as a logged
    500 without internals: a client never sees a traceback."""
    try:
        return await handler(request)
    except WaveError as exc:
        return render(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if request.path.startswith("/v2"):
            code = {404: "NAME_UNKNOWN", 405: "UNSUPPORTED"}.get(exc.status, "UNKNOWN")
            err: WaveError = RegistryError(exc.reason, status=exc.status, code=code)
        else:
            err = ApiError(exc.reason, status=exc.status)
        return render(request, err)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, redact_path(request.path))
        return render(request, WaveError("internal error; see the service log"))
