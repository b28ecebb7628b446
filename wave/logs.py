"""Quiet, structured logs: one line per request, tokens shortened, credentials never written."""

from __future__ import annotations

import logging
import re
import sys

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_TOKEN_RE = re.compile(r"(/wt/[a-z0-9]{8})[a-z0-9]+")


def redact_path(path: str) -> str:
    """Keep 8 characters of a token: enough to follow one in the logs, useless to pull with."""
    return _TOKEN_RE.sub(r"\1…", path)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    for noisy in ("aiohttp.access", "kubernetes", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.WARNING))


class AccessLogger(AbstractAccessLogger):
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
