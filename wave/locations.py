"""Where an injected layer may come from.

An ``http(s)`` layer is served as a redirect, so a location on an internal address would turn wave into a
way to point clients (and scanners that follow wave's redirects) at internal services. Only public addresses
are allowed, and what the operator trusts (``WAVE_TRUSTED_HOSTS``): the same policy and resolver that wave's
own connections go through (``wave.http``).
"""

from __future__ import annotations

from wave.errors import BadRequest
from wave.http import AddressGuard, UrlRefused


async def check_layer_location(url: str, guard: AddressGuard, field: str) -> None:
    """BadRequest naming the field when clients may not be sent to the URL (not http(s), credentials in it,
    an internal address that is not trusted, a host that does not resolve)."""
    try:
        await guard.check_url(url)
    except UrlRefused as exc:
        raise BadRequest(f"{field} {exc}") from None
