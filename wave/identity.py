"""Who is asking: a request's Seqera Platform token resolved to a user, and that user's registry credentials.

- :meth:`IdentityService.resolve` turns ``towerAccessToken`` (+ refresh token, endpoint, workspace) into a
  :class:`PlatformIdentity`: the endpoint must be paired (else 400 naming the missing pairing), user-info is
  cached by a hash of endpoint and token, a refused token is a 401 that says Platform refused it. The
  identity carries the user's Platform tokens *sealed* (AES-GCM), so a token record never holds them in
  plain text, yet any replica with the same ``WAVE_SECRET_KEY`` can fetch the credentials again.
- :meth:`IdentityService.registry_auth` is what wave presents to a registry for that user: the first
  ``container-reg`` credential of the workspace for the registry's host (decrypted with the pairing key,
  kept in memory only), else the operator's configured credentials, else anonymous — with a description an
  error can show ("no credentials for quay.io in workspace 123 (Seqera Platform at …)"). A user's credentials
  are cached under that user's token hash only: they never serve another user's token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import orjson

from wave.bounded import BoundedCache
from wave.config import Settings
from wave.errors import ApiError, BadRequest, Denied, RegistryError, UpstreamUnavailable
from wave.oci.reference import DOCKER_HUB, ImageRef, InvalidReference, parse_repository
from wave.platform import crypto
from wave.platform.client import PlatformClient, PlatformError, PlatformRefused, normalize_endpoint, token_key
from wave.platform.ecr import DEFAULT_REGION, EcrError, EcrLogin, ecr_login
from wave.platform.models import CredentialEntry, PlatformIdentity, PlatformUser, RegistryKeys, TokenPair
from wave.platform.pairing import PairingStore
from wave.registry.auth import UpstreamAuth
from wave.tokens import ContainerRequest

log = logging.getLogger("wave.identity")

SERVICE = "tower"
USER_TTL = 24 * 3600.0
CREDENTIALS_TTL = 60.0
WORKFLOW_CREDENTIALS_TTL = 24 * 3600.0  # a workflow's run asks again and again for the same credentials
STALE_GRACE = 6 * 3600.0  # how long past their TTL credentials serve while Platform fails (not refuses)
DOCKER_HUB_ALIASES = {DOCKER_HUB, "registry-1.docker.io", "index.docker.io", "docker.io/library"}

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _TtlCache(Generic[K, V]):
    """The one bounded cache (least recently used go first), whose entries stay ``grace`` seconds past their
    freshness for :meth:`stale`: what to use while Platform fails."""

    def __init__(self, max_items: int = 10_000, grace: float = 0.0) -> None:
        self._cache: BoundedCache[K, tuple[V, float]] = BoundedCache(max_items)
        self._grace = grace

    def get(self, key: K) -> V | None:
        hit = self._cache.get(key)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def stale(self, key: K) -> V | None:
        """The entry even if no longer fresh, within the grace period."""
        hit = self._cache.get(key)
        return hit[0] if hit is not None else None

    def put(self, key: K, value: V, ttl: float) -> None:
        self._cache.put(key, (value, time.monotonic() + ttl), ttl=ttl + self._grace)


class _Flights:
    """Concurrent look-ups of one key share one call to Platform (a burst of a pipeline's requests arrives
    together); a caller that goes away never cancels it for the others."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        result: V = await asyncio.shield(task)
        return result


def _registry_host(text: str) -> str:
    """The host[:port] a credential's ``registry`` names (users write ``https://quay.io/`` or ``quay.io/org``)."""
    return text.strip().lower().removeprefix("https://").removeprefix("http://").split("/", 1)[0]


def _same_registry(a: str, b: str) -> bool:
    """Platform matches credentials to an image by registry host only (first match wins); so does wave."""
    a, b = _registry_host(a), _registry_host(b)
    return a == b or (a in DOCKER_HUB_ALIASES and b in DOCKER_HUB_ALIASES)


def api_error(exc: PlatformError) -> ApiError:
    """A Platform failure as the control API answers it: 401 for a refused token, 400 for an endpoint wave may
    not reach (an internal address), else 502/503/504."""
    return ApiError(exc.message, status=exc.status if exc.status in (400, 401, 502, 503, 504) else 502)


def registry_error(exc: PlatformError) -> RegistryError:
    """A Platform failure on ``/v2``: a refused token denies the pull; the rest is upstream unavailability."""
    if isinstance(exc, PlatformRefused) or exc.status == 400:
        return Denied(exc.message)
    return UpstreamUnavailable(exc.message, status=exc.status if exc.status in (502, 503, 504) else 502)


