"""What may be written about a request: tokens shortened to a prefix that identifies them in logs and errors
without letting anyone pull with them, credentials removed, lengths capped. Pure, so the lowest modules can
use it."""

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


MAX_LINE = 2000  # characters of a message kept; the rest is cut (an oversized URL or header is not logged whole)
# Credentials in any text: an Authorization (or Proxy-Authorization) header, a Basic/Bearer credential, cookies.
_CREDENTIAL_RE = re.compile(
    r"(?i)((?:proxy-)?authorization['\"]?\s*[:=,]\s*['\"]?(?:[a-z]+\s+)?|\b(?:basic|bearer)\s+"
    r"|(?:set-)?cookie['\"]?\s*[:=,]\s*['\"]?)[^\s'\"]+"
)
# A bare wave token (32 lowercase hex, alone: not part of a longer hex run such as a sha256 digest)
_BARE_TOKEN_RE = re.compile(r"(?<![0-9a-f])([0-9a-f]{8})[0-9a-f]{24}(?![0-9a-f])")


def redact_text(text: str, limit: int = MAX_LINE) -> str:
    """What may be written of any text that came from a request: tokens shortened, credentials removed,
    the length capped. Used on every log record of wave's and aiohttp's loggers."""
    if "/wt/" in text or "/container" in text:
        text = redact_path(text)
    text = _CREDENTIAL_RE.sub(_credential_removed, text)
    text = _BARE_TOKEN_RE.sub(_keep_token_prefix, text)
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters cut)"
    return text


def _credential_removed(match: re.Match[str]) -> str:
    return match[1] + "<redacted>"


def _keep_token_prefix(match: re.Match[str]) -> str:
    return match[1] + "…"
