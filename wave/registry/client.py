"""An upstream registry client: auth challenges, retries, timeouts, and errors with a meaning.

Every request is authorised for one repository, so Bearer tokens carry the right scope. Redirects are never
followed with credentials: manifests follow them without ``Authorization``, blobs hand them to the client.
The session's connector (``wave.http``) refuses internal addresses at connect time; this client only turns a
refusal into an error that says which host was refused and why (the registry itself, a redirect, a realm).
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
import orjson

from wave.addresses import is_loopback_host
from wave.bounded import BoundedCache
from wave.config import Settings
from wave.errors import (
    BlobUnknown,
    Denied,
    DigestInvalid,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    RegistryError,
    TooManyRequests,
    UpstreamUnavailable,
)
from wave.http import refusal_text, refused_address
from wave.oci import augment
from wave.oci.digest import sha256_digest
from wave.oci.mediatypes import ALL_MANIFEST_ACCEPT, manifest_type_of
from wave.oci.reference import ImageRef
from wave.registry.auth import Challenge, TokenCache, UpstreamAuth, basic_header, parse_challenge
from wave.registry.stale import LastGood
from wave.units import format_size

log = logging.getLogger("wave.registry")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_MANIFEST_SIZE = 4 << 20
MAX_REDIRECTS = 3
MAX_RETRY_AFTER = 5.0  # seconds wave waits for an upstream outside any deadline
MAX_TAGS_SIZE = 16 << 20
MAX_TOKEN_SIZE = 1 << 20
MAX_REGISTRIES = 1024  # challenges remembered; registries are chosen by users, so the memory is bounded
REDIRECTS = (301, 302, 303, 307, 308)
# How much of a streamed blob may wait in wave between upstream and the client (twice this, then upstream
# is paused): bigger means fewer pause/resume cycles and socket reads per byte, at a bounded memory cost.
BLOB_READ_BUFSIZE = 1 << 20


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str
    stale: bool = False  # upstream failed: this is the repository's last good answer (wave.registry.stale)


@dataclass(frozen=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int


# The deadline (event loop time) of the upstream operation this task is in: set by the outermost operation, so
# retries, redirects and token fetches inside it share one budget instead of multiplying it.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("upstream_deadline", default=None)
P = ParamSpec("P")
T = TypeVar("T")


def _deadlined(method: Callable[Concatenate[RegistryClient, ImageRef, P], Awaitable[T]],
               ) -> Callable[Concatenate[RegistryClient, ImageRef, P], Awaitable[T]]:
    """The operation, everything it sends and the body it reads, within one ``upstream_deadline``."""

    async def within(self: RegistryClient, ref: ImageRef, /, *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._within_deadline(ref):
            return await method(self, ref, *args, **kwargs)

    functools.update_wrapper(within, method)  # its return value's type would hide within's own
    return within


class RegistryClient:
    """One per process; shares the HTTP session, the challenge memory and the Bearer token cache."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings, last_good: LastGood | None = None) -> None:
        self._session = session
        self._settings = settings
        self._last_good = last_good
        self._challenges: BoundedCache[str, Challenge] = BoundedCache(MAX_REGISTRIES)
        self._tokens = TokenCache()
        self._insecure = set(settings.insecure_registries)

    # --- public API ---------------------------------------------------------------------------------

    async def get_manifest(self, ref: ImageRef, accept: Sequence[str] = ALL_MANIFEST_ACCEPT, *,
                           auth: UpstreamAuth | None = None) -> Manifest:
        """The manifest bytes exactly as upstream has them; a digest reference is verified. While upstream
        fails (unreachable, 5xx, 429), the repository's last good answer, marked ``stale``. ``auth``: whose
        credentials (a Platform user's); None means wave's own configured ones."""
        auth = auth or self.static_auth(ref)
        if self._last_good is None or accept != ALL_MANIFEST_ACCEPT:
            return await self._get_manifest(ref, accept, auth)
        scope = self.scope(ref, auth)
        try:
            manifest = await self._get_manifest(ref, accept, auth)
        except (UpstreamUnavailable, TooManyRequests):
            stale = await self._last_good.manifest(scope, ref.reference)
            if stale is None:
                raise
            log.warning("upstream %s failing: serving the last good manifest of %s", ref.registry, ref)
            return Manifest(stale[2], stale[0], stale[1], stale=True)
        await self._last_good.remember_manifest(scope, (ref.reference, manifest.digest), manifest.media_type,
                                                manifest.digest, manifest.data)
        return manifest

    @_deadlined
    async def _get_manifest(self, ref: ImageRef, accept: Sequence[str], auth: UpstreamAuth) -> Manifest:
        response = await self._request("GET", ref, f"manifests/{ref.reference}", {"Accept": ", ".join(accept)},
                                       follow=True, auth=auth)
        async with response:
            self._raise_for_status(response, ref, "manifest", auth=auth)
            data = await self._read(response, MAX_MANIFEST_SIZE, ref)
        if data is None:
            raise ManifestInvalid(f"manifest of {ref} is larger than {format_size(MAX_MANIFEST_SIZE)}")
        document = upstream_document(data, f"the manifest upstream sent for {ref}")
        digest = sha256_digest(data)
        if ref.digest and ref.digest.startswith("sha256:") and digest != ref.digest:
            raise DigestInvalid(f"upstream sent a manifest for {ref} whose digest is {digest}")
        return Manifest(data, manifest_type_of(document, response.headers.get("Content-Type")), digest)

    async def head_manifest(self, ref: ImageRef, accept: Sequence[str] = ALL_MANIFEST_ACCEPT, *,
                            auth: UpstreamAuth | None = None) -> ManifestHead:
        auth = auth or self.static_auth(ref)
        try:
            return await self._head_manifest(ref, accept, auth)
        except (UpstreamUnavailable, TooManyRequests):
            if self._last_good is None or accept != ALL_MANIFEST_ACCEPT:
                raise
            stale = await self._last_good.manifest(self.scope(ref, auth), ref.reference)
            if stale is None:
                raise
            return ManifestHead(stale[1], stale[0], len(stale[2]))

    @_deadlined
    async def _head_manifest(self, ref: ImageRef, accept: Sequence[str], auth: UpstreamAuth) -> ManifestHead:
        response = await self._request("HEAD", ref, f"manifests/{ref.reference}", {"Accept": ", ".join(accept)},
                                       follow=True, auth=auth)
        async with response:
            self._raise_for_status(response, ref, "manifest", auth=auth)
            digest = response.headers.get("Docker-Content-Digest")
            media_type = response.headers.get("Content-Type", "").split(";")[0]
            size = response.content_length or 0
        if not digest:  # some registries omit it on HEAD: fall back to hashing the body
            manifest = await self.get_manifest(ref, accept, auth=auth)
            return ManifestHead(manifest.digest, manifest.media_type, len(manifest.data))
        return ManifestHead(digest, media_type, size)

    async def exists(self, ref: ImageRef, *, auth: UpstreamAuth | None = None) -> bool:
        try:
            await self.head_manifest(ref, auth=auth)
        except (ManifestUnknown, NameUnknown):
            return False
        return True

    async def get_blob(self, ref: ImageRef, digest: str, max_size: int, *,
                       auth: UpstreamAuth | None = None) -> bytes:
        """A small blob (an image config) read whole and verified against its digest; the last good copy
        while upstream fails."""
        auth = auth or self.static_auth(ref)
        if self._last_good is None:
            return await self._get_blob(ref, digest, max_size, auth)
        try:
            data = await self._get_blob(ref, digest, max_size, auth)
        except (UpstreamUnavailable, TooManyRequests):
            stale = await self._last_good.blob(self.scope(ref, auth), digest)
            if stale is None or sha256_digest(stale) != digest:
                raise
            return stale
        await self._last_good.remember_blob(self.scope(ref, auth), digest, data)
        return data

    @_deadlined
    async def _get_blob(self, ref: ImageRef, digest: str, max_size: int, auth: UpstreamAuth) -> bytes:
        response = await self._request("GET", ref, f"blobs/{digest}", {}, follow=True, auth=auth)
        async with response:
            self._raise_for_status(response, ref, "blob", digest, auth=auth)
            data = await self._read(response, max_size, ref)
        if data is None:
            raise ManifestInvalid(f"config blob {digest} of {ref} is larger than {format_size(max_size)}")
        if digest.startswith("sha256:") and sha256_digest(data) != digest:
            raise DigestInvalid(f"upstream sent blob {digest} of {ref} with another digest")
        return data

    @_deadlined  # until the answer's headers: its body keeps a minimum rate instead
    async def open_blob(self, ref: ImageRef, digest: str, range_header: str | None,
                        method: str = "GET", *, follow: bool = False,
                        auth: UpstreamAuth | None = None) -> aiohttp.ClientResponse:
        """An unread upstream blob response (200, 206 or a redirect); the caller streams and releases it.

        ``follow`` fetches the bytes behind a redirect too (without credentials), for the blob cache."""
        auth = auth or self.static_auth(ref)
        headers = {"Range": range_header} if range_header else {}
        response = await self._request(method, ref, f"blobs/{digest}", headers, follow=follow,
                                       read_bufsize=BLOB_READ_BUFSIZE, auth=auth)
        if response.status in (*REDIRECTS, 200, 206, 416):
            return response
        async with response:
            self._raise_for_status(response, ref, "blob", digest, auth=auth)
        raise UpstreamUnavailable(f"unexpected status {response.status} for blob {digest} of {ref}")

    async def blob_exists(self, ref: ImageRef, digest: str, *, auth: UpstreamAuth | None = None) -> bool:
        """Whether the repository holds the blob, for these credentials (a HEAD; a redirect counts as yes)."""
        try:
            response = await self.open_blob(ref, digest, None, "HEAD", auth=auth)
        except (BlobUnknown, NameUnknown):
            return False
        response.release()
        return response.status in (*REDIRECTS, 200, 206)

    async def blob_size(self, ref: ImageRef, digest: str, *, auth: UpstreamAuth | None = None) -> int | None:
        """The size of a blob the repository holds, for these credentials (a HEAD); None when it does not hold
        it, upstream fails, or does not say (a redirect)."""
        try:
            response = await self.open_blob(ref, digest, None, "HEAD", auth=auth)
        except RegistryError:
            return None
        response.release()
        return response.content_length if response.status == 200 else None

    def scope(self, ref: ImageRef, auth: UpstreamAuth | None = None) -> str:
        """Who asks upstream for this repository: registry, repository and which credentials (a Platform
        user's, or wave's). What one scope was shown (a blob, a manifest) is not evidence for another."""
        return f"{ref.registry}/{ref.repository}@{(auth or self.static_auth(ref)).id}"

    @_deadlined
    async def get_tags(self, ref: ImageRef, query: dict[str, str], *,
                       auth: UpstreamAuth | None = None) -> tuple[bytes, str | None]:
        auth = auth or self.static_auth(ref)
        path = "tags/list" + (f"?{urlencode(query)}" if query else "")
        response = await self._request("GET", ref, path, {}, follow=True, auth=auth)
        async with response:
            self._raise_for_status(response, ref, "tags", auth=auth)
            data = await self._read(response, MAX_TAGS_SIZE, ref)
            if data is None:
                raise UpstreamUnavailable(f"the tag list of {ref.registry}/{ref.repository} is too large")
            return data, response.headers.get("Link")

    # --- plumbing -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _within_deadline(self, ref: ImageRef) -> AsyncIterator[None]:
        """One deadline (``upstream_deadline``) for an operation with everything it sends; nested operations
        (a token fetch, a HEAD falling back to a GET) share the outermost one."""
        if _DEADLINE.get() is not None:
            yield
            return
        budget = self._settings.upstream_deadline
        deadline = asyncio.get_running_loop().time() + budget
        token = _DEADLINE.set(deadline)
        try:
            async with asyncio.timeout_at(deadline):
                yield
        except TimeoutError:
            log.warning("upstream %s: no answer within the deadline of %gs", ref.registry, budget)
            raise UpstreamUnavailable(f"registry {ref.registry} did not answer within {budget:g}s",
                                      status=504) from None
        finally:
            _DEADLINE.reset(token)

    async def _read(self, response: aiohttp.ClientResponse, limit: int, ref: ImageRef) -> bytes | None:
        try:
            return await read_capped(response, limit, self._settings.upstream_min_rate,
                                     self._settings.upstream_rate_window)
        except TooSlow as exc:
            log.warning("upstream %s: %s", ref.registry, exc)
            raise UpstreamUnavailable(f"registry {ref.registry} sends too slowly: {exc}", status=504) from None


    def _base_url(self, ref: ImageRef) -> str:
        host = ref.endpoint
        plain = is_loopback_host(host) or host in self._insecure or ref.registry in self._insecure
        return f"{'http' if plain else 'https'}://{host}"

    def static_credentials(self, registry: str) -> tuple[str, str] | None:
        """The operator's credentials for a registry (host or host:port), if configured."""
        return self._settings.registry_credentials.get(registry)

    def static_auth(self, ref: ImageRef) -> UpstreamAuth:
        """Wave's own configured credentials for ``ref``'s registry (anonymous when none)."""
        creds = self._settings.registry_credentials
        return UpstreamAuth(creds.get(ref.registry) or creds.get(ref.endpoint))

    async def _request(self, method: str, ref: ImageRef, path: str, headers: dict[str, str], *,
                       follow: bool, auth: UpstreamAuth, read_bufsize: int | None = None) -> aiohttp.ClientResponse:
        """Send with auth; on 401 learn the challenge and retry once with fresh credentials."""
        url = f"{self._base_url(ref)}/v2/{ref.repository}/{path}"
        fresh = False
        for _ in range(2):
            authorization = await self._authorization(ref, auth, fresh)
            sent = {**headers, **({"Authorization": authorization} if authorization else {})}
            response = await self._send(method, url, sent, ref, read_bufsize)
            if response.status != 401:
                break
            challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
            if challenge is None or (fresh and authorization):
                break
            response.release()
            self._challenges.put(ref.endpoint, challenge)
            self._tokens.drop(ref.endpoint, ref.repository, auth.id)
            fresh = True
        hops = 0
        while follow and response.status in REDIRECTS and hops < MAX_REDIRECTS:
            location = urljoin(url, response.headers.get("Location", ""))
            response.release()
            same_host = urlsplit(location).netloc == urlsplit(url).netloc
            self._check_target(location, ref, "redirected wave to")
            redirected = {k: v for k, v in sent.items() if same_host or k != "Authorization"}
            response = await self._send(method, location, redirected, ref, read_bufsize,
                                        how="redirected wave to")
            url, hops = location, hops + 1
        return response

    def _check_target(self, target: str, ref: ImageRef, how: str) -> None:
        """A URL an upstream sent wave to (a redirect, a token realm) must be http(s); where it leads is
        checked by the connector, like every address wave connects to."""
        target_parts = urlsplit(target)
        if target_parts.scheme not in ("http", "https") or not target_parts.hostname:
            raise UpstreamUnavailable(f"registry {ref.registry} {how} an invalid URL")

    async def _send(self, method: str, url: str, headers: dict[str, str], ref: ImageRef,
                    read_bufsize: int | None = None, how: str = "") -> aiohttp.ClientResponse:
        """One request with retries on connection errors, 429 and 5xx (all wave's requests are idempotent).
        ``how`` says why wave is sending it elsewhere than the registry ("redirected wave to", for a realm
        "sent wave for a token to"), for the error when the address is refused."""
        attempts = max(1, self._settings.upstream_retries)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self._session.request(method, url, headers=headers, allow_redirects=False,
                                                       read_bufsize=read_bufsize)
            except aiohttp.ClientConnectorError as exc:
                refused = refused_address(exc)
                if refused is not None:  # the policy, not the network: retrying cannot help
                    if how:
                        raise Denied(f"registry {ref.registry} {how} {refused.where}, an internal address; "
                                     "trust it with WAVE_TRUSTED_HOSTS") from None
                    raise Denied(f"registry {refusal_text(refused.where)}") from None
                if last:
                    log.warning("upstream %s unreachable: %s", ref.registry, type(exc).__name__)
                    raise UpstreamUnavailable(f"registry {ref.registry} is unreachable") from None
            except aiohttp.InvalidUrlClientError:  # e.g. 127.1 or 2130706433: aiohttp will not guess an address
                where = urlsplit(url).netloc
                subject = f"registry {ref.registry}" + (f" {how} {where}, which" if how else "")
                raise Denied(f"{subject} is not a canonical IP address or host name; wave does not connect to "
                             "such spellings (write the address in dotted form)") from None
            except TimeoutError:
                if last:
                    log.warning("upstream %s timed out: %s %s", ref.registry, method, _path_of(url))
                    raise UpstreamUnavailable(f"registry {ref.registry} did not answer in time", status=504) from None
            except aiohttp.ClientError as exc:
                if last:
                    log.warning("upstream %s unreachable: %s", ref.registry, type(exc).__name__)
                    raise UpstreamUnavailable(f"registry {ref.registry} is unreachable") from None
            else:
                if response.status not in RETRY_STATUSES or last:
                    return response
                delay = max(0.1 * 2**attempt, retry_after_seconds(response.headers.get("Retry-After")))
                if not self._fits_deadline(delay):  # upstream's answer stands: waiting would miss the deadline
                    return response
                response.release()
                await asyncio.sleep(delay)
                continue
            delay = 0.1 * 2**attempt
            if not self._fits_deadline(delay):
                raise UpstreamUnavailable(f"registry {ref.registry} is unreachable", status=504)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _fits_deadline(self, delay: float) -> bool:
        deadline = _DEADLINE.get()
        if deadline is None:  # outside an operation (never in practice): the cap of wave's own waits
            return delay <= MAX_RETRY_AFTER
        return asyncio.get_running_loop().time() + delay < deadline

    async def _authorization(self, ref: ImageRef, auth: UpstreamAuth, fresh: bool) -> str | None:
        creds = auth.credentials
        challenge = self._challenges.get(ref.endpoint)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_header(*creds) if creds else None
        if challenge.scheme != "bearer" or not challenge.realm:
            return None
        key = auth.id
        token = None if fresh else self._tokens.get(ref.endpoint, ref.repository, key)
        if token is None:
            try:
                token, expires_in = await self._fetch_token(challenge, ref, auth)
            except RegistryError:
                # A realm that failed (refused, down, denied) fails this request only: the next one asks the
                # registry again and learns its challenge anew, instead of trusting a bad one until restart.
                self._challenges.pop(ref.endpoint)
                raise
            self._tokens.put(ref.endpoint, ref.repository, key, token, expires_in)
        return f"Bearer {token}"

    async def _fetch_token(self, challenge: Challenge, ref: ImageRef, auth: UpstreamAuth) -> tuple[str, float]:
        creds = auth.credentials
        query = {"scope": f"repository:{ref.repository}:pull"}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        realm = challenge.realm or ""
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        self._check_target(url, ref, "sent wave for a token to")
        headers = {"Authorization": basic_header(*creds)} if creds else {}
        response = await self._send("GET", url, headers, ref, how="sent wave for a token to")
        async with response:
            if response.status in (401, 403):
                raise Denied(auth.refused(ref.registry, ref.repository, response.status,
                                          by="the token service of registry"))
            if response.status != 200:
                raise UpstreamUnavailable(
                    f"the token service of registry {ref.registry} answered {response.status}"
                )
            try:
                body: dict[str, Any] = orjson.loads(await read_capped(response, MAX_TOKEN_SIZE) or b"")
            except orjson.JSONDecodeError:
                raise UpstreamUnavailable(f"the token service of registry {ref.registry} sent no JSON") from None
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise UpstreamUnavailable(f"the token service of registry {ref.registry} sent no token")
        return token, float(body.get("expires_in") or 60)

    def _raise_for_status(self, response: aiohttp.ClientResponse, ref: ImageRef, what: str,
                          digest: str | None = None, *, auth: UpstreamAuth) -> None:
        status = response.status
        if status < 300:
            return
        subject = f"{what} {digest} of {ref.registry}/{ref.repository}" if digest else f"{what} of {ref}"
        error: RegistryError
        if status == 404:
            error = (BlobUnknown if what == "blob" else ManifestUnknown)(f"{subject} not found upstream")
        elif status in (401, 403):
            error = Denied(auth.refused(ref.registry, ref.repository, status))
        elif status == 429:
            error = TooManyRequests(f"registry {ref.registry} is rate limiting wave")
        elif status >= 500:
            log.warning("upstream %s answered %s for %s", ref.registry, status, subject)
            error = UpstreamUnavailable(f"registry {ref.registry} answered {status} for {subject}")
        else:
            error = UpstreamUnavailable(f"registry {ref.registry} answered {status} for {subject}")
        raise error


