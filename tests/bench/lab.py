"""What the benchmarks run against: the lab registry, wave as its own process, and a counting proxy.

wave runs as a separate process (``python -m wave serve``) so that neither the load tools nor this harness
share its interpreter lock, exactly as in production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.support.layers import make_layer
from tests.support.registry import ManagedProcess, free_port, http_request

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"

# The bench measures wave, not its limits per caller: every one is off for its runs, whatever the environment says.
BENCH_LIMITS_OFF = {f"WAVE_RATE_LIMIT_{name}": "off" for name in ("ANON_PULLS", "ANON_BUILDS", "USER_PULLS",
                                                                   "USER_BUILDS")}

# What every augmented benchmark request injects: a small inline layer and a new environment and command.
HELLO = make_layer({"opt/wave/hello.txt": "hello from an injected layer\n",
                    "opt/wave/bin/greet": "#!/bin/sh\necho \"greetings, $WHO\"\n"})


def augmented_request(image: str) -> dict[str, Any]:
    return {"containerImage": image,
            "containerConfig": {"env": ["WHO=wave", "PATH=/opt/wave/bin:/usr/bin:/bin"], "cmd": ["greet"],
                                "workingDir": "/opt/wave", "layers": [HELLO.request()]}}


@dataclass
class WaveProcess:
    """``python -m wave serve`` on a free loopback port with its state in ``state_dir``."""

    state_dir: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: ManagedProcess | None = None
    source: Path = REPO_ROOT  # the checkout whose wave runs (``python -m wave`` from there)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.popen.pid

    def start(self) -> WaveProcess:
        self.port = free_port()
        env = {**os.environ, "WAVE_STATE_DIR": str(self.state_dir), "WAVE_SERVER_URL": self.url,
               **BENCH_LIMITS_OFF, **self.env}
        env.pop("WAVE_CONFIG", None)
        argv = [sys.executable, "-m", "wave", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = _Child("wave", argv, self.log, env, self.source)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"wave exited with {self.proc.popen.returncode}:\n{self.proc.tail()}")
            try:
                if http_request("GET", f"{self.url}/v2/", timeout=1.0).status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"wave did not answer within {START_TIMEOUT:.0f}s:\n{self.proc.tail()}")
            time.sleep(0.05)

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        got = http_request("POST", f"{self.url}/v1alpha2/container", {"Content-Type": "application/json"},
                           body=orjson.dumps(body), timeout=60)
        if got.status != 200:
            raise RuntimeError(f"wave answered {got.status} to a container request: {got.body[:500]!r}")
        answer = got.json()
        assert isinstance(answer, dict)
        return answer

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class _Child(ManagedProcess):
    """A ManagedProcess with its own environment (dies with this harness, like the registry does)."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path) -> None:
        self.name, self.log = name, log
        if shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
            argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
        with log.open("ab") as out:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          cwd=cwd, env=env)


def target_path(target_image: str) -> tuple[str, str]:
    """``127.0.0.1:P/wt/TOKEN/library/busybox:latest`` -> (``wt/TOKEN/library/busybox``, ``latest``)."""
    rest = target_image.split("/", 1)[1]
    name, _, tag = rest.rpartition(":")
    return name, tag


class CountingProxy:
    """A plain reverse proxy in front of the registry that counts what reaches it, by method and kind.

    The count comes from outside wave: it is what the upstream registry would see.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.counts: Counter[tuple[str, str]] = Counter()
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="counting-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def fetches(self, method: str, kind: str) -> int:
        return self.counts[(method, kind)]

    def reset(self) -> None:
        self._call(self._reset())

    async def _reset(self) -> None:
        self.counts.clear()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")
        kind = next((p for p in ("manifests", "blobs", "tags") if p in parts), "other")
        self.counts[(request.method, kind)] += 1
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read() or None, allow_redirects=False) as upstream:
            body = await upstream.read()
            passed = {k: v for k, v in upstream.headers.items()
                      if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
            return web.Response(status=upstream.status, headers=passed, body=body)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class Profiler:
    """``py-spy record`` attached to wave for one scenario, when asked for (``--profile DIR``)."""

    def __init__(self, directory: Path | None, pid: int) -> None:
        self.directory = directory
        self.pid = pid
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, name: str) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            raise SystemExit(f"--profile needs py-spy: {Path(sys.executable).with_name('pip')} install py-spy")
        out = self.directory / f"{name}.collapsed.txt"
        self._proc = subprocess.Popen([str(spy), "record", "--pid", str(self.pid), "--rate", "250", "--threads",
                                       "--format", "raw", "--output", str(out), "--nonblocking"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None



CEILING_APP = '''
import sys
from aiohttp import web

body = open(sys.argv[2], "rb").read()
headers = {"Docker-Distribution-API-Version": "registry/2.0", "Content-Type": sys.argv[3],
           "Docker-Content-Digest": sys.argv[4], "ETag": '"' + sys.argv[4] + '"'}

async def manifest(request):
    return web.Response(body=body, headers=headers)

app = web.Application()
app.router.add_get("/v2/{name:.+}/manifests/{reference}", manifest)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
'''


class CeilingApp:
    """The smallest aiohttp app serving given manifest bytes with wave's headers (same interpreter, asyncio):
    what a Python server on this machine can do at best, the ceiling for wave's warm manifest path."""

    def __init__(self, workdir: Path, body: bytes, media_type: str, digest: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        body_file = workdir / "ceiling-manifest.json"
        body_file.write_bytes(body)
        argv = [sys.executable, "-c", CEILING_APP, str(self.port), str(body_file), media_type, digest]
        self.proc = _Child("ceiling", argv, workdir / "ceiling.log", dict(os.environ), REPO_ROOT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                http_request("GET", f"{self.url}/v2/x/manifests/latest", timeout=1.0)
                return
            except OSError:
                if not self.proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the ceiling app did not start:\n{self.proc.tail()}") from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.popen.pid

    def stop(self) -> None:
        self.proc.stop()


class RedisServer:
    """A private redis-server on a free loopback port, nothing saved (the machine's Redis stays untouched)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = _Child("redis", argv, workdir / "redis.log", dict(os.environ), workdir)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if not self.proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.proc.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.stop()