class IdentityService:
    def __init__(self, settings: Settings, client: PlatformClient, pairings: PairingStore,
                 static_credentials: Callable[[str], tuple[str, str] | None], seal_secret: str) -> None:
        self._settings = settings
        self._client = client
        self._pairings = pairings
        self._static = static_credentials
        self._seal_key = crypto.derive_key(seal_secret, "platform-tokens")
        self._users: _TtlCache[str, PlatformUser] = _TtlCache()
        self._lists: _TtlCache[tuple[str, int | None], list[CredentialEntry]] = _TtlCache(grace=STALE_GRACE)
        self._keys: _TtlCache[tuple[str, int | None, str, str], RegistryKeys] = _TtlCache(grace=STALE_GRACE)
        self._flights = _Flights()

    # --- who is asking ------------------------------------------------------------------------------

    async def resolve(self, access_token: str | None, refresh_token: str | None = None, endpoint: str | None = None,
                      workspace_id: int | None = None, workflow_id: str | None = None) -> PlatformIdentity | None:
        """The user behind a request's Platform token (None without one: anonymous)."""
        if not access_token:
            return None
        try:
            url = normalize_endpoint(endpoint)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if await self._pairings.get(SERVICE, url) is None:
            raise BadRequest(f"Missing pairing record for Tower endpoint '{url}'")
        tokens = TokenPair(access_token, refresh_token or None)
        key = token_key(url, access_token)
        user = self._users.get(key)
        if user is None:
            try:
                user = await self._flights.run(("user", key), lambda: self._user_info(url, tokens, key))
            except PlatformError as exc:
                raise api_error(exc) from None
        sealed = crypto.seal(self._seal_key, orjson.dumps({"access": tokens.access, "refresh": tokens.refresh}),
                             f"{url}|{user.id}")
        return PlatformIdentity(url, user.id, user.user_name, user.email, workspace_id, workflow_id, sealed)

    async def _user_info(self, url: str, tokens: TokenPair, key: str) -> PlatformUser:
        user = await self._client.user_info(url, tokens)
        self._users.put(key, user, USER_TTL)
        return user

    def _tokens(self, identity: PlatformIdentity) -> TokenPair | None:
        if not identity.sealed_tokens:
            return None
        try:
            opened = orjson.loads(crypto.unseal(self._seal_key, identity.sealed_tokens,
                                                f"{identity.endpoint}|{identity.user_id}"))
        except crypto.CryptoError:
            log.warning("the Platform tokens of %s cannot be opened here: is WAVE_SECRET_KEY the same on every "
                        "replica?", identity.user_name)
            return None
        return TokenPair(opened["access"], opened.get("refresh"))

    # --- the user's registry credentials -----------------------------------------------------------

    async def registry_auth(self, identity: PlatformIdentity | None, registry: str) -> UpstreamAuth | None:
        """What wave presents to ``registry`` for this user; None for an anonymous request (the caller then
        uses wave's configured credentials). Raises PlatformError when Platform fails."""
        if identity is None:
            return None
        where = f"{identity.workspace} (Seqera Platform at {identity.endpoint})"
        keys = await self._user_keys(identity, registry, where)
        if isinstance(keys, tuple):
            entry, found = keys
            return UpstreamAuth((found.username, found.password),
                                source=f"the Seqera Platform credentials '{entry.name}' (id {entry.id}) of {where}")
        static = self._static(registry)
        if static is not None:
            return UpstreamAuth(static, source=f"wave's configured credentials ({keys})")
        return UpstreamAuth(None, missing=keys)

    async def _user_keys(self, identity: PlatformIdentity,
                         registry: str, where: str) -> tuple[CredentialEntry, RegistryKeys] | str:
        """The user's credentials for a registry, or why there are none (a sentence for errors)."""
        tokens = self._tokens(identity)
        if tokens is None:
            return (f"no credentials for {registry}: the Seqera Platform sign-in of this request cannot be read "
                    "on this wave replica (every replica needs the same WAVE_SECRET_KEY)")
        ttl = WORKFLOW_CREDENTIALS_TTL if identity.workflow_id else CREDENTIALS_TTL
        user_key = token_key(identity.endpoint, tokens.access)
        entries = self._lists.get((user_key, identity.workspace_id))
        if entries is None:
            async def fetch() -> list[CredentialEntry]:
                found = await self._client.credentials(identity.endpoint, tokens, identity.workspace_id)
                self._lists.put((user_key, identity.workspace_id), found, ttl)
                return found

            try:
                entries = await self._flights.run(("list", user_key, identity.workspace_id), fetch)
            except PlatformError as exc:
                entries = self._stale(self._lists, (user_key, identity.workspace_id), exc, identity)
        entry = next((e for e in entries if e.provider == "container-reg" and _same_registry(e.registry, registry)),
                     None)
        if entry is None:
            return f"no credentials for {registry} in {where}"
        record = await self._pairings.get(SERVICE, identity.endpoint)
        if record is None:
            return f"no credentials for {registry}: Missing pairing record for Tower endpoint '{identity.endpoint}'"
        cache_key = (user_key, identity.workspace_id, entry.id, record.pairing_id)
        found = self._keys.get(cache_key)
        if found is None:
            try:
                packet = await self._client.credential_keys(identity.endpoint, tokens, entry.id, record.pairing_id,
                                                            identity.workspace_id)
            except PlatformError as exc:
                return entry, self._stale(self._keys, cache_key, exc, identity)
            try:
                payload = crypto.decrypt_packet(record.private_key, packet)
            except crypto.CryptoError as exc:
                raise PlatformError(f"the credentials '{entry.name}' of {where}: {exc}", 502) from None
            username, password = payload.get("userName"), payload.get("password")
            if payload.get("discriminator") == "aws":  # ECR: keys to exchange for a registry login
                login = await self._ecr(payload, registry, entry, where)
                if isinstance(login, str):
                    return login
                found = RegistryKeys(login.username, login.password, registry)
                self._keys.put(cache_key, found, min(ttl, max(CREDENTIALS_TTL, login.expires - time.time() - 300)))
                return entry, found
            if not isinstance(username, str) or not isinstance(password, str):
                raise PlatformError(f"the credentials '{entry.name}' of {where} are not registry credentials "
                                    f"(discriminator {payload.get('discriminator')!r})", 502)
            found = RegistryKeys(username, password, payload.get("registry"))
            self._keys.put(cache_key, found, ttl)
        return entry, found

    async def _ecr(self, payload: dict[str, Any], registry: str, entry: CredentialEntry,
                   where: str) -> EcrLogin | str:
        """The ECR login for AWS keys, or why there is none (a sentence for errors; never a key)."""
        access, secret = payload.get("accessKey"), payload.get("secretKey")
        if not isinstance(access, str) or not isinstance(secret, str) or not access or not secret:
            return f"the Seqera Platform credentials '{entry.name}' of {where} are AWS credentials without keys"
        try:
            return await ecr_login(access, secret, registry, endpoint=self._settings.ecr_endpoint,
                                   default_region=self._settings.s3_region or DEFAULT_REGION,
                                   call_timeout=self._settings.platform_timeout)
        except EcrError as exc:
            return f"the Seqera Platform credentials '{entry.name}' of {where}: {exc}"

    @staticmethod
    def _stale(cache: _TtlCache[Any, V], key: Hashable, exc: PlatformError, identity: PlatformIdentity) -> V:
        """What Platform answered last for ``key``, while it fails (unreachable, 5xx) rather than refuses."""
        if isinstance(exc, PlatformRefused) or exc.status < 500:
            raise exc
        value = cache.stale(key)
        if value is None:
            raise exc
        log.warning("Seqera Platform at %s failing (%s): using the credentials it gave before for %s",
                    identity.endpoint, exc.status, identity.user_name)
        return value

    async def request_auth(self, fields: dict[str, Any], registry: str) -> UpstreamAuth | None:
        """For a request body with the contract's ``tower*`` fields (``POST /v1alpha1/inspect``): what wave
        presents to ``registry`` for its user (None: anonymous). Errors as the control API answers them."""
        def text(name: str) -> str | None:
            value = fields.get(name)
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{name} must be a string")
            return value or None

        workspace = fields.get("towerWorkspaceId")
        if isinstance(workspace, str) and workspace.isdigit():
            workspace = int(workspace)
        if workspace is not None and (not isinstance(workspace, int) or isinstance(workspace, bool)):
            raise BadRequest("towerWorkspaceId must be a number")
        identity = await self.resolve(text("towerAccessToken"), text("towerRefreshToken"), text("towerEndpoint"),
                                      workspace, text("workflowId"))
        try:
            return await self.registry_auth(identity, registry)
        except PlatformError as exc:
            raise api_error(exc) from None

    async def build_credentials(self, identity: PlatformIdentity | None,
                                registries: set[str]) -> dict[str, tuple[str, str]]:
        """The user's own credentials for the registries a build talks to (FROM images, pushes)."""
        out: dict[str, tuple[str, str]] = {}
        if identity is None:
            return out
        where = f"{identity.workspace} (Seqera Platform at {identity.endpoint})"
        for registry in sorted(registries):
            keys = await self._user_keys(identity, registry, where)
            if isinstance(keys, tuple):
                out[registry] = (keys[1].username, keys[1].password)
        return out

    def _in_build_repo(self, image: ImageRef) -> bool:
        """Whether ``image`` is in wave's own build repository (however the setting spells it)."""
        if not self._settings.build_repo:
            return False
        try:
            repo = parse_repository(self._settings.build_repo)
        except InvalidReference:
            return False
        return (image.registry, image.repository) == (repo.registry, repo.repository)

    async def container_auth(self, container: ContainerRequest) -> UpstreamAuth | None:
        """What a ``/v2`` request of this token presents upstream (errors as OCI errors). An image wave built
        into its own build repository is pulled with wave's credentials, whoever asked for it."""
        if container.identity is None or (container.build_id and self._in_build_repo(container.image)):
            return None
        try:
            return await self.registry_auth(container.identity, container.image.registry)
        except PlatformError as exc:
            raise registry_error(exc) from None
