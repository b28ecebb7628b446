"""``WWW-Authenticate`` challenges and the Bearer token cache.

Parsing is pure; the cache keys tokens by (registry, repository, credentials) so that two users' tokens are
never mixed up, and drops each a little before it expires.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_PARAM_RE = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" | "basic" | other, lowercase
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str | None) -> Challenge | None:
    """``Bearer realm="…",service="…",scope="…"`` or ``Basic realm="…"``; None when absent or garbled."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m[1].lower(): m[2].replace('\\"', '"') if m[2] is not None else m[3] for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def credentials_id(credentials: tuple[str, str] | None) -> str:
    """A cache key part that tells credentials apart without keeping them readable."""
    if credentials is None:
        return "anonymous"
    return hashlib.sha256("\0".join(credentials).encode()).hexdigest()[:16]


class TokenCache:
    """Bearer tokens per (registry, repository, credentials) until shortly before they expire."""

    MARGIN = 10.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._clock = clock

    def get(self, registry: str, repository: str, creds: str) -> str | None:
        entry = self._tokens.get((registry, repository, creds))
        if entry and entry[1] > self._clock():
            return entry[0]
        return None

    def put(self, registry: str, repository: str, creds: str, token: str, expires_in: float) -> None:
        lifetime = max(expires_in - self.MARGIN, 1.0)
        self._tokens[(registry, repository, creds)] = (token, self._clock() + lifetime)

    def drop(self, registry: str, repository: str, creds: str) -> None:
        self._tokens.pop((registry, repository, creds), None)
