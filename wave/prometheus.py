"""Prometheus counters of one replica, and their text exposition (format 0.0.4).

Written here (it is small) rather than pulled in as a dependency. Labels are bounded sets only — route
families, methods, status codes, error codes, build states, cache names — never a user, an IP, an
organisation or a token. Services count into :class:`OpsMetrics`; ``/metrics`` (wave.ops) renders it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class Histogram:
    buckets: tuple[float, ...] = BUCKETS
    hits: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # per bucket; the last: +Inf
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        """One bucket incremented (found by bisection): this runs once per request."""
        self.hits[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    @property
    def counts(self) -> list[int]:
        """Cumulative counts per bucket bound, as Prometheus wants them."""
        return list(accumulate(self.hits[:-1]))


class OpsMetrics:
    """In-process counters of one replica; Prometheus sums replicas. Labels are bounded sets only."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)  # family, method, status
        self.latency: defaultdict[str, Histogram] = defaultdict(Histogram)  # family
        self.upstream_errors: defaultdict[tuple[str, str], int] = defaultdict(int)  # code, status
        self.builds: defaultdict[str, int] = defaultdict(int)  # launched | succeeded | failed
        self.limit_refusals: defaultdict[str, int] = defaultdict(int)  # anon_pulls | anon_builds | user_…
        self.cache: defaultdict[tuple[str, str], int] = defaultdict(int)  # cache, hit | miss
        self.blob_cache: defaultdict[str, int] = defaultdict(int)  # event -> count (blob_cache_event)

    def observe_request(self, family: str, method: str, status: int, seconds: float) -> None:
        self.requests[(family, method if method in _METHODS else "OTHER", status)] += 1
        self.latency[family].observe(seconds)

    def upstream_error(self, code: str, status: int) -> None:
        self.upstream_errors[(code, str(status))] += 1

    def build_state(self, state: str) -> None:
        self.builds[state] += 1

    def limit_refused(self, limit: str) -> None:
        """A request refused by a limit per caller (``anon_pulls``, ``user_builds``, …)."""
        self.limit_refusals[limit] += 1

    def cache_lookup(self, cache: str, hit: bool) -> None:
        """A hook for caches (e.g. ``ObjectCache.get``): one call per look-up."""
        self.cache[(cache, "hit" if hit else "miss")] += 1

    def blob_cache_event(self, event: str, amount: int = 1) -> None:
        """A hook for the blob cache: hits and misses (with their bytes), fills, evictions, upstream fetches."""
        if event in ("hit", "miss", "filled"):
            self.blob_cache[event] += 1
            self.blob_cache[f"{event}_bytes"] += amount
        else:
            self.blob_cache[event] += amount

    def render(self, extra: Iterable[str] = ()) -> str:
        out: list[str] = []
        _family(out, "wave_http_requests_total", "counter", "HTTP requests by route family, method and status",
                [((("family", f), ("method", m), ("status", str(s))), n)
                 for (f, m, s), n in sorted(self.requests.items())])
        out += ["# HELP wave_http_request_duration_seconds Time to answer a request, by route family",
                "# TYPE wave_http_request_duration_seconds histogram"]
        for fam, hist in sorted(self.latency.items()):
            name = "wave_http_request_duration_seconds"
            for bound, n in zip(hist.buckets, hist.counts, strict=True):
                out.append(sample(f"{name}_bucket", (("family", fam), ("le", repr(bound))), n))
            out.append(sample(f"{name}_bucket", (("family", fam), ("le", "+Inf")), hist.count))
            out.append(sample(f"{name}_sum", (("family", fam),), hist.total))
            out.append(sample(f"{name}_count", (("family", fam),), hist.count))
        _family(out, "wave_upstream_errors_total", "counter", "Errors answered by upstream registries, by code",
                [((("code", c), ("status", s)), n) for (c, s), n in sorted(self.upstream_errors.items())])
        _family(out, "wave_builds_total", "counter", "Builds that reached each state on this replica",
                [((("state", s),), n) for s, n in sorted(self.builds.items())])
        _family(out, "wave_rate_limit_refusals_total", "counter", "Requests refused by a limit per caller, by limit",
                [((("limit", k),), n) for k, n in sorted(self.limit_refusals.items())])
        _family(out, "wave_cache_lookups_total", "counter", "Cache look-ups by cache and result",
                [((("cache", c), ("result", r)), n) for (c, r), n in sorted(self.cache.items())])
        if self.blob_cache:
            b = self.blob_cache
            _family(out, "wave_blob_cache_requests_total", "counter",
                    "Blob requests the blob cache answered (hit) or fetched upstream to fill (miss)",
                    [((("result", r),), b[r]) for r in ("hit", "miss")])
            _family(out, "wave_blob_cache_bytes_total", "counter",
                    "Bytes of blobs served from the cache (hit), fetched to fill it (miss), committed (filled)",
                    [((("result", r),), b[f"{r}_bytes"]) for r in ("hit", "miss", "filled")])
            _family(out, "wave_blob_cache_evictions_total", "counter",
                    "Blobs removed from a directory cache to stay under WAVE_BLOB_CACHE_SIZE", [((), b["evicted"])])
            _family(out, "wave_blob_cache_upstream_fetches_total", "counter",
                    "Upstream fetches that filled the cache (one per blob, however many clients wait)",
                    [((), b["fetch"])])
            _family(out, "wave_blob_cache_rejected_total", "counter",
                    "Fills thrown away because size or digest did not match", [((), b["rejected"])])
        out.extend(extra)
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def sample(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    text = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}" if labels else ""
    return f"{name}{text} {_value(value)}"


Sample = tuple[tuple[tuple[str, str], ...], float]


def _family(out: list[str], name: str, kind: str, help_text: str, samples: list[Sample]) -> None:
    out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    out += [sample(name, labels, value) for labels, value in samples]


