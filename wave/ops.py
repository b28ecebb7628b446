"""Operations endpoints: liveness, readiness, and Prometheus metrics.

- ``/health``: the process answers (liveness; it never touches the store, so a store outage does not get
  every replica restarted).
- ``/ready``: the state store (and the object storage, when configured) answer a ping (readiness; a replica
  that cannot reach them leaves the Service instead of failing every request with 503).
- ``/metrics``: Prometheus text format 0.0.4, written here (it is small) rather than pulled in as a
  dependency. It has **no authentication**: Prometheus scrapes it from inside the cluster, and it holds only
  aggregate numbers per replica — route families, status codes, latencies, error codes, build states, cache
  hits — never a user, an IP, an organisation or a token. The deploy manifests expose wave through a
  ClusterIP Service only; whoever adds a public Ingress should not route ``/metrics`` through it.

The middleware counts every request by route family (``v2-manifest``, ``v2-blob``, ``v2-other``, ``api``,
``metrics``, ``ops``), method and status, times it, and counts errors that come from upstream registries
(``UNAVAILABLE``, ``TOOMANYREQUESTS``, ``DENIED``: the registry client raises these only for upstream
answers). It must sit *inside* the error middleware, so it sees those exceptions before they are rendered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from wave import __version__, keys
from wave.errors import Denied, TooManyRequests, UpstreamUnavailable, WaveError
from wave.responses import json_response

log = logging.getLogger("wave.ops")

READY_TIMEOUT = 3.0  # seconds a store ping may take before the replica is reported unready
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UPSTREAM_ERRORS = (UpstreamUnavailable, TooManyRequests, Denied)
_OPS_PATHS = frozenset({"/health", "/ready", "/metrics"})
CLIENT_CLOSED = 499  # nginx's code for "the client went away before the answer": cancelled handlers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Histogram:
    buckets: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


class OpsMetrics:
    """In-process counters of one replica; Prometheus sums replicas. Labels are bounded sets only."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)  # family, method, status
        self.latency: defaultdict[str, Histogram] = defaultdict(Histogram)  # family
        self.upstream_errors: defaultdict[tuple[str, str], int] = defaultdict(int)  # code, status
        self.builds: defaultdict[str, int] = defaultdict(int)  # launched | succeeded | failed
        self.cache: defaultdict[tuple[str, str], int] = defaultdict(int)  # cache, hit | miss

    def observe_request(self, family: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests[(family, method, str(status))] += 1
        self.latency[family].observe(seconds)

    def upstream_error(self, code: str, status: int) -> None:
        self.upstream_errors[(code, str(status))] += 1

    def build_state(self, state: str) -> None:
        self.builds[state] += 1

    def cache_lookup(self, cache: str, hit: bool) -> None:
        """A hook for caches (e.g. ``ObjectCache.get``): one call per look-up."""
        self.cache[(cache, "hit" if hit else "miss")] += 1

    def render(self, extra: Iterable[str] = ()) -> str:
        out: list[str] = []
        _family(out, "wave_http_requests_total", "counter", "HTTP requests by route family, method and status",
                [((("family", f), ("method", m), ("status", s)), n) for (f, m, s), n in sorted(self.requests.items())])
        out += ["# HELP wave_http_request_duration_seconds Time to answer a request, by route family",
                "# TYPE wave_http_request_duration_seconds histogram"]
        for fam, hist in sorted(self.latency.items()):
            name = "wave_http_request_duration_seconds"
            for bound, n in zip(hist.buckets, hist.counts, strict=True):
                out.append(_sample(f"{name}_bucket", (("family", fam), ("le", repr(bound))), n))
            out.append(_sample(f"{name}_bucket", (("family", fam), ("le", "+Inf")), hist.count))
            out.append(_sample(f"{name}_sum", (("family", fam),), hist.total))
            out.append(_sample(f"{name}_count", (("family", fam),), hist.count))
        _family(out, "wave_upstream_errors_total", "counter", "Errors answered by upstream registries, by code",
                [((("code", c), ("status", s)), n) for (c, s), n in sorted(self.upstream_errors.items())])
        _family(out, "wave_builds_total", "counter", "Builds that reached each state on this replica",
                [((("state", s),), n) for s, n in sorted(self.builds.items())])
        _family(out, "wave_cache_lookups_total", "counter", "Cache look-ups by cache and result",
                [((("cache", c), ("result", r)), n) for (c, r), n in sorted(self.cache.items())])
        out.extend(extra)
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _sample(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    text = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}" if labels else ""
    return f"{name}{text} {_value(value)}"


Sample = tuple[tuple[tuple[str, str], ...], float]


def _family(out: list[str], name: str, kind: str, help_text: str, samples: list[Sample]) -> None:
    out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    out += [_sample(name, labels, value) for labels, value in samples]


# --- request accounting -----------------------------------------------------------------------------


def route_family(request: web.Request) -> str:
    """The family of a request, from the route it matched (its template, so a repository named
    ``manifests`` cannot confuse it), or from the path when no route matched."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else request.path
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


def make_middleware(ops: OpsMetrics) -> Middleware:
    @web.middleware
    async def ops_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        family, status, start = route_family(request), 500, time.perf_counter()
        try:
            response = await handler(request)
            status = response.status
            return response
        except WaveError as exc:
            status = exc.status
            if isinstance(exc, _UPSTREAM_ERRORS):
                ops.upstream_error(getattr(exc, "code", "UNKNOWN"), exc.status)
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            ops.observe_request(family, request.method, status, time.perf_counter() - start)

    return ops_middleware


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
    """Ready when the state store (and the object storage, when configured) answer."""
    store = request.app.get(keys.STORE)
    if store is None:
        return json_response({"status": "unavailable", "message": "the state store is not open yet"}, 503)
    problem = await _unready("state store", store.ping)
    storage = request.app.get(keys.STORAGE)
    if problem is None and storage is not None:
        problem = await _unready("object storage", storage.ping)
    if problem is not None:
        return json_response({"status": "unavailable", "message": problem}, 503)
    return json_response({"status": "ok"})


async def prometheus(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    extra = ["# HELP wave_info The version of this replica", "# TYPE wave_info gauge",
             _sample("wave_info", (("version", __version__), ("commit", settings.commit_id)), 1)]
    manifests = request.app.get(keys.MANIFESTS)
    resolutions = getattr(manifests, "upstream_resolutions", None)
    if isinstance(resolutions, int):
        extra += ["# HELP wave_manifest_upstream_resolutions_total Tag resolutions that reached upstream "
                  "(the rest were served from wave's cache)",
                  "# TYPE wave_manifest_upstream_resolutions_total counter",
                  f"wave_manifest_upstream_resolutions_total {resolutions}"]
    text = request.app[keys.OPS].render(extra)
    return web.Response(body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def setup(app: web.Application) -> OpsMetrics:
    """Register the routes and the accounting middleware (after the error middleware, i.e. inside it)."""
    ops = OpsMetrics()
    app[keys.OPS] = ops
    app.middlewares.append(make_middleware(ops))
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", prometheus)
    return ops
