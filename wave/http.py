"""wave's one outbound HTTP client, which connects only where the address policy allows.

Every request wave makes — to a source registry, a build or cache repository, a redirect or token realm an
upstream names, a layer download, the Seqera Platform — goes through the session made here. Its connector
checks each address it is about to connect to against :class:`wave.addresses.AddressPolicy` *after*
resolution and right before the connection, so a name cannot pass a check and then connect somewhere else
(DNS rebinding, a 60 s DNS cache, a redirect to the same host on another port).

Checks that must happen before anything is sent (a layer URL wave redirects clients to, a ``FROM`` image the
builder will pull) use :meth:`AddressGuard.check` with the same resolver and policy.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from wave.addresses import (
    AddressPolicy,
    InternalAddress,
    IPAddress,
    TrustEntry,
    address_policy,
    host_port,
    is_loopback_host,
    parse_address,
    registry_entry,
)
from wave.config import Settings
from wave.oci.reference import InvalidReference, parse_reference

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

log = logging.getLogger("wave.http")


class AddressRefused(OSError):
    """The connector refused an address under the policy. An OSError, so aiohttp reports it as the cause of a
    ``ClientConnectorError``; :func:`refused_address` finds it again."""

    def __init__(self, refusal: InternalAddress) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal

    @property
    def where(self) -> str:
        return self.refusal.where


class UrlRefused(ValueError):
    """A URL wave would send a client to (or fetch) is not allowed; the message says why, worded to follow
    the name of the field or thing that held the URL ("… location must be an http(s) URL")."""


def refused_address(exc: BaseException) -> AddressRefused | None:
    """The policy refusal behind an aiohttp error, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, AddressRefused):
            return seen
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, AddressRefused):
            return os_error
        seen = seen.__cause__ or seen.__context__
    return None


class AddressGuard:
    """The policy with the resolver the connector uses: one answer to "may wave reach host:port?"."""

    def __init__(self, policy: AddressPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver or aiohttp.ThreadedResolver()

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The host's addresses (a literal is its own); OSError when the name does not resolve."""
        literal = parse_address(host)
        if literal is not None:
            return [literal]
        results = await self.resolver.resolve(host, port, family=socket.AF_UNSPEC)
        return _addresses_of(results)

    async def check(self, host: str, port: int) -> None:
        """Raise InternalAddress when wave may not reach ``host:port``; OSError when it does not resolve.
        Sends nothing: for what wave only names to others (a client, a builder)."""
        self.policy.check(host, port, await self.addresses(host, port))

    async def check_url(self, url: str) -> None:
        """A URL wave sends a client to or fetches: http(s) with a host, no credentials in it, and not on an
        internal address unless trusted. UrlRefused with the reason, naming the host."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise UrlRefused("has an invalid port") from None
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise UrlRefused("must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise UrlRefused("must not carry credentials in the URL")
        try:
            await self.check(host, port or (443 if parts.scheme == "https" else 80))
        except InternalAddress as exc:
            raise UrlRefused(f"names host {exc.where}, an internal address; trust it with WAVE_TRUSTED_HOSTS") from None
        except OSError:
            raise UrlRefused(f"names host {host}, which does not resolve") from None

    def check_results(self, host: str, port: int, results: Sequence[ResolveResult]) -> None:
        """What the connector calls with the addresses it is about to connect to."""
        try:
            self.policy.check(host, port, _addresses_of(results))
        except InternalAddress as refusal:
            log.warning("refused to connect to %s (%s): internal address", refusal.where, refusal.address)
            raise AddressRefused(refusal) from None

    async def close(self) -> None:
        await self.resolver.close()


def _addresses_of(results: Sequence[ResolveResult]) -> list[IPAddress]:
    addresses = []
    for result in results:
        address = parse_address(str(result["host"]))
        if address is None:  # never expected from a resolver: refuse rather than guess
            raise OSError(f"resolver returned {result['host']!r}, which is not an address")
        addresses.append(address)
    return addresses


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that refuses, under the guard's policy, every address it resolved — literals, names,
    cached answers alike — right before it connects to them."""

    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(resolver=guard.resolver, **kwargs)
        self._guard = guard

    async def _resolve_host(self, host: str, port: int,
                            traces: Sequence[Trace] | None = None) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        self._guard.check_results(host.strip("[]"), port, results)
        return results


def policy_for(settings: Settings) -> AddressPolicy:
    """The address policy the settings describe: ``WAVE_TRUSTED_HOSTS`` (or its default), plus each registry
    with configured credentials or listed as insecure, on its own port only."""
    registries: list[TrustEntry] = []
    for key in settings.registry_credentials:
        plain = key in settings.insecure_registries or is_loopback_host(key)
        registries.append(registry_entry(key, plain, "registry credentials"))
    for key in settings.insecure_registries:
        registries.append(registry_entry(key, True, "insecure registry"))
    for repository, why in ((settings.build_repo, "WAVE_BUILD_REPO"), (settings.cache_repo, "WAVE_CACHE_REPO")):
        try:
            host = parse_reference(repository).registry if repository else ""
        except InvalidReference:
            continue  # naming.py refuses it with its own message when a build needs it
        if host:
            plain = host in settings.insecure_registries or is_loopback_host(host)
            registries.append(registry_entry(host, plain, why))
    return address_policy(settings.trusted_entries, listen_host=settings.host, registries=registries)


def create_client_session(settings: Settings, guard: AddressGuard, *,
                          timeout: aiohttp.ClientTimeout | None = None,
                          limit: int | None = None) -> aiohttp.ClientSession:
    """The aiohttp session for every outbound request wave makes (registries, realms, redirects, layer
    downloads, the Seqera Platform): its connector enforces the address policy at connect time. Create it
    once per process (``wave.app`` does, as ``keys.HTTP``) and close it on shutdown; pass per-request timeouts
    for clients whose budget differs from the registries'. Never make another ``aiohttp.ClientSession``."""
    if timeout is None:
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.upstream_connect_timeout,
                                        sock_connect=settings.upstream_connect_timeout,
                                        sock_read=settings.upstream_read_timeout)
    # limit_per_host: one slow registry cannot hold every connection while the others wait for one
    connector = GuardedConnector(guard, limit=limit or settings.upstream_connections, ttl_dns_cache=60,
                                 limit_per_host=settings.upstream_connections_per_host)
    return aiohttp.ClientSession(timeout=timeout, auto_decompress=False, connector=connector)


@asynccontextmanager
async def opened_session(settings: Settings, guard: AddressGuard) -> AsyncIterator[aiohttp.ClientSession]:
    """:func:`create_client_session`, closed (with the guard's resolver) when the context ends."""
    session = create_client_session(settings, guard)
    try:
        yield session
    finally:
        await session.close()
        await guard.close()


def refusal_text(where: str) -> str:
    """The one way wave words a refusal."""
    return f"{where} is an internal address; trust it with WAVE_TRUSTED_HOSTS"


__all__ = ["AddressGuard", "AddressRefused", "GuardedConnector", "UrlRefused", "create_client_session",
           "host_port", "opened_session", "policy_for", "refusal_text", "refused_address"]
