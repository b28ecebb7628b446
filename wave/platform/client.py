"""The Seqera Platform HTTP client: user-info, token refresh, credentials and their keys.

Every call goes through a *transport*: the pairing socket of that Platform when one is open (Platform then
makes the HTTP call inside its own network, see :mod:`wave.platform.tunnel`), else plain HTTP(S) through
wave's session. A call answered 401 is retried once with tokens refreshed through
``POST /oauth/access_token``; concurrent refreshes of one token share one call, and the newest pair is kept
(in memory, keyed by a hash of endpoint and the original token) so later calls use it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from wave.bounded import BoundedCache
from wave.errors import Unavailable
from wave.http import refusal_text, refused_address
from wave.platform import crypto
from wave.platform.models import CredentialEntry, PlatformUser, TokenPair
from wave.store.base import KeyValueStore

log = logging.getLogger("wave.platform")

DEFAULT_ENDPOINT = "https://api.cloud.seqera.io"
LEGACY_HOSTS = {"api.tower.nf": "api.cloud.seqera.io", "api.stage-tower.net": "api.cloud.stage-seqera.io"}
MAX_BODY = 4 << 20
MAX_REFRESHED = 10_000  # newest token pairs remembered
REFRESHED_TTL = 7 * 86400.0  # how long a refreshed pair is shared through the store


class PlatformError(Exception):
    """A Platform call failed; ``status`` is what wave should answer (503: Platform unreachable)."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class PlatformRefused(PlatformError):
    """Platform refused the user's token (401/403, after one refresh when a refresh token was given)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 401)


def normalize_endpoint(endpoint: str | None) -> str:
    """The API URL a request names (the default when none), legacy hosts rewritten, no trailing slash."""
    text = (endpoint or "").strip().rstrip("/") or DEFAULT_ENDPOINT
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"towerEndpoint must be an http(s) URL, not {text[:100]!r}")
    host = LEGACY_HOSTS.get(parts.hostname)
    if host is not None:
        netloc = host + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts._replace(query="", fragment=""))


def token_key(endpoint: str, token: str) -> str:
    """How caches name a token: a hash, never the token."""
    return hashlib.sha256(f"{endpoint}\0{token}".encode()).hexdigest()


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str
    headers: Mapping[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, values in self.headers.items() if k.lower() == lower for v in values]

    def json(self) -> dict[str, Any]:
        try:
            document = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise PlatformError("Seqera Platform answered with a body that is not JSON", 502) from None
        if not isinstance(document, dict):
            raise PlatformError("Seqera Platform answered with JSON that is not an object", 502)
        return document


@dataclass(frozen=True)
class HttpCall:
    """One call as both transports carry it (the shape of a ``proxy-http-request``)."""

    method: str
    uri: str
    auth: str | None = field(default=None, repr=False)  # the user's access token
    body: str | None = field(default=None, repr=False)
    headers: Mapping[str, list[str]] = field(default_factory=dict)


class Transport(Protocol):
    async def send(self, endpoint: str, call: HttpCall) -> HttpAnswer | None:
        """The answer, or None when this transport cannot carry calls to ``endpoint`` now."""
        ...


class DirectTransport:
    """Plain HTTP(S) through wave's one outbound session."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        self._session = session
        self._timeout = timeout

    async def send(self, endpoint: str, call: HttpCall) -> HttpAnswer | None:
        headers = {k: ", ".join(v) for k, v in call.headers.items()}
        if call.auth:
            headers["Authorization"] = f"Bearer {call.auth}"
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(call.method, call.uri, headers=headers,
                                                 data=call.body.encode() if call.body is not None else None,
                                                 allow_redirects=False) as response:
                    if (response.content_length or 0) > MAX_BODY:
                        raise PlatformError(f"Seqera Platform at {endpoint} sent a body that is too large", 502)
                    data = await response.content.read(MAX_BODY + 1)
                    if len(data) > MAX_BODY:
                        raise PlatformError(f"Seqera Platform at {endpoint} sent a body that is too large", 502)
                    answer_headers: dict[str, list[str]] = {}
                    for key, value in response.headers.items():
                        answer_headers.setdefault(key, []).append(value)
                    return HttpAnswer(response.status, data.decode("utf-8", "replace"), answer_headers)
        except TimeoutError:
            raise PlatformError(f"Seqera Platform at {endpoint} did not answer within {self._timeout:.0f}s",
                                504) from None
        except aiohttp.ClientError as exc:
            refused = refused_address(exc)
            if refused is not None:  # the address policy, not the network (wave.http)
                raise PlatformError(f"Seqera Platform at {endpoint}: {refusal_text(refused.where)}", 400) from None
            log.warning("Seqera Platform at %s unreachable: %s", endpoint, type(exc).__name__)
            raise PlatformError(f"Seqera Platform at {endpoint} is unreachable", 503) from None


