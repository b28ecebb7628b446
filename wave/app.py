"""The application factory, used alike by ``wave serve`` and the tests.

Each resource that must be closed (the HTTP session, the state store, the object storage, the build service)
is opened through its own module's context manager, in the order they depend on each other; when one fails
to open, those opened before it are closed. One application serves both surfaces, ``/v2`` (the registry
API) and the control API; every route's handler is wrapped by the edge (:mod:`wave.edge`), which renders each
surface's errors in its own shape: a sub-application for ``/v2`` cost its warm manifest path a fifth of its CPU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from wave import keys, ops
from wave.api import builds as build_routes
from wave.api import metrics as metrics_api
from wave.api import pairing as pairing_api
from wave.api import routes as api_routes
from wave.api import tokens as token_api
from wave.builds.gate import BuildGate
from wave.builds.launchers import create_launcher
from wave.builds.service import BuildService
from wave.config import Settings
from wave.containers import ContainerService
from wave.edge import Edge
from wave.http import AddressGuard, opened_session, policy_for
from wave.identity import IdentityService
from wave.limits import Limits
from wave.logs import access_lines, install_redaction
from wave.metrics import UsageMetrics
from wave.oci.reference import parse_reference
from wave.platform.client import DirectTransport, PlatformClient
from wave.platform.crypto import local_secret
from wave.platform.pairing import PairingStore
from wave.platform.tunnel import Tunnels
from wave.prometheus import OpsMetrics
from wave.proxy import routes as proxy_routes
from wave.proxy.blobcache import opened_blob_cache
from wave.proxy.blobs import BlobService
from wave.proxy.cache import ObjectCache
from wave.proxy.manifests import ManifestService
from wave.registry.client import RegistryClient
from wave.registry.stale import LastGood
from wave.storage import opened_storage
from wave.store import opened_store
from wave.tokens import TokenStore

log = logging.getLogger("wave")


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Open every resource in the order they depend on each other, each through the context manager its module
    owns, and close them in reverse. One exit stack, because aiohttp does not clean up after a start-up that
    failed: when the store cannot be reached, the HTTP session opened before it is closed all the same."""
    settings, ops_metrics = app[keys.SETTINGS], app[keys.OPS]
    async with AsyncExitStack() as opened:
        guard = AddressGuard(policy_for(settings))
        log.info("address policy: %s", guard.policy.describe())
        app[keys.HTTP] = await opened.enter_async_context(opened_session(settings, guard))
        app[keys.STORE] = store = await opened.enter_async_context(opened_store(settings))
        app[keys.STORAGE] = await opened.enter_async_context(opened_storage(settings))
        client = RegistryClient(app[keys.HTTP], settings, LastGood(store, settings.stale_ttl))
        app[keys.PAIRINGS] = pairings = PairingStore(store, settings.secret_key)
        app[keys.TUNNELS] = tunnels = Tunnels(store, settings.platform_timeout, relay_key=settings.secret_key,
                                              relay=bool(settings.redis_url) or settings.workers > 1)
        opened.push_async_callback(tunnels.close)
        seal_secret = settings.secret_key or await asyncio.to_thread(local_secret,
                                                                     str(settings.state_dir / "secret.key"))
        platform = PlatformClient(DirectTransport(app[keys.HTTP], settings.platform_timeout), tunnels,
                                  store=store, secret_key=settings.secret_key)
        app[keys.IDENTITY] = identity = IdentityService(settings, platform, pairings, client.static_credentials,
                                                        seal_secret)
        tokens = TokenStore(store, getattr(store, "revisions", None))  # embedded: revocations seen in memory
        cache = ObjectCache(store, on_lookup=lambda hit: ops_metrics.cache_lookup("objects", hit))
        usage = UsageMetrics(store, settings, ops=ops_metrics)
        opened.push_async_callback(usage.close)  # pull counts held in memory are written before the store closes
        builds = BuildService(settings, store, app[keys.STORAGE], create_launcher(settings),
                              lambda ref: client.exists(parse_reference(ref)), events=usage,
                              http=app[keys.HTTP], guard=guard)
        opened.push_async_callback(builds.close)
        manifests = ManifestService(settings, client, store, cache, BuildGate(builds, settings.build_timeout),
                                    auth_of=identity.container_auth)
        app[keys.REGISTRY] = client
        app[keys.TOKENS] = tokens
        app[keys.BUILDS] = builds
        app[keys.MANIFESTS] = manifests
        blob_cache = await opened.enter_async_context(opened_blob_cache(settings, ops_metrics.blob_cache_event))
        if blob_cache is not None:
            app[keys.BLOB_CACHE] = blob_cache
        app[keys.BLOBS] = BlobService(client, manifests, tokens, guard, blob_cache)
        app[keys.EVENTS] = usage
        app[keys.LIMITS] = limits = Limits(settings, store, on_refusal=ops_metrics.limit_refused)
        app[keys.CONTAINERS] = containers = ContainerService(settings, tokens, client, builds, events=usage,
                                                             identity=identity, guard=guard, limits=limits)
        opened.callback(containers.close)
        yield


def server_options(settings: Settings) -> dict[str, Any]:
    """aiohttp's per-connection options, whoever runs the app (``wave serve``, the tests' runners):

    - ``keepalive_timeout``: aiohttp closes a connection that has not sent a whole request head by then,
      from the connection's start or the previous answer: the header read timeout against slow-loris.
    - ``handler_cancellation``: a client that hangs up cancels its handler, so its upstream connections and
      work are released at once; work shared with other requests is shielded where it is shared.
    - ``lingering_time``: how long an unread request body is drained before the connection is closed.
    """
    return {"keepalive_timeout": settings.client_header_timeout, "handler_cancellation": True,
            "lingering_time": min(5.0, settings.client_body_timeout)}


def create_app(settings: Settings) -> web.Application:
    install_redaction()  # aiohttp's loggers too: its parse errors quote the request's bytes
    ops_metrics = OpsMetrics()
    app = web.Application(client_max_size=settings.max_request_size, handler_args=server_options(settings))
    app[keys.SETTINGS] = settings
    app[keys.OPS] = ops_metrics
    app.cleanup_ctx.append(_resources)
    surfaces = (proxy_routes, api_routes, build_routes, ops, metrics_api, token_api, pairing_api)
    app.add_routes(Edge(settings.trusted_proxies, ops_metrics, access_lines()).routes(
        route for surface in surfaces for route in surface.routes()))
    return app