class TooSlow(Exception):
    """An upstream body arrives below the minimum transfer rate."""


def retry_after_seconds(value: str | None) -> float:
    """``Retry-After`` as seconds (a number of seconds or an HTTP date); 0 when absent or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value), 86400))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    return max(0.0, min(when.timestamp() - time.time(), 86400.0))


async def read_capped(response: aiohttp.ClientResponse, limit: int, min_rate: float = 0,
                      window: float = 10.0) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes (whatever Content-Length says, or omits).

    With ``min_rate`` (bytes/s), every ``window`` seconds must bring ``min_rate * window`` bytes (or the end):
    an upstream that trickles a byte at a time is cut after one window (TooSlow), not after the read timeout
    of every single byte."""
    if (response.content_length or 0) > limit:
        return None
    chunks: list[bytes] = []
    total = 0
    quota = int(min_rate * window)
    while True:
        got = 0
        try:
            async with asyncio.timeout(window if quota else None):
                while not quota or got < quota:
                    chunk = await response.content.read(1 << 16)
                    if not chunk:
                        return b"".join(chunks)
                    got += len(chunk)
                    total += len(chunk)
                    if total > limit:
                        return None
                    chunks.append(chunk)
        except TimeoutError:
            raise TooSlow(f"{got} bytes in {window:g}s, below the minimum of {min_rate:g} bytes/s") from None


def upstream_document(data: bytes, what: str) -> dict[str, Any]:
    """A manifest or config an upstream sent, as a JSON object; ManifestInvalid (an OCI error) otherwise."""
    try:
        return augment.load_document(data, what)
    except augment.InvalidManifest as exc:
        raise ManifestInvalid(str(exc)) from None


def _path_of(url: str) -> str:
    return urlsplit(url).path
