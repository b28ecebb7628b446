"""Where an injected layer may come from.

An ``http(s)`` layer is served as a redirect, so a location on an internal address would turn wave into a
way to point clients (and scanners that follow wave's redirects) at internal services. By default only
public addresses are allowed; ``WAVE_LAYER_ALLOWED_HOSTS`` lists hosts or networks to trust.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from wave.errors import BadRequest

_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def _allowed(host: str, addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address],
             allowed: tuple[str, ...]) -> bool:
    networks = [ipaddress.ip_network(a, strict=False) for a in allowed if "/" in a]
    names = {a.lower() for a in allowed if "/" not in a}
    if host.lower() in names:
        return True
    return bool(networks) and all(any(addr in net for net in networks) for addr in addresses)


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


async def check_layer_location(url: str, allowed: tuple[str, ...], field: str) -> None:
    """Raise BadRequest when the URL's host resolves to a loopback, private, link-local or metadata address
    and is not explicitly allowed."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise BadRequest(f"{field} has an invalid port") from None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise BadRequest(f"{field} must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise BadRequest(f"{field} must not carry credentials in the URL")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443,
                                                                  type=socket.SOCK_STREAM)
        except OSError:
            raise BadRequest(f"{field}: cannot resolve host {host}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if _allowed(host, addresses, allowed):
        return
    if host.lower() in _METADATA_HOSTS or any(_is_internal(a) for a in addresses):
        raise BadRequest(
            f"{field}: host {host} resolves to an internal address; layers must come from public hosts "
            "(an operator can allow it with WAVE_LAYER_ALLOWED_HOSTS)"
        )