class PlatformClient:
    """Calls to any Platform; ``tunnel`` (the pairing sockets) is tried before ``direct``."""

    def __init__(self, direct: Transport, tunnel: Transport | None = None, *, store: KeyValueStore | None = None,
                 secret_key: str = "") -> None:
        self._direct = direct
        self._tunnel = tunnel
        # With a shared secret, refreshed tokens are shared (sealed) with the other replicas: Platform rotates
        # the refresh token, so a replica refreshing with the old one would be refused.
        self._store = store if secret_key else None
        self._seal = crypto.derive_key(secret_key, "platform-refreshed") if secret_key else b""
        self._newest: BoundedCache[str, TokenPair] = BoundedCache(MAX_REFRESHED)
        self._refreshing: dict[str, asyncio.Future[TokenPair]] = {}
        self.refreshes = 0  # calls to /oauth/access_token made (tests and metrics read it)

    async def send(self, endpoint: str, call: HttpCall) -> HttpAnswer:
        if self._tunnel is not None:
            answer = await self._tunnel.send(endpoint, call)
            if answer is not None:
                return answer
        answer = await self._direct.send(endpoint, call)
        assert answer is not None
        return answer

    def current(self, endpoint: str, tokens: TokenPair) -> TokenPair:
        """The newest tokens known for a pair (the pair itself until it was refreshed)."""
        return self._newest.get(token_key(endpoint, tokens.access)) or tokens

    async def authorized(self, endpoint: str, tokens: TokenPair, method: str, path: str) -> HttpAnswer:
        """A call with the user's token; on 401 with a refresh token, refresh once and retry once."""
        key = token_key(endpoint, tokens.access)
        current = self._newest.get(key) or tokens
        accept = {"Accept": ["application/json"]}
        answer = await self.send(endpoint, HttpCall(method, endpoint + path, current.access, None, accept))
        if answer.status != 401 or not current.refresh:
            return answer
        shared = await self._shared_newest(key)
        if shared is not None and shared.access != current.access:  # another replica refreshed it
            self._remember(key, shared)
            answer = await self.send(endpoint, HttpCall(method, endpoint + path, shared.access, None, accept))
            if answer.status != 401 or not shared.refresh:
                return answer
            current = shared
        renewed = await self._refresh_shared(endpoint, key, current)
        return await self.send(endpoint, HttpCall(method, endpoint + path, renewed.access, None, accept))

    async def _refresh_shared(self, endpoint: str, key: str, current: TokenPair) -> TokenPair:
        newest = self._newest.get(key)
        if newest is not None and newest.access != current.access:
            return newest  # someone refreshed while this call was out
        task = self._refreshing.get(key)
        if task is None:
            task = asyncio.ensure_future(self._refresh(endpoint, key, current))
            self._refreshing[key] = task
            task.add_done_callback(lambda _: self._refreshing.pop(key, None))
        return await asyncio.shield(task)

    async def _refresh(self, endpoint: str, key: str, current: TokenPair) -> TokenPair:
        assert current.refresh is not None
        self.refreshes += 1
        body = urlencode({"grant_type": "refresh_token", "refresh_token": current.refresh})
        answer = await self.send(endpoint, HttpCall(
            "POST", f"{endpoint}/oauth/access_token", None, body,
            {"Content-Type": ["application/x-www-form-urlencoded"], "Accept": ["application/json"]}))
        if answer.status in (400, 401, 403):
            raise PlatformRefused(f"Seqera Platform at {endpoint} refused to refresh the access token "
                                  f"(towerRefreshToken); it answered {answer.status}")
        if answer.status != 200:
            raise PlatformError(f"Seqera Platform at {endpoint} answered {answer.status} to a token refresh", 502)
        cookies = _cookies(answer.header("Set-Cookie"))
        access = cookies.get("JWT")
        if not access:
            raise PlatformError(f"Seqera Platform at {endpoint} refreshed the token but sent no JWT cookie", 502)
        renewed = TokenPair(access, cookies.get("JWT_REFRESH_TOKEN") or current.refresh)
        self._remember(key, renewed)
        if self._store is not None:
            sealed = crypto.seal(self._seal, orjson.dumps({"access": renewed.access, "refresh": renewed.refresh}),
                                 f"refreshed/{key}")
            try:
                await self._store.put(f"platform/refreshed/{key}", sealed.encode(), ttl=REFRESHED_TTL)
            except Unavailable:
                log.warning("could not share a refreshed Platform token with the other replicas")
        log.info("refreshed a Seqera Platform access token for %s", endpoint)
        return renewed

    def _remember(self, key: str, tokens: TokenPair) -> None:
        self._newest.put(key, tokens)

    async def _shared_newest(self, key: str) -> TokenPair | None:
        if self._store is None:
            return None
        try:
            data = await self._store.get(f"platform/refreshed/{key}")
            if data is None:
                return None
            opened = orjson.loads(crypto.unseal(self._seal, data.decode(), f"refreshed/{key}"))
        except (Unavailable, crypto.CryptoError, orjson.JSONDecodeError):
            return None
        return TokenPair(opened["access"], opened.get("refresh"))

    # --- the calls wave makes -----------------------------------------------------------------------

    async def user_info(self, endpoint: str, tokens: TokenPair) -> PlatformUser:
        answer = await self.authorized(endpoint, tokens, "GET", "/user-info")
        if answer.status in (401, 403):
            raise PlatformRefused(f"Seqera Platform at {endpoint} refused the access token "
                                  f"(towerAccessToken): it answered {answer.status} to user-info")
        if answer.status != 200:
            raise PlatformError(f"Seqera Platform at {endpoint} answered {answer.status} to user-info", 502)
        user = answer.json().get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), int | str) or not user.get("userName"):
            raise PlatformError(f"Seqera Platform at {endpoint} sent user-info without a user", 502)
        email = user.get("email")
        return PlatformUser(int(user["id"]), str(user["userName"]), str(email) if email else None)

    async def credentials(self, endpoint: str, tokens: TokenPair, workspace_id: int | None) -> list[CredentialEntry]:
        query = f"?workspaceId={workspace_id}" if workspace_id is not None else ""
        answer = await self.authorized(endpoint, tokens, "GET", f"/credentials{query}")
        self._check(answer, endpoint, "the credentials list")
        entries = answer.json().get("credentials") or []
        if not isinstance(entries, list):
            raise PlatformError(f"Seqera Platform at {endpoint} sent a credentials list that is not a list", 502)
        out = []
        for entry in entries:
            if isinstance(entry, dict) and entry.get("id") is not None:
                out.append(CredentialEntry(str(entry["id"]), str(entry.get("provider") or ""),
                                           str(entry.get("registry") or "docker.io"), str(entry.get("name") or "")))
        return out

    async def credential_keys(self, endpoint: str, tokens: TokenPair, credential_id: str, pairing_id: str,
                              workspace_id: int | None) -> str:
        query = {"pairingId": pairing_id, **({"workspaceId": str(workspace_id)} if workspace_id is not None else {})}
        path = f"/credentials/{quote(credential_id, safe='')}/keys?{urlencode(query)}"
        answer = await self.authorized(endpoint, tokens, "GET", path)
        self._check(answer, endpoint, f"the keys of credentials {credential_id}")
        keys = answer.json().get("keys")
        if not isinstance(keys, str):
            raise PlatformError(f"Seqera Platform at {endpoint} sent no keys for credentials {credential_id}", 502)
        return keys

    @staticmethod
    def _check(answer: HttpAnswer, endpoint: str, what: str) -> None:
        if answer.status in (401, 403):
            raise PlatformRefused(f"Seqera Platform at {endpoint} refused the access token "
                                  f"(towerAccessToken) for {what}: it answered {answer.status}")
        if answer.status != 200:
            raise PlatformError(f"Seqera Platform at {endpoint} answered {answer.status} for {what}", 502)


def _cookies(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            continue
        for name, morsel in jar.items():
            out[name] = morsel.value
    return out
