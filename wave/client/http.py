"""The client's side of the control API: JSON over HTTP, and errors a user can read in one line.

Synchronous stdlib HTTP on purpose: a CLI makes one request at a time, and starting no event loop keeps
``wave request`` quick in a CI job.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from wave import __version__

DEFAULT_SERVER = "http://localhost:9090"
TIMEOUT = 120.0  # seconds for one request: a container request may check its image upstream first

# Exit codes, the same for every command (the README lists them).
EXIT_OK = 0
EXIT_FAILED = 1  # wave answered with an error, or the build failed
EXIT_USAGE = 2  # the command line is wrong, or a local file cannot be used (argparse uses 2 as well)
EXIT_UNREACHABLE = 3  # wave could not be reached, or answered something that is not its API
EXIT_TIMEOUT = 4  # --await gave up before the build finished


class ClientError(Exception):
    """A failure shown as one line ``wave: <message>``, then ``exit(code)``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class WaveApi:
    """A wave server's control API at ``server`` (``http(s)://host[:port]``)."""

    server: str

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientError(f"--server must be an http(s) URL such as {DEFAULT_SERVER}, not {self.server!r}",
                              EXIT_USAGE)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._send("POST", path, json.dumps(body).encode())
        return _object(answer, path)

    def get(self, path: str) -> dict[str, Any]:
        return _object(self._send("GET", path, None), path)

    def text(self, path: str) -> str:
        return self._send("GET", path, None).decode("utf-8", "replace")

    def _send(self, method: str, path: str, data: bytes | None) -> bytes:
        url = self.server.rstrip("/") + path
        headers = {"Accept": "application/json", "User-Agent": f"wave-client/{__version__}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            raise ClientError(_error_message(exc), EXIT_FAILED) from None
        except urllib.error.URLError as exc:
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
            raise ClientError(f"cannot reach wave at {self.server}: {reason} "
                              "(start it with `wave serve`, or point --server / WAVE_SERVER at it)",
                              EXIT_UNREACHABLE) from None
        except TimeoutError:
            raise ClientError(f"wave at {self.server} did not answer within {TIMEOUT:.0f}s", EXIT_UNREACHABLE) from None
        except OSError as exc:
            raise ClientError(f"cannot talk to wave at {self.server}: {exc}", EXIT_UNREACHABLE) from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    """``HTTP 400: <wave's message>``; wave's control API errors are ``{"message": …}``."""
    raw = exc.read()[:65536]
    message = None
    try:
        parsed = json.loads(raw)
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
    except ValueError:
        pass
    if message is None:
        message = raw.decode("utf-8", "replace").strip().splitlines()[0][:300] if raw.strip() else exc.reason
    return f"wave answered {exc.code}: {message}"


def _object(data: bytes, path: str) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError:
        raise ClientError(f"the server's answer to {path} is not JSON: is --server a wave server?",
                          EXIT_UNREACHABLE) from None
    if not isinstance(parsed, dict):
        raise ClientError(f"the server's answer to {path} is not a JSON object", EXIT_UNREACHABLE)
    return parsed
