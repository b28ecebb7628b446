"""Quiet, structured logs: one line per request, tokens shortened, credentials never written.

Cheap by design, because the access log runs once per request: no caller look-up, thread or process
names (the format shows none), the timestamp formatted once a second, and nothing at all below INFO.
"""

from __future__ import annotations

import logging
import re
import sys
import time

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# A token in any route: /v2/wt/<token>/…, /container-token/<token>, /v1alpha2/container/<token>/status
_TOKEN_RE = re.compile(r"(/(?:wt|container-token|container)/[a-z0-9]{8})[a-z0-9]+")
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def redact_path(path: str) -> str:
    """Keep 8 characters of a token: enough to follow one in the logs, useless to pull with."""
    return _TOKEN_RE.sub(_keep_prefix, path) if "/wt/" in path or "/container" in path else path


def _keep_prefix(match: re.Match[str]) -> str:
    return match[1] + "…"  # a function: a template (r"\1…") is re-expanded in Python on every call


class _Formatter(logging.Formatter):
    """The standard format, with the seconds part of ``asctime`` formatted once per second."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"


def setup_logging(level: str) -> None:
    # Record attributes nothing prints: skip collecting them (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("aiohttp.access", "kubernetes", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.WARNING))


class AccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        """aiohttp skips timing and calling log() altogether when INFO is off."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.method == "UNKNOWN":  # a client probing TLS on a plain-http port first (skopeo does)
            return
        self.logger.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            redact_path(request.path),
            response.status,
            time * 1000,
        )
