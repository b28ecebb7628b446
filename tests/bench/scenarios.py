"""The scenarios: each measures wave and, where it makes sense, the registry directly, in the same run."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.bench import load
from tests.bench.lab import (
    MANIFEST_ACCEPT,
    CeilingApp,
    CountingProxy,
    RedisServer,
    WaveProcess,
    augmented_request,
    target_path,
)
from tests.support.registry import Registry, free_port, http_request

BUSYBOX = "library/busybox:latest"
BIG = "library/big:latest"


@dataclass
class Context:
    registry: Registry
    wave: WaveProcess
    counter: CountingProxy
    workdir: Path
    seconds: float
    connections: int
    rounds: int
    blob_runs: int
    skopeo_runs: int
    log_level: str = "INFO"

    def extra_wave(self, name: str, env: dict[str, str]) -> WaveProcess:
        """Another wave process for one scenario (its own state), configured like the main one plus ``env``."""
        return WaveProcess(self.workdir / f"wave-{name}", self.workdir / f"wave-{name}.log",
                           {"WAVE_LOG_LEVEL": self.log_level, **env}).start()


def _manifest_digest(url: str) -> str:
    got = http_request("GET", url, {"Accept": MANIFEST_ACCEPT})
    if got.status != 200:
        raise RuntimeError(f"GET {url} answered {got.status}: {got.body[:300]!r}")
    return got.headers["docker-content-digest"]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (/proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found += _process_tree(int(child))
    return found


def _alternate(ctx: Context, urls: dict[str, str], headers: dict[str, str] | None = None,
               lua: str | None = None, pids: dict[str, int] | None = None,
               ) -> tuple[dict[str, load.WrkResult], dict[str, list[int]], dict[str, float]]:
    """wrk on each URL in turn, ``ctx.rounds`` times, keeping each one's best: a busy neighbour only ever slows
    a round down, and alternating spreads it over every side alike. With ``pids``, also the server's CPU time
    per request (µs, the least of the rounds): what a request costs, whatever else the machine does."""
    rounds: dict[str, list[load.WrkResult]] = {side: [] for side in urls}
    cpu: dict[str, float] = {}
    for _ in range(ctx.rounds):
        for side, url in urls.items():
            tree = _process_tree(pids[side]) if pids and side in pids else []
            before = sum(_cpu_seconds(p) for p in tree)
            result = load.wrk(url, connections=ctx.connections, seconds=ctx.seconds, headers=headers, lua=lua)
            if result.errors:
                raise RuntimeError(f"{result.errors} errors under load on {side}")
            rounds[side].append(result)
            if tree and result.requests:
                used = (sum(_cpu_seconds(p) for p in tree) - before) / result.requests * 1e6
                cpu[side] = round(min(cpu.get(side, used), used), 1)
    best = {side: max(results, key=lambda r: r.rps) for side, results in rounds.items()}
    return best, {side: [round(r.rps) for r in results] for side, results in rounds.items()}, cpu


def _manifest_url(wave: WaveProcess, registry: Registry) -> str:
    answer = wave.submit(augmented_request(registry.ref(BUSYBOX)))
    name, tag = target_path(answer["targetImage"])
    return f"{wave.url}/v2/{name}/manifests/{tag}"


def manifest(ctx: Context) -> dict[str, Any]:
    """Warm GET by tag of an augmented manifest through wave, against the same GET on the registry, the same
    bytes from a 20-line aiohttp app (the ceiling), and wave on uvloop; rounds alternate between all four."""
    through_wave = _manifest_url(ctx.wave, ctx.registry)
    direct = f"{ctx.registry.url}/v2/{BUSYBOX.replace(':', '/manifests/')}"
    if _manifest_digest(through_wave) == _manifest_digest(direct):
        raise RuntimeError("wave served the upstream manifest: the benchmark image is not augmented")
    headers = {"Accept": MANIFEST_ACCEPT}
    got = http_request("GET", through_wave, headers)
    ceiling = CeilingApp(ctx.workdir, got.body, got.headers["content-type"], got.headers["docker-content-digest"])
    uvloop_wave = ctx.extra_wave("uvloop", {"WAVE_EVENT_LOOP": "uvloop"})
    try:
        urls = {"registry": direct, "wave": through_wave,
                "ceiling": f"{ceiling.url}/v2/{through_wave.split('/v2/', 1)[1]}",
                "wave_uvloop": _manifest_url(uvloop_wave, ctx.registry)}
        for url in urls.values():
            load.wrk(url, connections=ctx.connections, seconds=1, headers=headers)  # warm-up
        best, rounds, cpu = _alternate(ctx, urls, headers, pids={"wave": ctx.wave.pid, "ceiling": ceiling.pid,
                                                                 "wave_uvloop": uvloop_wave.pid})
    finally:
        ceiling.stop()
        uvloop_wave.stop()
    wave = best["wave"]
    return {
        "manifest_rps_ratio": round(wave.rps / best["registry"].rps, 2),
        "manifest_ceiling_ratio": round(wave.rps / best["ceiling"].rps, 3),
        "manifest_ceiling_ratio_uvloop": round(best["wave_uvloop"].rps / best["ceiling"].rps, 3),
        "manifest_ceiling": best["ceiling"].as_dict(),
        "manifest_wave_uvloop": best["wave_uvloop"].as_dict(),
        "manifest_p99_ms": round(wave.p99_ms, 2),
        "manifest_wave": wave.as_dict(),
        "manifest_registry": best["registry"].as_dict(),
        "manifest_rounds": rounds,
        "manifest_cpu_us": cpu,
    }


def _big_blob(registry: Registry) -> tuple[str, int]:
    url = f"{registry.url}/v2/{BIG.replace(':', '/manifests/')}"
    got = http_request("GET", url, {"Accept": MANIFEST_ACCEPT})
    layer = max(orjson.loads(got.body)["layers"], key=lambda layer: layer["size"])
    return layer["digest"], layer["size"]


def _stream_digest(url: str) -> tuple[str, int]:
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")
        sha, size = hashlib.sha256(), 0
        while chunk := response.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
        return "sha256:" + sha.hexdigest(), size
    finally:
        conn.close()


class _Relay:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.url = proc, f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _tcp_relay(ctx: Context) -> _Relay | None:
    """socat relaying plain TCP to the registry with 1 MiB buffers (None when socat is not installed)."""
    if shutil.which("socat") is None:
        return None
    port = free_port()
    proc = subprocess.Popen(["socat", "-b", str(1 << 20), f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                             f"TCP:{ctx.registry.host}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return _Relay(proc, port)
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                return None
            time.sleep(0.05)


def blob(ctx: Context) -> dict[str, Any]:
    """The 200 MiB layer streamed through wave and directly (curl to /dev/null, best of N), and wave's RSS."""
    digest, size = _big_blob(ctx.registry)
    answer = ctx.wave.submit(augmented_request(ctx.registry.ref(BIG)))
    name, _ = target_path(answer["targetImage"])
    through_wave = f"{ctx.wave.url}/v2/{name}/blobs/{digest}"
    direct = f"{ctx.registry.url}/v2/{BIG.split(':')[0]}/blobs/{digest}"
    got = _stream_digest(through_wave)  # also warms wave's resolution of the token
    if got != (digest, size):
        raise RuntimeError(f"wave streamed {got}, expected {(digest, size)}")
    best_wave = best_direct = best_relay = 0.0
    rss: dict[str, Any] = {}
    relay = _tcp_relay(ctx)
    for _ in range(ctx.blob_runs):
        run = load.curl(direct)
        if (run.status, run.bytes) != (200, size):
            raise RuntimeError(f"direct download: {run}")
        best_direct = max(best_direct, run.bytes_per_s)
        if relay is not None:  # the same hop through the simplest relay there is: the ceiling for any proxy
            run = load.curl(direct.replace(ctx.registry.url, relay.url))
            best_relay = max(best_relay, run.bytes_per_s if (run.status, run.bytes) == (200, size) else 0.0)
        with load.peak_rss_growth(ctx.wave.pid) as probe:
            run = load.curl(through_wave)
        if (run.status, run.bytes) != (200, size):
            raise RuntimeError(f"download through wave: {run}")
        best_wave = max(best_wave, run.bytes_per_s)
        if probe["growth_mb"] >= rss.get("growth_mb", -1.0):
            rss = probe
    if relay is not None:
        relay.stop()
    relay_figures = {"blob_relay_ratio": round(best_relay / best_direct, 3),
                     "blob_socat_ratio": round(best_wave / best_relay, 3),
                     "blob_relay_mb_s": round(best_relay / 1e6, 1)} if best_relay else {}
    return {
        **relay_figures,
        "blob_throughput_ratio": round(best_wave / best_direct, 3),
        "stream_rss_mb": round(rss["growth_mb"], 1),
        "blob_size": size,
        "blob_wave_mb_s": round(best_wave / 1e6, 1),
        "blob_registry_mb_s": round(best_direct / 1e6, 1),
        "stream_rss": {k: round(v, 1) if isinstance(v, float) else v for k, v in rss.items()},
    }


