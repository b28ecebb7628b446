"""Every shared resource of the application, as a typed key, and what a request carries between layers.

Only the surfaces and the web layer read these: services get what they need through their constructors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from wave.config import Settings

if TYPE_CHECKING:
    from wave.builds.service import BuildService
    from wave.containers import ContainerService
    from wave.identity import IdentityService
    from wave.limits import Limits
    from wave.metrics import UsageMetrics
    from wave.platform.pairing import PairingStore
    from wave.platform.tunnel import Tunnels
    from wave.prometheus import OpsMetrics
    from wave.proxy.blobcache import BlobCache
    from wave.proxy.blobs import BlobService
    from wave.proxy.manifests import ManifestService
    from wave.registry.client import RegistryClient
    from wave.storage import ObjectStorage
    from wave.store import KeyValueStore
    from wave.tokens import TokenStore

SETTINGS = web.AppKey("settings", Settings)
HTTP = web.AppKey("http", aiohttp.ClientSession)
STORE: web.AppKey[KeyValueStore] = web.AppKey("store")
REGISTRY: web.AppKey[RegistryClient] = web.AppKey("registry")
TOKENS: web.AppKey[TokenStore] = web.AppKey("tokens")
MANIFESTS: web.AppKey[ManifestService] = web.AppKey("manifests")
BLOBS: web.AppKey[BlobService] = web.AppKey("blobs")
BLOB_CACHE: web.AppKey[BlobCache] = web.AppKey("blob_cache")  # only when WAVE_BLOB_CACHE is set
CONTAINERS: web.AppKey[ContainerService] = web.AppKey("containers")
LIMITS: web.AppKey[Limits] = web.AppKey("limits")  # per caller, counted in the store
BUILDS: web.AppKey[BuildService] = web.AppKey("builds")
STORAGE: web.AppKey[ObjectStorage] = web.AppKey("storage")
EVENTS: web.AppKey[UsageMetrics] = web.AppKey("events")  # usage metrics: pulls, requests, builds
OPS: web.AppKey[OpsMetrics] = web.AppKey("ops")  # Prometheus counters of this replica
PAIRINGS: web.AppKey[PairingStore] = web.AppKey("pairings")  # Seqera Platform pairing records (shared store)
TUNNELS: web.AppKey[Tunnels] = web.AppKey("tunnels")  # pairing sockets: calls to a paired Platform
IDENTITY: web.AppKey[IdentityService] = web.AppKey("identity")  # Platform users and their credentials

# per request
CLIENT_IP: web.RequestKey[str | None] = web.RequestKey("client_ip")  # behind trusted proxies: the real client
