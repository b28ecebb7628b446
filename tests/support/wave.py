"""A real wave server on a loopback port, run on its own thread and event loop.

Tests drive it like users do, with real clients (skopeo, podman, ctr) that are blocking subprocesses: the
server must keep serving while a test waits for one, so it cannot share the test's event loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson
from aiohttp import web

from tests.support.registry import HttpResponse, free_port, http_request
from wave import keys
from wave.app import create_app
from wave.config import Settings, load_settings
from wave.oci.models import ContainerConfig
from wave.oci.platform import DEFAULT_PLATFORM
from wave.oci.reference import parse_reference
from wave.tokens import ContainerRequest, new_token

T = TypeVar("T")


class BackgroundApp:
    """An aiohttp application served on 127.0.0.1 from its own thread and event loop."""

    def __init__(self, app: web.Application, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self._runner: web.AppRunner | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="background-app", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackgroundApp:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the app's loop (to reach its services) and wait for the result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            self.call(self._runner.cleanup())
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class WaveServer(BackgroundApp):
    """wave itself, as a client reaches it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings), settings.port)
        self.settings = settings

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.settings.port}"

    # --- what a user does ---------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 60) -> HttpResponse:
        data = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else headers
        return http_request(method, self.url + path, hdrs, body=data, timeout=timeout)

    def submit(self, body: dict[str, Any], path: str = "/v1alpha2/container") -> dict[str, Any]:
        """POST a container request and return the JSON answer; fails the test on an error status."""
        response = self.request("POST", path, body)
        assert response.status == 200, f"{response.status}: {response.body.decode(errors='replace')}"
        answer = response.json()
        assert isinstance(answer, dict)
        return answer

    def completed_build(self, build_id: str, timeout: float = 240) -> dict[str, Any]:
        """The build's status once it is COMPLETED, as a client polling the API sees it; fails the test when
        it is still running after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.request("GET", f"/v1alpha1/builds/{build_id}/status").json()
            assert isinstance(status, dict)
            if status["status"] == "COMPLETED":
                return status
            assert time.monotonic() < deadline, f"build {build_id} still {status}"
            time.sleep(0.1)  # the API has no way to wait for a build: poll it, as clients do


def start_wave(state_dir: Any, configure: Callable[[dict[str, Any]], None] | None = None,
               **overrides: Any) -> WaveServer:
    """A wave on a free port, configured like a fresh install plus ``overrides`` (Settings fields)."""
    port = free_port()
    values: dict[str, Any] = {"state_dir": state_dir, "port": port, "server_url": f"http://127.0.0.1:{port}"}
    values.update(overrides)
    if configure:
        configure(values)
    return WaveServer(load_settings(environ={}, **values)).start()


async def issue_plain_token(wave: WaveServer, image: str) -> str:
    """A token for an image whose upstream is a stub, stored directly, as the API would after its upstream
    check (which a stub that serves only blobs would not pass)."""
    now = time.time()
    request = ContainerRequest(new_token(), parse_reference(image), ContainerConfig(), DEFAULT_PLATFORM, now,
                               now + 600)
    await wave.app[keys.TOKENS].save(request)
    return request.token


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything a raw connection to wave receives until wave closes it (a reset ends it too)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)
