"""Operations endpoints: liveness, readiness, and Prometheus metrics.

- ``/health``: the process answers (liveness; it never touches the store, so a store outage does not get
  every replica restarted).
- ``/ready``: the state store (and the object storage, when configured) answer a ping (readiness; a replica
  that cannot reach them leaves the Service instead of failing every request with 503).
- ``/metrics``: Prometheus text format 0.0.4 (rendered by :mod:`wave.prometheus`). It has **no
  authentication**: Prometheus scrapes it from inside the cluster, and it holds only aggregate numbers per
  replica — route families, status codes, latencies, error codes, build states, cache hits — never a user,
  an IP, an organisation or a token. The deploy manifests expose wave through a ClusterIP Service only;
  whoever adds a public Ingress should not route ``/metrics`` through it.

The middleware counts every request by route family (``v2-manifest``, ``v2-blob``, ``v2-other``, ``api``,
``metrics``, ``ops``), method and status, times it, and counts errors that come from upstream registries
(``UNAVAILABLE``, ``TOOMANYREQUESTS``, ``DENIED``: the registry client raises these only for upstream
answers; the error middlewares leave what they rendered on the request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from wave import __version__, keys
from wave.errors import Denied, TooManyRequests, UpstreamUnavailable, WaveError
from wave.prometheus import OpsMetrics, sample
from wave.responses import json_response

log = logging.getLogger("wave.ops")

READY_TIMEOUT = 3.0  # seconds a store ping may take before the replica is reported unready
_UPSTREAM_ERRORS = (UpstreamUnavailable, TooManyRequests, Denied)
_OPS_PATHS = frozenset({"/health", "/ready", "/metrics"})
CLIENT_CLOSED = 499  # nginx's code for "the client went away before the answer": cancelled handlers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- request accounting -----------------------------------------------------------------------------


_FAMILIES: dict[str, str] = {}  # route template -> family: computed once per route


def route_family(request: web.Request) -> str:
    """The family of a request, from the route it matched (its template, so a repository named
    ``manifests`` cannot confuse it), or from the path when no route matched."""
    resource = request.match_info.route.resource
    if resource is None:
        return _family_of(request.path)
    family = _FAMILIES.get(resource.canonical)
    if family is None:
        family = _FAMILIES[resource.canonical] = _family_of(resource.canonical)
    return family


def _family_of(template: str) -> str:
    if template.startswith("/v2"):
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


def accounting_middleware(ops: OpsMetrics) -> Middleware:
    """Count and time every request. It sits outside the error middlewares, which leave the error they
    rendered on the request (``keys.ERROR``): errors from upstream registries are counted by code."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        family, status, start = route_family(request), 500, time.perf_counter()
        try:
            response = await handler(request)
            status = response.status
            error = request.get(keys.ERROR)
            if isinstance(error, _UPSTREAM_ERRORS):
                ops.upstream_error(error.code, error.status)
            return response
        except web.HTTPException as exc:  # redirects, which the error middlewares let through
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            ops.observe_request(family, request.method, status, time.perf_counter() - start)

    return middleware


# --- handlers ---------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _unready(what: str, ping: Callable[[], Awaitable[None]]) -> str | None:
    """Why a dependency cannot serve, or None when it answers in time."""
    try:
        await asyncio.wait_for(ping(), READY_TIMEOUT)
    except TimeoutError:
        return f"the {what} did not answer within {READY_TIMEOUT:g}s"
    except WaveError as exc:
        return exc.message
    except Exception as exc:
        log.warning("readiness check of the %s failed: %s", what, exc)
        return f"the {what} failed; see the service log"
    return None


async def ready(request: web.Request) -> web.Response:
    """Ready when the state store and the object storage answer."""
    problem = (await _unready("state store", request.app[keys.STORE].ping)
               or await _unready("object storage", request.app[keys.STORAGE].ping))
    if problem is not None:
        return json_response({"status": "unavailable", "message": problem}, 503)
    return json_response({"status": "ok"})


async def prometheus(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    resolutions = request.app[keys.MANIFESTS].upstream_resolutions
    extra = ["# HELP wave_info The version of this replica", "# TYPE wave_info gauge",
             sample("wave_info", (("version", __version__), ("commit", settings.commit_id),
                                  *((("worker", settings.worker),) if settings.worker else ())), 1),
             "# HELP wave_manifest_upstream_resolutions_total Tag resolutions that reached upstream "
             "(the rest were served from wave's cache)",
             "# TYPE wave_manifest_upstream_resolutions_total counter",
             f"wave_manifest_upstream_resolutions_total {resolutions}"]
    text = request.app[keys.OPS].render(extra)
    return web.Response(body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", prometheus)
