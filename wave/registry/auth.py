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

from wave.bounded import BoundedCache

_PARAM_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_SEPARATOR_RE = re.compile(r"\s*,\s*(?=[a-zA-Z_][a-zA-Z0-9_-]*\s*=)")
_SCHEME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_UNESCAPE_RE = re.compile(r"\\(.)")



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
    if not _SCHEME_RE.fullmatch(scheme):
        return None
    params: dict[str, str] = {}
    position = 0
    while match := _PARAM_RE.match(rest, position):
        params[match[1].lower()] = _UNESCAPE_RE.sub(r"\1", match[2]) if match[2] is not None else match[3]
        position = match.end()
        separator = _SEPARATOR_RE.match(rest, position)
        if separator is None:  # anything else (e.g. a second challenge) ends this one
            break
        position = separator.end()
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
    MAX_ENTRIES = 10_000  # keys come from user-chosen registries and repositories: keep memory bounded

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: BoundedCache[tuple[str, str, str], str] = BoundedCache(self.MAX_ENTRIES, clock=clock)

    def get(self, registry: str, repository: str, creds: str) -> str | None:
        return self._tokens.get((registry, repository, creds))

    def put(self, registry: str, repository: str, creds: str, token: str, expires_in: float) -> None:
        self._tokens.put((registry, repository, creds), token, ttl=max(expires_in - self.MARGIN, 1.0))

    def drop(self, registry: str, repository: str, creds: str) -> None:
        self._tokens.pop((registry, repository, creds))


@dataclass(frozen=True)
class UpstreamAuth:
    """Who wave is towards a registry for one request, and how errors name it (never showing the secret).

    ``credentials`` None is anonymous; ``missing`` then says why (e.g. the user has no Platform credentials for
    that registry), so a refusal tells the user what to fix."""

    credentials: tuple[str, str] | None = field(default=None, repr=False)
    source: str = "the configured credentials"
    missing: str = ""

    @property
    def id(self) -> str:
        return credentials_id(self.credentials)

    def refused(self, registry: str, repository: str, status: int, by: str = "registry") -> str:
        """Why access was refused, naming what was (or was not) presented. ``by``: who answered (the registry,
        or its token service)."""
        who = "the registry" if by == "registry" else "it"
        if self.credentials is not None:
            return f"{by} {registry} denied access to {repository} with {self.source}; {who} answered {status}"
        if self.missing:
            answerer = "the registry" if by == "registry" else f"{by} {registry}"
            return f"{self.missing}; {answerer} answered {status} for {repository}"
        return (f"{by} {registry} denied access to {repository} anonymously; {who} answered {status}"
                + credentials_hint(registry))


def credentials_hint(registry: str) -> str:
    """What to configure when a registry refuses anonymous access: the setting, its key and its format."""
    return (f"; if it needs credentials, give them to wave as WAVE_REGISTRY_CREDENTIALS={registry}=USER:PASSWORD "
            "(format host=user:password, comma-separated for several registries)")
