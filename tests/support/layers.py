"""Layers to inject: real gzip'd tarballs with their digests, as a request's ``containerConfig.layers``."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class LayerFile:
    gzip_bytes: bytes
    tar_bytes: bytes

    @property
    def gzip_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.gzip_bytes).hexdigest()

    @property
    def tar_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.tar_bytes).hexdigest()

    def request(self, location: str | None = None) -> dict[str, object]:
        """The layer as the API takes it; inline (``data:``) unless a location is given."""
        return {
            "location": location or "data:" + base64.b64encode(self.gzip_bytes).decode(),
            "gzipDigest": self.gzip_digest,
            "gzipSize": len(self.gzip_bytes),
            "tarDigest": self.tar_digest,
        }


def make_layer(files: dict[str, bytes | str]) -> LayerFile:
    """A reproducible layer holding the given files (mode 0755 for anything under bin/)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if "/bin/" in f"/{path}" else 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = buffer.getvalue()
    return LayerFile(gzip.compress(tar_bytes, mtime=0), tar_bytes)


@contextmanager
def serve_files(files: dict[str, bytes]) -> Iterator[str]:
    """A plain http server on loopback serving ``files`` by path; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
