"""Where an injected layer may come from.

An ``http(s)`` layer is served as a redirect, so a location on an internal address would turn wave into a
way to point clients (and scanners that follow wave's redirects) at internal services. By default only
public addresses are allowed; ``WAVE_LAYER_ALLOWED_HOSTS`` lists hosts or networks to trust.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from wave.addresses import InternalAddress, check_public
from wave.errors import BadRequest


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
        await check_public(host, port or 443, allowed)
    except OSError:
        raise BadRequest(f"{field}: cannot resolve host {host}") from None
    except InternalAddress:
        raise BadRequest(
            f"{field}: host {host} resolves to an internal address; layers must come from public hosts "
            "(an operator can allow it with WAVE_LAYER_ALLOWED_HOSTS)"
        ) from None
