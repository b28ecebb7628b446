"""Load tools, each bounded in time and count: wrk, curl, hyperfine, and a peak-RSS probe."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOOLS = {"wrk": "wrk", "curl": "curl", "hyperfine": "hyperfine", "skopeo": "skopeo",
         "docker-registry": "docker-registry", "umoci": "umoci", "jq": "jq", "socat": "socat",
         "redis-server": "redis-server"}


def missing_tools(install: bool = False) -> list[str]:
    """The tools not on PATH, each with the Debian package that has it. With ``install`` (as root, where
    apt-get exists) the missing packages are installed first: ``make bench`` works on a fresh machine."""
    missing = {tool: pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = sorted(set(missing.values()))
        print(f"bench: installing {' '.join(packages)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env,
                       check=False, timeout=1200)
        missing = {tool: pkg for tool, pkg in missing.items() if shutil.which(tool) is None}
    return [f"{tool} (apt-get install {pkg})" for tool, pkg in missing.items()]


def _loopback(url: str) -> None:
    if not url.startswith(("http://127.", "http://localhost:")):
        raise ValueError(f"benchmarks stay on loopback, not {url}")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers plus socket errors

    def as_dict(self) -> dict[str, float]:
        return {"requests": self.requests, "rps": round(self.rps, 1), "p50_ms": round(self.p50_ms, 3),
                "p99_ms": round(self.p99_ms, 3), "errors": self.errors}


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def wrk(url: str, *, connections: int, seconds: float, threads: int = 1, headers: dict[str, str] | None = None,
        lua: str | None = None) -> WrkResult:
    """``wrk --latency`` for ``seconds``; lua is a script body (e.g. to POST)."""
    _loopback(url)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
            "--timeout", "10s"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if lua:
            script.write(lua)
            script.flush()
            argv += ["-s", script.name]
        out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return WrkResult(requests, rps, p50, p99, errors)


def post_lua(body: bytes) -> str:
    """A wrk script that POSTs ``body`` as JSON."""
    quoted = body.decode().replace("\\", "\\\\").replace("'", "\\'")
    return (f"wrk.method = 'POST'\nwrk.body = '{quoted}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n")


@dataclass(frozen=True)
class Download:
    bytes: int
    seconds: float
    status: int

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


def curl(url: str, timeout: float = 60) -> Download:
    """One download to /dev/null, timed by curl itself."""
    _loopback(url)
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", str(timeout), "-w",
                          "%{http_code} %{size_download} %{time_total}", url],
                         capture_output=True, text=True, timeout=timeout + 10).stdout
    status, size, total = out.split()
    return Download(int(size), float(total), int(status))


def hyperfine_median(commands: dict[str, str], *, runs: int, warmup: int, prepare: str) -> dict[str, float]:
    """Median wall time (s) of each command; hyperfine interleaves nothing, so commands run in turn."""
    with tempfile.TemporaryDirectory(prefix="wave-bench-hf-") as tmp:
        export = Path(tmp) / "hf.json"
        argv = ["hyperfine", "-N", "-w", str(warmup), "-r", str(runs), "-p", prepare, "--export-json", str(export),
                "--style", "none"]
        for name, command in commands.items():
            argv += ["-n", name, command]
        subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
        results = json.loads(export.read_text())["results"]
    return {r["command"]: statistics.median(r["times"]) for r in results}


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextmanager
def peak_rss_growth(pid: int) -> Iterator[dict[str, float]]:
    """Peak RSS growth (MB) of a process while the block runs: VmHWM after a reset, and sampled VmRSS."""
    result: dict[str, float] = {}
    before = _status_kb(pid, "VmRSS")
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        hwm_reset = _status_kb(pid, "VmHWM") <= before + 1024
    except OSError:
        hwm_reset = False
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            try:
                peak = max(peak, _status_kb(pid, "VmRSS"))
            except (OSError, KeyError):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        peak = max(peak, _status_kb(pid, "VmRSS"))
        if hwm_reset:
            peak = max(peak, _status_kb(pid, "VmHWM"))
        result["before_mb"] = before / 1024
        result["peak_mb"] = peak / 1024
        result["growth_mb"] = (peak - before) / 1024
        result["method"] = "VmHWM reset + VmRSS samples" if hwm_reset else "VmRSS samples"  # type: ignore[assignment]