async def _concurrent_gets(url: str, count: int) -> list[tuple[int, str]]:
    connector = aiohttp.TCPConnector(limit=count, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        start = asyncio.Event()

        async def one() -> tuple[int, str]:
            await start.wait()
            async with session.get(url, headers={"Accept": MANIFEST_ACCEPT}) as response:
                await response.read()
                return response.status, response.headers.get("Docker-Content-Digest", "")

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


def cold(ctx: Context, trials: int = 3, concurrency: int = 100) -> dict[str, Any]:
    """100 concurrent first requests for one new token's manifest: how many reach upstream (counted there)."""
    counts = []
    for _ in range(trials):
        answer = ctx.wave.submit(augmented_request(f"{ctx.counter.host}/{BUSYBOX}"))
        name, tag = target_path(answer["targetImage"])
        ctx.counter.reset()
        results = asyncio.run(_concurrent_gets(f"{ctx.wave.url}/v2/{name}/manifests/{tag}", concurrency))
        if {status for status, _ in results} != {200} or len({d for _, d in results}) != 1:
            raise RuntimeError(f"cold requests: statuses {sorted({s for s, _ in results})}, "
                               f"{len({d for _, d in results})} different digests")
        counts.append(ctx.counter.fetches("GET", "manifests"))
    return {"cold_upstream_fetches_per_100": max(counts), "cold_upstream_fetches_trials": counts}


def token(ctx: Context) -> dict[str, Any]:
    """Container requests per second for an image already checked upstream (each one issues a token), on the
    embedded store and on Redis (a private redis-server), rounds alternating."""
    body = orjson.dumps(augmented_request(ctx.registry.ref(BUSYBOX)))
    redis = RedisServer(ctx.workdir)
    try:
        on_redis = ctx.extra_wave("redis", {"WAVE_REDIS_URL": redis.url})
        try:
            urls = {}
            for side, wave in (("embedded", ctx.wave), ("redis", on_redis)):
                wave.submit(orjson.loads(body))  # the image is now resolved (checked upstream)
                urls[side] = f"{wave.url}/v1alpha2/container"
            best, rounds, cpu = _alternate(ctx, urls, lua=load.post_lua(body),
                                           pids={"embedded": ctx.wave.pid, "redis": on_redis.pid})
        finally:
            on_redis.stop()
    finally:
        redis.stop()
    return {"token_rps": round(best["embedded"].rps, 1), "token": best["embedded"].as_dict(),
            "token_rps_redis": round(best["redis"].rps, 1), "token_redis": best["redis"].as_dict(),
            "token_rounds": rounds, "token_cpu_us": cpu}


def skopeo(ctx: Context) -> dict[str, Any]:
    """``skopeo copy`` of the augmented busybox through wave, against the original directly (medians)."""
    answer = ctx.wave.submit(augmented_request(ctx.registry.ref(BUSYBOX)))
    dest = ctx.workdir / "skopeo-copy"
    copy = "skopeo copy -q --src-tls-verify=false docker://{} dir:" + str(dest)
    medians = load.hyperfine_median(
        {"registry": copy.format(ctx.registry.ref(BUSYBOX)), "wave": copy.format(answer["targetImage"])},
        runs=ctx.skopeo_runs, warmup=2, prepare=f"rm -rf {dest}")
    return {
        "skopeo_copy_ratio": round(medians["wave"] / medians["registry"], 3),
        "skopeo_wave_ms": round(medians["wave"] * 1000, 1),
        "skopeo_registry_ms": round(medians["registry"] * 1000, 1),
    }


def cached(ctx: Context) -> dict[str, Any]:
    """The 200 MiB layer from wave's blob cache (a directory: sendfile) against the registry directly, and
    wave's RSS while it fills the cache and serves from it."""
    digest, size = _big_blob(ctx.registry)
    wave = ctx.extra_wave("cache", {"WAVE_BLOB_CACHE": str(ctx.workdir / "blob-cache")})
    try:
        answer = wave.submit(augmented_request(ctx.registry.ref(BIG)))
        name, _ = target_path(answer["targetImage"])
        through_wave = f"{wave.url}/v2/{name}/blobs/{digest}"
        direct = f"{ctx.registry.url}/v2/{BIG.split(':')[0]}/blobs/{digest}"
        with load.peak_rss_growth(wave.pid) as filling:
            got = _stream_digest(through_wave)  # the first download fills the cache
        if got != (digest, size):
            raise RuntimeError(f"wave streamed {got}, expected {(digest, size)}")
        _wait_cached(ctx.workdir / "blob-cache", digest)
        best_wave = best_direct = 0.0
        rss = filling
        for _ in range(ctx.blob_runs):
            run = load.curl(direct)
            if (run.status, run.bytes) != (200, size):
                raise RuntimeError(f"direct download: {run}")
            best_direct = max(best_direct, run.bytes_per_s)
            with load.peak_rss_growth(wave.pid) as probe:
                run = load.curl(through_wave)
            if (run.status, run.bytes) != (200, size):
                raise RuntimeError(f"download from wave's cache: {run}")
            best_wave = max(best_wave, run.bytes_per_s)
            if probe["growth_mb"] > rss["growth_mb"]:
                rss = probe
    finally:
        wave.stop()
    return {
        "cached_blob_ratio": round(best_wave / best_direct, 3),
        "cached_blob_mb_s": round(best_wave / 1e6, 1),
        "cached_registry_mb_s": round(best_direct / 1e6, 1),
        "stream_rss_cached_mb": round(rss["growth_mb"], 1),
        "stream_rss_fill_mb": round(filling["growth_mb"], 1),
    }


def _wait_cached(cache_dir: Path, digest: str, timeout: float = 60) -> None:
    path = cache_dir / "sha256" / digest.split(":")[1]
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{digest} never reached the blob cache")
        time.sleep(0.05)


async def _concurrent_blob_gets(url: str, count: int, expected: str) -> list[bool]:
    connector = aiohttp.TCPConnector(limit=count, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        start = asyncio.Event()

        async def one() -> bool:
            await start.wait()
            sha = hashlib.sha256()
            async with session.get(url) as response:
                async for chunk in response.content.iter_chunked(1 << 20):
                    sha.update(chunk)
                return response.status == 200 and "sha256:" + sha.hexdigest() == expected

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


COLD_BLOB_SIZE = 32 << 20


def cold_blob(ctx: Context, concurrency: int = 50) -> dict[str, Any]:
    """50 concurrent first GETs of one (32 MiB, new) blob with the cache on: upstream GETs, counted in front
    of the registry."""
    data = os.urandom(COLD_BLOB_SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _upload_blob(ctx.registry, "library/busybox", data, digest)
    wave = ctx.extra_wave("cold-cache", {"WAVE_BLOB_CACHE": str(ctx.workdir / "cold-blob-cache")})
    try:
        answer = wave.submit({"containerImage": f"{ctx.counter.host}/{BUSYBOX}"})
        name, _ = target_path(answer["targetImage"])
        ctx.counter.reset()
        started = time.monotonic()
        results = asyncio.run(_concurrent_blob_gets(f"{wave.url}/v2/{name}/blobs/{digest}", concurrency, digest))
        seconds = time.monotonic() - started
    finally:
        wave.stop()
    if not all(results):
        raise RuntimeError(f"{results.count(False)} of {concurrency} cold blob downloads were wrong")
    return {"cold_blob_upstream_fetches": ctx.counter.fetches("GET", "blobs"),
            "cold_blob_seconds": round(seconds, 2)}


def _upload_blob(registry: Registry, repository: str, data: bytes, digest: str) -> None:
    start = http_request("POST", f"{registry.url}/v2/{repository}/blobs/uploads/")
    if start.status != 202:
        raise RuntimeError(f"blob upload: {start.status} {start.body[:200]!r}")
    location = start.headers["location"]
    location = location if location.startswith("http") else registry.url + location
    done = http_request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}",
                        {"Content-Type": "application/octet-stream"}, body=data, timeout=120)
    if done.status != 201:
        raise RuntimeError(f"blob upload: {done.status} {done.body[:200]!r}")


def workers(ctx: Context) -> dict[str, Any]:
    """Warm manifest GETs on ``wave serve --workers 2`` against one process (both on the embedded store),
    rounds alternating."""
    headers = {"Accept": MANIFEST_ACCEPT}
    one = ctx.extra_wave("workers-1", {"WAVE_WORKERS": "1"})
    two = ctx.extra_wave("workers-2", {"WAVE_WORKERS": "2"})
    try:
        urls = {"1": _manifest_url(one, ctx.registry), "2": _manifest_url(two, ctx.registry)}
        for url in urls.values():
            load.wrk(url, connections=ctx.connections, seconds=1, headers=headers)  # warms every worker
        best, rounds, _ = _alternate(ctx, urls, headers)
    finally:
        one.stop()
        two.stop()
    return {"workers_manifest_scaling": round(best["2"].rps / best["1"].rps, 3),
            "workers_manifest": {n: r.as_dict() for n, r in best.items()}, "workers_rounds": rounds}


SCENARIOS = {"manifest": manifest, "blob": blob, "cached": cached, "cold": cold, "cold_blob": cold_blob,
             "token": token, "workers": workers, "skopeo": skopeo}
