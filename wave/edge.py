"""The edge: where every request enters wave and its answer leaves.

It records the client's address, counts and times the request by route family, and renders errors in the
shape of the surface that serves the route: ``/v2`` answers OCI error JSON
(``{"errors":[{"code","message","detail"}]}``), the control API ``{"message": …}``. Nothing else turns
exceptions into responses, and a client never sees a traceback.

It wraps each route's handler (:meth:`Edge.routes`) rather than being an aiohttp middleware: the middleware
machinery (a handler chain per request, and the current-app fix-up aiohttp adds to it) cost the warm manifest
path 2.5 µs of its ~78, which is measured against an app that has none. A catch-all route, last, answers every
path no other route serves (404, or 405 with ``Allow``), so that aiohttp's own plain-text errors never reach
a client.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from wave import keys
from wave.addresses import client_address
from wave.errors import ApiError, Denied, RegistryError, TooManyRequests, UpstreamUnavailable, WaveError
from wave.logs import AccessLines
from wave.prometheus import OpsMetrics
from wave.proxy.cache import API_VERSION
from wave.redact import redact_path, redact_text
from wave.responses import json_response

log = logging.getLogger("wave.errors")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_CLOSED = 499  # nginx's code for "the client went away before the answer": cancelled handlers
_OCI_CODES = {404: "NAME_UNKNOWN", 405: "UNSUPPORTED"}  # aiohttp's own errors on /v2, as the spec names them
_UPSTREAM_ERRORS = (UpstreamUnavailable, TooManyRequests, Denied)  # raised only for upstream registries' answers
_OPS_PATHS = frozenset({"/health", "/ready", "/metrics"})


# --- rendering --------------------------------------------------------------------------------------


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


# --- route families ---------------------------------------------------------------------------------


_NO_ROUTE = "/{path}"  # the catch-all's template


def _family_of(template: str) -> str:
    """A route's family (``v2-manifest``, ``v2-blob``, ``v2-other``, ``api``, ``metrics``, ``ops``), from its
    template (so a repository named ``manifests`` cannot confuse it); a path no route serves, from the path."""
    if template == "/v2" or template.startswith("/v2/"):
        if template.endswith("/manifests/{reference}"):
            return "v2-manifest"
        if template.endswith("/blobs/{digest}"):
            return "v2-blob"
        return "v2-other"
    if template.startswith(("/v1alpha1/metrics", "/v1alpha2/metrics")):
        return "metrics"
    if template in _OPS_PATHS:
        return "ops"
    return "api"


# --- the edge ---------------------------------------------------------------------------------------


class Edge:
    """Record the client's address (``request[keys.CLIENT_IP]``, for metrics and limits); count and time the
    request, and upstream registries' errors by code; write its access line; render WaveError, aiohttp's HTTP errors in
    the same shape, and anything else as a logged 500 without internals. Redirects pass through as raised."""

    def __init__(self, trusted_proxies: tuple[str, ...], ops: OpsMetrics, access: AccessLines | None = None) -> None:
        self._trusted = trusted_proxies
        self._ops = ops
        self._access = access  # the access log (None: off)

    def routes(self, routes: Iterable[web.RouteDef]) -> list[web.RouteDef]:
        """``routes`` with their handlers wrapped, in order, then the catch-all for every other path."""
        wrapped = [web.RouteDef(r.method, r.path, self.wrap(r.handler, _family_of(r.path)), r.kwargs) for r in routes]
        return [*wrapped, web.route("*", _NO_ROUTE.replace("}", ":.*}"), self.wrap(_no_route))]

    def wrap(self, handler: Handler, route_family: str | None = None) -> Handler:
        """``handler`` behind the edge; ``route_family`` is its route's (None: each request's, from its path)."""
        trusted, ops, access = self._trusted, self._ops, self._access

        def answered(request: web.Request, client: str | None, family: str, status: int, start: float) -> None:
            elapsed = time.perf_counter() - start
            method = request.method
            ops.observe_request(family, method, status, elapsed)
            if access is not None:
                access.add(client, method, request.path, status, elapsed)

        def rendered(request: web.Request, error: WaveError, oci: bool) -> web.Response:
            if isinstance(error, _UPSTREAM_ERRORS):
                ops.upstream_error(error.code, error.status)
            return (render_oci if oci else render_api)(request, error)

        async def edge(request: web.Request) -> web.StreamResponse:
            start = time.perf_counter()
            client = client_address(request.remote, request.headers.get("X-Forwarded-For"),
                                    trusted) if trusted else request.remote
            request[keys.CLIENT_IP] = client
            family = route_family or _family_of(request.path)
            oci = family.startswith("v2")
            try:
                response = await handler(request)
            except WaveError as exc:
                response = rendered(request, exc, oci)
            except web.HTTPException as exc:
                if exc.status < 400:  # redirects (a blob in the S3 cache)
                    answered(request, client, family, exc.status, start)
                    raise
                response = rendered(request, _as_wave_error(exc, oci), oci)
            except asyncio.CancelledError:
                answered(request, client, family, CLIENT_CLOSED, start)
                raise
            except Exception as exc:
                response = rendered(request, internal_error(request, exc, oci), oci)
            answered(request, client, family, response.status, start)
            return response

        edge.__name__ = edge.__qualname__ = getattr(handler, "__name__", "handler")
        return edge


async def _no_route(request: web.Request) -> web.StreamResponse:
    """A path no route serves: 405 with ``Allow`` when another method would be served, else 404 (rendered by
    the edge in the control API's shape; ``/v2`` has a catch-all of its own)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
