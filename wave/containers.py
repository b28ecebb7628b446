"""Container requests: check what was asked for, start a build if one is needed, issue the token.

The API handlers call this service with a validated request (:mod:`wave.model`); it owns the rules of the
contract that need state or the network (when a token is issued, what is checked upstream before one is) and
answers a :class:`SubmitResult`, which the API renders as JSON.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msgspec.structs import replace

from wave.bounded import BoundedCache
from wave.builds.service import BuildOwner
from wave.config import Settings
from wave.errors import BadRequest, Denied, ManifestUnknown, NameUnknown, RegistryError, WaveError
from wave.http import AddressGuard
from wave.identity import api_error
from wave.limits import Limits, caller_identity, user_key
from wave.locations import check_layer_location
from wave.model import SubmitRequest
from wave.oci import augment
from wave.oci.layers import InvalidLayer, TooLarge, verify_inline_layer_sized
from wave.oci.mediatypes import is_index
from wave.oci.models import ContainerConfig, Layer, uses_fusion
from wave.oci.platform import DEFAULT_PLATFORM, Platform
from wave.oci.reference import ImageRef, parse_reference
from wave.platform.client import PlatformError
from wave.proxy.manifests import MAX_CONFIG_SIZE
from wave.registry.client import RegistryClient
from wave.tokens import ContainerRequest, TokenStore, new_token
from wave.units import format_size

if TYPE_CHECKING:
    from wave.builds.service import BuildService
    from wave.identity import IdentityService
    from wave.metrics import UsageMetrics
    from wave.platform.models import PlatformIdentity
    from wave.registry.auth import UpstreamAuth

log = logging.getLogger("wave.containers")
VERIFY_ON_LOOP = 64 << 10  # data: URLs up to this size are checked on the event loop (well under a millisecond)
INFLATE_ON_LOOP = 256 << 10  # ... as long as they inflate to no more than this; a small bomb goes to the pool


@dataclass(frozen=True)
class SubmitResult:
    """The answer to a container request, rendered by the API as the contract's JSON.

    ``token`` (with ``expires`` and ``container_image``) is None for a freeze: its answer is the built image
    itself, pushed to the build repository. ``cached`` is None when no build was involved.
    """

    target_image: str
    freeze: bool = False
    build_id: str | None = None
    cached: bool | None = None
    token: str | None = None
    expires: float | None = None
    container_image: str | None = None


def _without_inline_data(config: ContainerConfig) -> ContainerConfig:
    """The config as a token keeps it: inline layers by descriptor only (``data:``), their bytes stored apart."""
    layers = tuple(replace(layer, location="data:") if layer.is_inline else layer for layer in config.layers)
    return replace(config, layers=layers)


_CheckKey = tuple[ImageRef, Platform | None, str]  # what, for which platform, whose credentials
MAX_CHECKS = 4096  # source checks remembered, positive and negative


class ContainerService:
    def __init__(self, settings: Settings, tokens: TokenStore, client: RegistryClient,
                 builds: BuildService, events: UsageMetrics, identity: IdentityService | None = None, *,
                 guard: AddressGuard, limits: Limits | None = None) -> None:
        self._settings = settings
        self._identity = identity
        self._guard = guard  # where a layer location may send clients
        self._tokens = tokens
        self._client = client
        self._builds = builds
        self._events = events
        # recently checked (source, platform, credentials) -> until when
        self._checked: BoundedCache[_CheckKey, bool] = BoundedCache(MAX_CHECKS, ttl=settings.resolve_cache_ttl)
        self._limits = limits
        self._failed: BoundedCache[_CheckKey, WaveError] = BoundedCache(  # negative answers, briefly
            MAX_CHECKS, ttl=settings.negative_cache_ttl)
        self._flights: dict[_CheckKey, asyncio.Future[None]] = {}  # checks running now
        self._verify_pool = ThreadPoolExecutor(max(1, settings.verify_workers), thread_name_prefix="wave-verify")

    async def _count_caller(self, request: SubmitRequest, identity: PlatformIdentity | None) -> None:
        """Limits per caller: anonymous callers may be refused (401); each request counts as a pull, and as a
        build when it asks for one (429 past a limit). A dry run is not counted."""
        if self._limits is None:
            return
        caller = caller_identity(request.client_ip, user_key(identity))
        self._limits.admit(caller, request.platform_credentials)
        if request.dry_run:
            return
        await self._limits.count("pulls", caller)
        if request.is_build or request.freeze:
            await self._limits.count("builds", caller)

    def close(self) -> None:
        self._verify_pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, request: SubmitRequest) -> SubmitResult:
        """Answer a container request: a token for the image (or the image built for it), or the frozen image."""
        identity = await self._resolve_identity(request)
        if identity is not None:
            request = replace(request, user_email=identity.email)
        await self._count_caller(request, identity)
        inline_layers = await self._check_layers(request)
        build_id, cached = None, None
        if request.is_build or request.freeze:
            # A dry run only plans: no registry check, no build, nothing counted.
            # Shielded: a client that hangs up (its handler is cancelled) must not leave a build claimed in the
            # store but never started, which identical requests would wait on until the claim expires.
            ticket = self._builds.plan(request) if request.dry_run else await asyncio.shield(self._builds.submit(
                request, owner=self._build_owner(identity)))
            if request.freeze:  # the answer is the real image, pushed to the build repository: no token
                if not request.dry_run:
                    await self._record(request, None, ticket.build_id)
                return SubmitResult(ticket.target_image, freeze=True, build_id=ticket.build_id, cached=ticket.cached)
            build_id, cached = ticket.build_id, ticket.cached
            image = parse_reference(ticket.target_image)  # the image the build service names (docker format)
        else:
            assert request.container_image is not None  # the model: an image or a recipe
            image = request.container_image
            await self._check_source(image, request, identity)
        now = time.time()
        container = ContainerRequest(
            token=new_token(),
            image=image,
            config=_without_inline_data(request.container_config),
            platform=request.platform,
            created=now,
            expires=now + self._settings.token_ttl,
            build_id=build_id,
            user_email=request.user_email,
            client_ip=request.client_ip,
            fusion=uses_fusion(request.container_config, self._settings.fusion_hosts),
            source_image=request.source_image,
            identity=identity,
        )
        if not request.dry_run:
            # One store call: the token, its inline layers (kept apart from the record every pull reads) and
            # the usage record of the request.
            usage = self._events.container_request_writes(request, container) if self._events is not None else []
            await self._tokens.save(container, [(layer.gzip_digest, data) for layer, data in inline_layers], usage)
        return SubmitResult(container.target_image(self._settings.public_authority), build_id=build_id,
                            cached=cached, token=container.token, expires=container.expires,
                            container_image=str(image))

    async def _record(self, request: SubmitRequest, container: ContainerRequest | None,
                      build_id: str | None) -> None:
        await self._events.container_requested(request, container, build_id)

    async def _verify(self, layer: Layer, allowance: int) -> tuple[bytes, int]:
        """Verify one inline layer: a small one on the loop (a thread hop costs more than hashing a few KiB)
        unless it inflates past INFLATE_ON_LOOP, anything else on the bounded pool."""
        limit = self._settings.max_inline_layer_size
        if len(layer.location) <= VERIFY_ON_LOOP:
            try:
                return verify_inline_layer_sized(layer, limit, min(allowance, INFLATE_ON_LOOP))
            except TooLarge:
                if allowance <= INFLATE_ON_LOOP:
                    raise
        return await asyncio.get_running_loop().run_in_executor(self._verify_pool, verify_inline_layer_sized,
                                                                layer, limit, allowance)

    async def _check_layers(self, request: SubmitRequest) -> list[tuple[Layer, bytes]]:
        """Verify every layer; returns the inline layers with their bytes, to be served by digest.

        The work is bounded per request: at most ``max_request_layers`` layers, an identical inline layer is
        verified (and stored) once however often it is listed, and all inline layers together may inflate to
        ``max_request_uncompressed`` bytes; inflation stops as soon as that budget is spent. Verification runs
        on a bounded pool of threads, so requests with large layers queue there instead of on every core."""
        settings = self._settings
        layers = request.container_config.layers
        if len(layers) > settings.max_request_layers:
            raise BadRequest(f"containerConfig.layers has {len(layers)} layers: at most "
                             f"{settings.max_request_layers} are accepted in one request")
        inline: list[tuple[Layer, bytes]] = []
        verified: set[Layer] = set()
        budget = settings.max_request_uncompressed
        per_layer = max(settings.max_inline_layer_size * 16, 64 << 20)  # as verify_inline_layer's default
        for i, layer in enumerate(layers):
            where = f"containerConfig.layers[{i}]"
            if layer.is_inline:
                if layer in verified:
                    continue
                allowance = min(budget, per_layer)
                try:
                    data, size = await self._verify(layer, allowance)
                except TooLarge:
                    if allowance < per_layer:
                        raise BadRequest(f"{where}: the inline layers of this request inflate to more than "
                                         f"{format_size(settings.max_request_uncompressed)}, the limit of one "
                                         "request") from None
                    raise BadRequest(f"{where}: the layer inflates to more than {format_size(per_layer)}, "
                                     "the limit of one inline layer") from None
                except InvalidLayer as exc:
                    raise BadRequest(f"{where}: {exc}") from None
                budget -= size
                verified.add(layer)
                inline.append((layer, data))
            else:
                await check_layer_location(layer.location, self._guard, f"{where}.location")
        return inline

    async def _resolve_identity(self, request: SubmitRequest) -> PlatformIdentity | None:
        if self._identity is None or not request.tower_access_token:
            return None
        return await self._identity.resolve(request.tower_access_token, request.tower_refresh_token,
                                            request.tower_endpoint, request.tower_workspace_id, request.workflow_id)

    def _build_owner(self, identity: PlatformIdentity | None) -> BuildOwner | None:
        """The Platform user a build is for: their credentials, their key, their view of the target."""
        service = self._identity
        if service is None or identity is None:
            return None

        async def lookup(registries: set[str]) -> dict[str, tuple[str, str]]:
            assert service is not None
            try:
                return await service.build_credentials(identity, registries)
            except PlatformError as exc:
                raise api_error(exc) from None

        async def exists(reference: str) -> bool:
            ref = parse_reference(reference)
            return await self._client.exists(ref, auth=await self._source_auth(ref, identity))

        key = hashlib.sha256(f"{identity.endpoint}|{identity.user_id}|{identity.workspace_id}".encode()).hexdigest()
        return BuildOwner(key[:32], identity.user_name, lookup, exists)

    async def _source_auth(self, ref: ImageRef, identity: PlatformIdentity | None) -> UpstreamAuth | None:
        if self._identity is None:
            return None
        try:
            return await self._identity.registry_auth(identity, ref.registry)
        except PlatformError as exc:
            raise api_error(exc) from None

    async def _check_image_platform(self, ref: ImageRef, digest: str, wanted: Platform,
                                    auth: UpstreamAuth | None) -> None:
        """A single-platform image is the platform asked for (explicitly, or the default one an augmentation
        is made for): otherwise its clients would find out with "exec format error" at run time."""
        manifest = await self._client.get_manifest(ref.with_reference(digest), auth=auth)
        descriptor = augment.config_descriptor(manifest.data)
        config = await self._client.get_blob(ref, descriptor["digest"], MAX_CONFIG_SIZE, auth=auth)
        augment.check_image_platform(config, wanted)

    async def _check_source(self, ref: ImageRef, request: SubmitRequest,
                            identity: PlatformIdentity | None = None) -> None:
        """The image exists upstream with the requester's credentials (a Platform user's own, else wave's),
        and has the platform an augmentation needs.

        Identical checks share one upstream check while it runs (single flight; a caller that hangs up does
        not cancel it for the others), a success is remembered for ``resolve_cache_ttl`` and a "does not
        exist" or an upstream 5xx for ``negative_cache_ttl``: a burst of requests for a missing image, or
        against a failing registry, costs upstream one check, not one each."""
        auth = await self._source_auth(ref, identity)
        who = auth.id if auth is not None else "static"
        key: _CheckKey = (ref, request.platform if not request.container_config.is_empty else None, who)
        if key in self._checked:
            return
        failed = self._failed.get(key)
        if failed is not None:
            raise copy.copy(failed)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._check_upstream(ref, request, auth, key))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        await asyncio.shield(flight)

    def _landed(self, key: _CheckKey, flight: asyncio.Future[None]) -> None:
        self._flights.pop(key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have hung up

    async def _check_upstream(self, ref: ImageRef, request: SubmitRequest, auth: UpstreamAuth | None,
                              key: _CheckKey) -> None:
        try:
            head = await self._client.head_manifest(ref, auth=auth)
            if is_index(head.media_type) and not request.container_config.is_empty:
                index = await self._client.get_manifest(ref.with_reference(head.digest), auth=auth)
                augment.select_platform(index.data, request.platform)
            elif not is_index(head.media_type) and (not request.container_config.is_empty
                                                    or request.platform != DEFAULT_PLATFORM):
                await self._check_image_platform(ref, head.digest, request.platform, auth)
        except (ManifestUnknown, NameUnknown):
            self._remember_failure(key, BadRequest(f"containerImage {ref} does not exist in registry {ref.registry}"))
        except Denied as exc:
            raise BadRequest(f"containerImage {ref}: {exc.message}") from None
        except augment.NoMatchingPlatform as exc:
            raise BadRequest(f"containerImage {ref}: {exc}") from None
        except augment.InvalidManifest as exc:
            raise BadRequest(f"containerImage {ref}: {exc}") from None
        except RegistryError as exc:
            if exc.status < 500 and exc.status != 429:
                raise BadRequest(f"containerImage {ref}: {exc.message}") from None
            if exc.status >= 500:
                self._remember_failure(key, exc)
            raise
        self._checked.put(key, True)

    def _remember_failure(self, key: _CheckKey, error: WaveError) -> None:
        """Remember a negative answer briefly, and raise it."""
        self._failed.put(key, error)
        raise copy.copy(error)
