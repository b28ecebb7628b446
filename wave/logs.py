"""Quiet, structured logs: one line per request, tokens shortened, credentials never written.

Cheap by design, because the access log runs once per request: the edge (:mod:`wave.edge`) hands each
request's fields to :class:`AccessLines`, which formats and writes them in batches (no log record, caller
look-up, thread or process name per request; the timestamp formatted once a second; nothing below INFO).
Formatting a line as the request ended cost 6 µs of a warm manifest GET's ~80 in the server (a loop over a
batch runs with its code and data in the CPU's caches).
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

from wave.redact import redact_path, redact_text

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
MAX_PATH = 512  # characters of a path in an access line


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
        if record.exc_info or record.exc_text:
            entry["error"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return orjson.dumps(entry).decode()


def setup_logging(level: str, fmt: str = "text", worker: str = "") -> None:
    """``worker`` (``wave serve --workers``) goes into every line: which process answered."""
    # Record attributes nothing prints: skip collecting them (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    text_format = FORMAT.replace("%(levelname)s", f"worker-{worker} %(levelname)s") if worker else FORMAT
    handler.setFormatter(JsonFormatter(worker) if fmt == "json" else _Formatter(text_format))
    install_redaction(handler)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    global _access_lines
    _access_lines = AccessLines(handler, fmt, worker) if logging.getLogger("wave.access").isEnabledFor(
        logging.INFO) else None
    for noisy in ("aiohttp.access", "kubernetes", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.WARNING))


class AccessLines:
    """Request lines written in batches: formatted here (the same text or JSON the log formatter writes, without
    a log record per request) when a batch is written, a few times a second, in one call, instead of one
    locked write per request. Whatever is pending is written when the process exits."""

    FLUSH_AFTER = 0.2  # seconds a line may wait
    MAX_PENDING = 256  # lines; more are written at once

    def __init__(self, handler: logging.StreamHandler, fmt: str, worker: str) -> None:  # type: ignore[type-arg]
        self._handler = handler
        self._json = fmt == "json"
        self._prefix = f" worker-{worker} INFO wave.access " if worker else " INFO wave.access "
        self._worker = worker
        self._pending: list[tuple[float, str | None, str, str, int, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        atexit.register(self.flush)

    def add(self, client: str | None, method: str, path: str, status: int, seconds: float) -> None:
        """One request: its client's address, method, path (redacted and cut when written), status and time."""
        self._pending.append((time.time(), client, method, path, status, seconds))
        if len(self._pending) >= self.MAX_PENDING:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        text = "".join([self._line(*entry) for entry in pending])
        with self._handler.lock or contextlib.nullcontext():
            try:
                self._handler.stream.write(text)
                self._handler.stream.flush()
            except (OSError, ValueError):  # the stream went away at exit
                pass

    def _line(self, now: float, client: str | None, method: str, raw_path: str, status: int, seconds: float) -> str:
        path = _redacted.get(raw_path)
        if path is None:  # a pull asks for the same few paths again and again: redact each once
            if len(_redacted) >= 4096:
                _redacted.clear()
            path = _redacted[raw_path] = redact_path(raw_path)
        if len(path) > MAX_PATH or len(method) > 16 or (client and len(client) > 64):  # hostile sizes, cut
            path, method, client = _cut(path, MAX_PATH), _cut(method, 16), _cut(client, 64) if client else client
        ms = seconds * 1000
        if self._json:
            entry: dict[str, object] = {
                "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"), "level": "INFO",
                "logger": "wave.access", "message": f"{client} {method} {path} {status} {ms:.1f}ms",
                "http": {"client": client, "method": method, "path": path, "status": status, "ms": round(ms, 1)}}
            if self._worker:
                entry["worker"] = self._worker
            return orjson.dumps(entry).decode() + "\n"
        second = int(now)
        if second != self._second:
            self._stamp, self._second = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)), second
        return (f"{self._stamp},{int((now - second) * 1000):03d}{self._prefix}"
                f"{client} {method} {path} {status} {ms:.1f}ms\n")


_access_lines: AccessLines | None = None
_redacted: dict[str, str] = {}  # request path -> as logged


def access_lines() -> AccessLines | None:
    """Where the edge writes request lines: None before :func:`setup_logging` (tests) and below INFO."""
    return _access_lines


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# --- redaction of every log line, aiohttp's own included ---------------------------------------------

MALFORMED_BURST = 10  # malformed-request lines logged per window; the rest are counted and summarised
MALFORMED_WINDOW = 60.0
MAX_TRACEBACK = 8000


class _Malformed:
    """Counts malformed requests: at most MALFORMED_BURST lines a window, then one line saying how many were
    not logged, so a flood of garbage cannot flood the log."""

    def __init__(self) -> None:
        self.window_start = -MALFORMED_WINDOW
        self.logged = 0
        self.suppressed = 0

    def allow(self, now: float) -> tuple[bool, int]:
        """(log this one?, how many were suppressed before it)."""
        if now - self.window_start >= MALFORMED_WINDOW:
            suppressed, self.suppressed = self.suppressed, 0
            self.window_start, self.logged = now, 1
            return True, suppressed
        if self.logged < MALFORMED_BURST:
            self.logged += 1
            return True, 0
        self.suppressed += 1
        return False, 0


def _is_malformed_request(exc: BaseException | None) -> bool:
    """A parse error of the request (its line, headers or body encoding), however aiohttp wrapped it."""
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    for _ in range(4):
        if exc is None:
            return False
        if isinstance(exc, HttpProcessingError | RequestPayloadError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class RedactingFilter(logging.Filter):
    """Rewrites records before any handler sees them: the message formatted, redacted and capped, a traceback
    redacted; aiohttp's parse errors (a malformed request line, an oversized header, a bad method) become one
    rate-limited warning that names the peer and the kind of error, never the request's bytes or a traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.malformed = _Malformed()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "wave.access":  # built from redacted, capped fields already: keep the warm path cheap
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and _is_malformed_request(exc):
            return self._malformed_request(record, exc)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(_traceback_text(record), MAX_TRACEBACK)
        return True

    def _malformed_request(self, record: logging.LogRecord, exc: BaseException | None) -> bool:
        allowed, suppressed = self.malformed.allow(time.monotonic())
        if not allowed:
            return False
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"  # body errors: no peer
        more = f" ({suppressed} more since the last such line)" if suppressed else ""
        record.msg, record.args = "malformed request from %s: %s%s", (peer, type(exc).__name__, more)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _traceback_text(record: logging.LogRecord) -> str:
    assert record.exc_info is not None
    return logging.Formatter().formatException(record.exc_info)


_FILTER = RedactingFilter()
# aiohttp's loggers (its server logs parse errors with the offending bytes) and wave's own
REDACTED_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.internal", "aiohttp.client",
                    "aiohttp.websocket")


def install_redaction(handler: logging.Handler | None = None) -> RedactingFilter:
    """Put the redacting filter on aiohttp's loggers (records they log pass it before any handler, a test's
    capture included) and on ``handler`` (every record that reaches the service log). Idempotent."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if handler is not None and _FILTER not in handler.filters:
        handler.addFilter(_FILTER)
    return _FILTER
