"""The pairing WebSocket: ``/pairing/{service}/token/{token}?endpoint=<Platform API URL>``.

Seqera Platform opens it to pair: wave answers ``pairing-response`` with the pairing id and the public key
Platform then encrypts users' credentials with. While the socket is open, wave's calls to that Platform go
through it (``proxy-http-request`` → ``proxy-http-response``, see :mod:`wave.platform.tunnel`). Only
endpoints in ``WAVE_PLATFORM_ENDPOINTS`` may pair (``*``: any). Heartbeats are answered; unknown message
types and fields are ignored, so a newer Platform does not break the socket.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from wave import keys
from wave.errors import ApiError, BadRequest
from wave.platform.client import normalize_endpoint
from wave.platform.tunnel import new_msg_id

log = logging.getLogger("wave.pairing")

MAX_MESSAGE = 8 << 20


class _Socket:
    """The socket as the tunnel sees it: a JSON sender."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self._ws.send_str(orjson.dumps(message).decode())


def allowed(endpoint: str, configured: tuple[str, ...]) -> bool:
    if "*" in configured:
        return True
    for item in configured:
        try:
            if normalize_endpoint(item) == endpoint:
                return True
        except ValueError:
            continue
    return False


def _known_token(token: str, digests: tuple[str, ...]) -> bool:
    """Whether the token's sha256 is configured; every digest is compared, in constant time each."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    return any([hmac.compare_digest(digest, known) for known in digests])  # a list: no short circuit


async def pairing_socket(request: web.Request) -> web.StreamResponse:
    settings = request.app[keys.SETTINGS]
    service = request.match_info["service"]
    raw = request.query.get("endpoint")
    if not raw:
        raise BadRequest("pairing needs the Platform API URL: ?endpoint=https://…")
    try:
        endpoint = normalize_endpoint(raw)
    except ValueError as exc:
        raise BadRequest(f"endpoint: {exc}") from None
    if not allowed(endpoint, settings.platform_endpoints):
        log.warning("refused pairing of %s at %s: not in WAVE_PLATFORM_ENDPOINTS", service, endpoint)
        raise ApiError(f"Seqera Platform at {endpoint} may not pair with this wave service "
                       "(it is not in WAVE_PLATFORM_ENDPOINTS)", status=403)
    if settings.pairing_tokens and not _known_token(request.match_info["token"], settings.pairing_tokens):
        log.warning("refused pairing of %s at %s: unknown license token", service, endpoint)
        raise ApiError("this license token may not pair with this wave service (WAVE_PAIRING_TOKENS)", status=403)
    record = await request.app[keys.PAIRINGS].acquire(service, endpoint)
    tunnels = request.app[keys.TUNNELS]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    socket = _Socket(ws)
    await tunnels.opened(endpoint, socket)
    try:
        await socket.send({"@type": "pairing-response", "msgId": new_msg_id(), "pairingId": record.pairing_id,
                           "publicKey": record.public_key})
    except (ConnectionError, RuntimeError):
        await tunnels.closed(endpoint, socket)
        return ws
    log.info("Seqera Platform at %s paired (%s, pairing id %s)", endpoint, service, record.pairing_id)
    try:
        async for message in ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                body = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                log.debug("pairing socket of %s: a message that is not JSON, ignored", endpoint)
                continue
            if not isinstance(body, dict):
                continue
            kind = body.get("@type")
            if kind == "pairing-heartbeat":
                await socket.send({"@type": "pairing-heartbeat", "msgId": new_msg_id()})
            elif kind == "proxy-http-response":
                tunnels.delivered(body)
            else:
                log.debug("pairing socket of %s: message type %r ignored", endpoint, kind)
    finally:
        await tunnels.closed(endpoint, socket)
        log.info("the pairing socket of Seqera Platform at %s closed", endpoint)
    return ws


def routes() -> list[web.RouteDef]:
    return [
        web.get("/pairing/{service:[A-Za-z0-9_-]{1,64}}/token/{token:[^/]{1,4096}}", pairing_socket),
    ]
