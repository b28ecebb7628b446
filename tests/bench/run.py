"""Start the lab, run the scenarios, print the table, write the JSON (``$BENCH_OUT``, default build/bench.json)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tests.bench import load
from tests.bench.lab import REPO_ROOT, CountingProxy, Profiler, WaveProcess
from tests.bench.scenarios import SCENARIOS, Context
from tests.support.images import build_lab_layout, push_lab_images, static_busybox_missing
from tests.support.registry import start_registry

# metric -> (goal, True when higher is better, unit)
GOALS: dict[str, tuple[float | None, bool, str]] = {
    "manifest_rps_ratio": (6.0, True, "x registry"),
    "manifest_ceiling_ratio": (0.5, True, "x ceiling"),
    "manifest_ceiling_ratio_uvloop": (0.65, True, "x ceiling"),
    "manifest_p99_ms": (None, False, "ms"),
    "workers_manifest_scaling": (1.4, True, "x 1 worker"),
    "blob_throughput_ratio": (0.6, True, "x registry"),
    "blob_socat_ratio": (0.95, True, "x socat"),
    "cached_blob_ratio": (0.85, True, "x registry"),
    "stream_rss_mb": (64.0, False, "MB"),
    "stream_rss_cached_mb": (64.0, False, "MB"),
    "cold_upstream_fetches_per_100": (1.0, False, "fetches"),
    "cold_blob_upstream_fetches": (1.0, False, "fetches"),
    "token_rps": (2000.0, True, "req/s"),
    "token_rps_redis": (None, True, "req/s"),
    "skopeo_copy_ratio": (None, False, "x registry"),
}
DETAILS = {
    "manifest_rps_ratio": lambda r: f"wave {r['manifest_wave']['rps']:.0f} req/s, "
                                    f"registry {r['manifest_registry']['rps']:.0f} req/s",
    "manifest_ceiling_ratio": lambda r: f"ceiling app {r['manifest_ceiling']['rps']:.0f} req/s",
    "manifest_ceiling_ratio_uvloop": lambda r: f"wave on uvloop {r['manifest_wave_uvloop']['rps']:.0f} req/s",
    "manifest_p99_ms": lambda r: f"p50 {r['manifest_wave']['p50_ms']:.2f} ms; "
                                 f"registry p99 {r['manifest_registry']['p99_ms']:.2f} ms",
    "workers_manifest_scaling": lambda r: f"2 workers {r['workers_manifest']['2']['rps']:.0f} req/s, "
                                          f"1 worker {r['workers_manifest']['1']['rps']:.0f} req/s",
    "blob_throughput_ratio": lambda r: f"wave {r['blob_wave_mb_s']:.0f} MB/s, "
                                       f"registry {r['blob_registry_mb_s']:.0f} MB/s"
                                       + (f", socat {r['blob_relay_ratio']:g} x" if "blob_relay_ratio" in r else ""),
    "blob_socat_ratio": lambda r: f"socat {r['blob_relay_mb_s']:.0f} MB/s",
    "cached_blob_ratio": lambda r: f"wave's cache {r['cached_blob_mb_s']:.0f} MB/s, "
                                   f"registry {r['cached_registry_mb_s']:.0f} MB/s",
    "stream_rss_mb": lambda r: f"peak {r['stream_rss']['peak_mb']} MB from {r['stream_rss']['before_mb']} MB",
    "stream_rss_cached_mb": lambda r: f"while filling {r['stream_rss_fill_mb']} MB",
    "cold_upstream_fetches_per_100": lambda r: f"trials {r['cold_upstream_fetches_trials']}",
    "cold_blob_upstream_fetches": lambda r: f"50 clients x 32 MiB in {r['cold_blob_seconds']} s",
    "token_rps": lambda r: f"p99 {r['token']['p99_ms']:.2f} ms (embedded store)",
    "token_rps_redis": lambda r: f"p99 {r['token_redis']['p99_ms']:.2f} ms; "
                                 f"{r['token_rps_redis'] / r['token_rps']:.2f} x embedded (goal >= 1)"
                                 if "token_rps" in r else f"p99 {r['token_redis']['p99_ms']:.2f} ms",
    "skopeo_copy_ratio": lambda r: f"wave {r['skopeo_wave_ms']:.0f} ms, registry {r['skopeo_registry_ms']:.0f} ms",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios to run (default: all of {', '.join(SCENARIOS)})")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating manifest rounds each way, best kept")
    parser.add_argument("--blob-runs", type=int, default=5, help="downloads of the big blob each way (best of)")
    parser.add_argument("--skopeo-runs", type=int, default=15, help="skopeo copies each way (median of)")
    parser.add_argument("--log-level", default="INFO", help="wave's WAVE_LOG_LEVEL (default INFO: access log on)")
    parser.add_argument("--profile", type=Path, help="record each scenario with py-spy into this directory")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("BENCH_OUT") or "build/bench.json"))
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def _status(name: str, value: Any) -> str:
    goal, higher, _ = GOALS[name]
    if goal is None:
        return ""
    return "ok" if (value >= goal if higher else value <= goal) else "MISSED"


def _table(results: dict[str, Any]) -> str:
    rows = [("metric", "value", "goal", "", "detail")]
    for name, (goal, higher, unit) in GOALS.items():
        if name not in results:
            continue
        target = "" if goal is None else f"{'>=' if higher else '<='} {goal:g}"
        try:
            detail = DETAILS[name](results)
        except KeyError:
            detail = ""
        rows.append((name, f"{results[name]:g} {unit}", target, _status(name, results[name]), detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    missing = load.missing_tools(install=True)
    busybox = static_busybox_missing()
    if busybox:
        missing.append(busybox)
    if missing:
        print(f"bench: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    results: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "commit": _commit(),
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg()[0],
        "wrk": {"connections": args.connections, "seconds": args.seconds, "threads": 1, "rounds": args.rounds},
        "wave_log_level": args.log_level,
    }
    with tempfile.TemporaryDirectory(prefix="wave-bench-") as tmp:
        work = Path(tmp)
        print("bench: building the lab images (with the 200 MiB layer) ...", flush=True)
        layout = build_lab_layout(work / "layout", big=True)
        with start_registry(work / "registry") as registry:
            push_lab_images(layout, registry)
            wave = WaveProcess(work / "wave-state", work / "wave.log", {"WAVE_LOG_LEVEL": args.log_level}).start()
            try:
                with CountingProxy(registry.url) as counter:
                    ctx = Context(registry, wave, counter, work, args.seconds, args.connections, args.rounds,
                                  args.blob_runs, args.skopeo_runs, args.log_level)
                    profiler = Profiler(args.profile, wave.pid)
                    for name in args.only.split(","):
                        print(f"bench: {name} ...", flush=True)
                        profiler.start(name)
                        try:
                            results.update(SCENARIOS[name](ctx))
                        finally:
                            profiler.stop()
            finally:
                wave.stop()
                if os.environ.get("BENCH_KEEP_LOG"):
                    (REPO_ROOT / "build").mkdir(exist_ok=True)
                    (REPO_ROOT / "build" / "bench-wave.log").write_bytes(wave.log.read_bytes())
    results["duration_s"] = round(time.monotonic() - started, 1)
    print()
    print(_table(results))
    print(f"\n{results['cores']} cores, {results['duration_s']} s; JSON in {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return 0
