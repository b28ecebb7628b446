"""Addresses: which hosts wave may send requests (or clients) to, and which address a client has.

A URL that came from a request (a layer location) or from an upstream registry (a redirect, a token realm)
must not make wave reach, or point clients at, loopback, private, link-local or metadata addresses: that
would expose internal services. Operators list hosts or networks to trust in ``WAVE_LAYER_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


class InternalAddress(ValueError):
    """The host is (or resolves to) an internal address and is not allowed."""


def _allowed(host: str, addresses: Iterable[IPAddress], allowed: Iterable[str]) -> bool:
    allowed = tuple(allowed)
    networks = [ipaddress.ip_network(a, strict=False) for a in allowed if "/" in a]
    names = {a.lower() for a in allowed if "/" not in a}
    if host.lower() in names:
        return True
    return bool(networks) and all(any(addr in net for net in networks) for addr in addresses)


def is_internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses (an IP literal is its own); OSError when the name does not resolve."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check_public(host: str, port: int, allowed: Iterable[str]) -> None:
    """Raise InternalAddress unless the host is allowed or resolves to public addresses only."""
    addresses = await resolve(host, port)
    if _allowed(host, addresses, allowed):
        return
    if host.lower() in METADATA_HOSTS or any(is_internal(a) for a in addresses):
        raise InternalAddress(f"host {host} resolves to an internal address")


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str | None:
    """The client's address: the TCP peer, or — when the peer is a trusted proxy (an ingress, a load
    balancer) — the last address in ``X-Forwarded-For`` that is not a trusted proxy itself."""
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]
    if not networks or not peer or not forwarded_for:
        return peer

    def is_trusted(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in networks)

    if not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer
