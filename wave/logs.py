"""Quiet, structured logs: one line per request, tokens shortened, credentials never written.

Cheap by design, because the access log runs once per request: no caller look-up, thread or process
names (the format shows none), the timestamp formatted once a second, and nothing at all below INFO.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
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
    global _access_lines
    _access_lines = AccessLines(handler, fmt, worker)
    for noisy in ("aiohttp.access", "kubernetes", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.WARNING))


class AccessLines:
    """Request lines written in batches: formatted here (the same text or JSON the log formatter writes, without
    a log record per request) and written to the log stream a few times a second, in one call, instead of one
    locked write per request. Whatever is pending is written when the process exits."""

    FLUSH_AFTER = 0.2  # seconds a line may wait
    MAX_PENDING = 256  # lines; more are written at once

    def __init__(self, handler: logging.StreamHandler, fmt: str, worker: str) -> None:  # type: ignore[type-arg]
        self._handler = handler
        self._json = fmt == "json"
        self._prefix = f" worker-{worker} INFO wave.access " if worker else " INFO wave.access "
        self._worker = worker
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        atexit.register(self.flush)

    def add(self, client: str | None, method: str, path: str, status: int, ms: float) -> None:
        now = time.time()
        if self._json:
            entry: dict[str, object] = {
                "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"), "level": "INFO",
                "logger": "wave.access", "message": f"{client} {method} {path} {status} {ms:.1f}ms",
                "http": {"client": client, "method": method, "path": path, "status": status, "ms": round(ms, 1)}}
            if self._worker:
                entry["worker"] = self._worker
            self._lines.append(orjson.dumps(entry).decode() + "\n")
        else:
            second = int(now)
            if second != self._second:
                self._stamp, self._second = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)), second
            self._lines.append(f"{self._stamp},{int((now - second) * 1000):03d}{self._prefix}"
                               f"{client} {method} {path} {status} {ms:.1f}ms\n")
        if len(self._lines) >= self.MAX_PENDING:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text, self._lines = "".join(self._lines), []
        with self._handler.lock or contextlib.nullcontext():
            try:
                self._handler.stream.write(text)
                self._handler.stream.flush()
            except (OSError, ValueError):  # the stream went away at exit
                pass


_access_lines: AccessLines | None = None


class AccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        """aiohttp skips timing and calling log() altogether when INFO is off."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.method == "UNKNOWN":  # a client probing TLS on a plain-http port first (skopeo does)
            return
        client, path, ms = request.get(keys.CLIENT_IP, request.remote), redact_path(request.path), time * 1000
        if _access_lines is not None and self.logger.name == "wave.access":
            _access_lines.add(client, request.method, path, response.status, ms)
            return
        self.logger.info("%s %s %s %d %.1fms", client, request.method, path, response.status, ms,
                         extra={"http": {"client": client, "method": request.method, "path": path,
                                         "status": response.status, "ms": round(ms, 1)}})
