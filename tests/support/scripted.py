"""A scripted upstream registry on loopback that counts what it is asked, for tests of wave's behaviour
towards upstreams: single flight and negative caching (count the checks), retries and deadlines (answer
503, stall, trickle), and fuzzing (every image name resolves here, so nothing leaves the machine).

It serves one small image, ``library/busybox:latest`` (a config blob and no layers); anything else is 404.
Behaviour per request is scripted by ``mode``; every request is counted in ``counts`` by (method, kind).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import orjson
from aiohttp import web

from tests.support.wave import BackgroundApp

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = orjson.dumps({"architecture": "amd64", "os": "linux", "config": {},
                       "rootfs": {"type": "layers", "diff_ids": []}})
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                    "digest": CONFIG_DIGEST, "size": len(CONFIG)},
                         "layers": []})
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
BIG_BLOB = bytes(range(256)) * (8 << 10)  # 2 MiB: large enough for wave's socket-to-socket copy
BIG_BLOB_DIGEST = "sha256:" + hashlib.sha256(BIG_BLOB).hexdigest()
REPOSITORY = "library/busybox"

Mode = Literal["normal", "unavailable", "stall", "trickle"]


@dataclass
class Script:
    mode: Mode = "normal"
    retry_after: str | None = None  # sent with 503s
    unavailable_for: int = 0  # in mode "normal", the first this many manifest requests are answered 503 anyway
    trickle_interval: float = 0.5  # seconds between the bytes of a trickled body
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)  # ends stalls
    arrived: threading.Condition = field(default_factory=threading.Condition)  # notified on every request

    def wait_for(self, kind: str, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` requests of a kind (``manifest``, ``blob``, …) have arrived, whatever the method."""
        with self.arrived:
            return self.arrived.wait_for(lambda: self.total(kind) >= count, timeout)

    def total(self, kind: str) -> int:
        return sum(n for (_, k), n in self.counts.items() if k == kind)


class ScriptedRegistry(BackgroundApp):
    def __init__(self) -> None:
        self.script = Script()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app)

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, repository: str = REPOSITORY, tag: str = "latest") -> str:
        return f"{self.authority}/{repository}:{tag}"

    def _count(self, method: str, kind: str) -> None:
        with self.script.arrived:
            self.script.counts[(method, kind)] += 1
            self.script.arrived.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")
        kind = next((p for p in ("manifests", "blobs", "tags") if p in parts), "other")
        kind = kind.rstrip("s")
        self._count(request.method, kind)
        script = self.script
        if request.path in ("/v2", "/v2/"):
            return web.json_response({})
        if script.mode == "unavailable" or (kind == "manifest" and script.unavailable_for > 0):
            script.unavailable_for -= 1
            headers = {"Retry-After": script.retry_after} if script.retry_after else {}
            return web.Response(status=503, text="unavailable", headers=headers)
        if script.mode == "stall":  # answer nothing until released, and count the clients that give up
            while not script.release.is_set():
                if request.transport is None or request.transport.is_closing():
                    self._count(request.method, "gone")
                    return web.Response(status=499)
                await asyncio.sleep(0.02)
        body, media_type, digest = self._find(request.path)
        if body is None:
            code = "BLOB_UNKNOWN" if kind == "blob" else "MANIFEST_UNKNOWN"
            return web.json_response({"errors": [{"code": code, "message": "not found"}]}, status=404)
        headers = {"Docker-Content-Digest": digest, "Content-Type": media_type}
        if script.mode == "trickle" and request.method == "GET":
            response = web.StreamResponse(headers={**headers, "Content-Length": str(len(body))})
            await response.prepare(request)
            try:
                for i in range(len(body)):
                    await response.write(body[i:i + 1])
                    if script.release.wait(0):
                        break
                    await asyncio.sleep(script.trickle_interval)  # the behaviour under test: a slow peer
                await response.write(body[i + 1:])
            except ConnectionResetError:  # wave cut it off
                self._count(request.method, "gone")
            return response
        return web.Response(body=body, headers=headers)

    @staticmethod
    def _find(path: str) -> tuple[bytes | None, str, str]:
        prefix = f"/v2/{REPOSITORY}/"
        if not path.startswith(prefix):
            return None, "", ""
        rest = path[len(prefix):]
        if rest in ("manifests/latest", f"manifests/{MANIFEST_DIGEST}"):
            return MANIFEST, OCI_MANIFEST, MANIFEST_DIGEST
        if rest == f"blobs/{CONFIG_DIGEST}":
            return CONFIG, "application/octet-stream", CONFIG_DIGEST
        if rest == f"blobs/{BIG_BLOB_DIGEST}":
            return BIG_BLOB, "application/octet-stream", BIG_BLOB_DIGEST
        return None, "", ""

    def stop(self) -> None:
        self.script.release.set()
        super().stop()
