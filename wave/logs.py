"""Quiet, structured logs: one line per request, tokens shortened, credentials never written.

Cheap by design, because the access log runs once per request: no caller look-up, thread or process
names (the format shows none), the timestamp formatted once a second, and nothing at all below INFO.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from wave import keys
from wave.redact import redact_path

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


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


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log collectors; request lines carry their fields under ``http``."""

    def __init__(self, worker: str = "") -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker:
            entry["worker"] = self.worker
        http = getattr(record, "http", None)
        if http is not None:
            entry["http"] = http
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(level: str, fmt: str = "text", worker: str = "") -> None:
    """``worker`` (``wave serve --workers``) goes into every line: which process answered."""
    # Record attributes nothing prints: skip collecting them (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    text_format = FORMAT.replace("%(levelname)s", f"worker-{worker} %(levelname)s") if worker else FORMAT
    handler.setFormatter(JsonFormatter(worker) if fmt == "json" else _Formatter(text_format))
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
        client, path, ms = request.get(keys.CLIENT_IP, request.remote), redact_path(request.path), time * 1000
        self.logger.info("%s %s %s %d %.1fms", client, request.method, path, response.status, ms,
                         extra={"http": {"client": client, "method": request.method, "path": path,
                                         "status": response.status, "ms": round(ms, 1)}})
