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

Requests are counted and timed by route family in :mod:`wave.edge`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from wave import __version__, keys
from wave.errors import WaveError
from wave.prometheus import sample
from wave.responses import json_response

log = logging.getLogger("wave.ops")

READY_TIMEOUT = 3.0  # seconds a store ping may take before the replica is reported unready


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


def routes() -> list[web.RouteDef]:
    return [
        web.get("/health", health),
        web.get("/ready", ready),
        web.get("/metrics", prometheus),
    ]
