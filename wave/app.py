"""The application factory, used alike by ``wave serve`` and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from wave import keys, ops
from wave.addresses import client_address_middleware
from wave.api import builds as build_routes
from wave.api import metrics as metrics_api
from wave.api import routes as api_routes
from wave.api import tokens as token_api
from wave.builds import BuildService, create_launcher
from wave.builds.gate import BuildGate
from wave.config import Settings
from wave.containers import ContainerService
from wave.errors import error_middleware
from wave.metrics import UsageMetrics
from wave.oci.reference import parse_reference
from wave.proxy import routes as proxy_routes
from wave.proxy.blobs import BlobService
from wave.proxy.cache import ObjectCache
from wave.proxy.manifests import ManifestService
from wave.registry.client import RegistryClient
from wave.storage import open_storage
from wave.store import open_store
from wave.tokens import TokenStore


async def _services(app: web.Application) -> AsyncIterator[None]:
    """Open every client and store once, and close them in reverse order on shutdown."""
    settings = app[keys.SETTINGS]
    store = await open_store(settings)
    timeout = aiohttp.ClientTimeout(total=None, connect=settings.upstream_connect_timeout,
                                    sock_connect=settings.upstream_connect_timeout,
                                    sock_read=settings.upstream_read_timeout)
    session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                    connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=60))
    storage = open_storage(settings)
    builds: BuildService | None = None
    try:
        client = RegistryClient(session, settings)
        tokens = TokenStore(store)
        ops_metrics = app[keys.OPS]
        cache = ObjectCache(store, on_lookup=lambda hit: ops_metrics.cache_lookup("objects", hit))
        usage = UsageMetrics(store, settings, ops=ops_metrics)
        builds = BuildService(settings, store, storage, create_launcher(settings),
                              lambda ref: client.exists(parse_reference(ref)), events=usage)
        manifests = ManifestService(settings, client, store, cache, BuildGate(builds, settings.build_timeout))
        app[keys.STORE] = store
        app[keys.STORAGE] = storage
        app[keys.HTTP] = session
        app[keys.REGISTRY] = client
        app[keys.TOKENS] = tokens
        app[keys.BUILDS] = builds
        app[keys.MANIFESTS] = manifests
        app[keys.BLOBS] = BlobService(client, cache, manifests, tokens)
        app[keys.EVENTS] = usage
        app[keys.CONTAINERS] = ContainerService(settings, tokens, client, builds, events=usage)
        yield
    finally:
        if builds is not None:
            await builds.close()
        await session.close()
        await storage.close()
        await store.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[client_address_middleware(settings.trusted_proxies), error_middleware],
                          client_max_size=settings.max_request_size)
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.append(_services)
    proxy_routes.setup(app)
    api_routes.setup(app)
    build_routes.setup(app)
    ops.setup(app)
    metrics_api.setup(app)
    token_api.setup(app)
    return app
