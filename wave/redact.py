"""What may be written about a request: tokens shortened to a prefix that identifies them in logs and errors
without letting anyone pull with them. Pure, so the lowest modules can use it."""

from __future__ import annotations

import re

# A token in any route: /v2/wt/<token>/…, /container-token/<token>, /v1alpha2/container/<token>/status
_TOKEN_RE = re.compile(r"(/(?:wt|container-token|container)/[a-z0-9]{8})[a-z0-9]+")
_PAIRING_RE = re.compile(r"(/pairing/[^/]+/token/)[^/?]+")  # a Platform license token: never logged


def redact_path(path: str) -> str:
    """Keep 8 characters of a token: enough to follow one in the logs, useless to pull with."""
    if path.startswith("/pairing/"):
        return _PAIRING_RE.sub(r"\1…", path)
    return _TOKEN_RE.sub(_keep_prefix, path) if "/wt/" in path or "/container" in path else path


def _keep_prefix(match: re.Match[str]) -> str:
    return match[1] + "…"  # a function: a template (r"\1…") is re-expanded in Python on every call
