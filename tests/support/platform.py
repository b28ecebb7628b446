"""A fake Seqera Platform on loopback, speaking the wire formats of PLATFORM.md and nothing more.

Why: no Platform can run here, and wave's side must be tested for real: its HTTP calls, the pairing
WebSocket, the decryption of credentials. The fake has users with access and refresh tokens (refresh answers
with the ``JWT`` / ``JWT_REFRESH_TOKEN`` cookies, and rotates both), workspaces holding registry credentials,
``GET /credentials/{id}/keys`` packets encrypted with the public key a pairing handed it (``1\\P\\…``, RSA
PKCS#1 v1.5 + AES/ECB), and a pairing client that opens a real WebSocket to wave, answers heartbeats, and
performs the ``proxy-http-request`` calls wave sends it against its own API. It is written from the format
description, independently of wave's code, so a mistake on either side shows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.support.wave import BackgroundApp

API_PREFIX = "/api"
PROXIED = "X-Fake-Platform-Proxied"  # marks the calls the pairing client makes for wave


@dataclass
class FakeCredential:
    id: str
    registry: str
    username: str
    password: str
    name: str = "registry"
    provider: str = "container-reg"
    aws: bool = False  # an ECR credential: Platform sends AWS keys instead of a user and password


@dataclass
class FakeUser:
    id: int
    user_name: str
    email: str
    access_token: str
    refresh_token: str
    credentials: dict[int | None, list[FakeCredential]] = field(default_factory=dict)  # workspace -> entries


@dataclass
class Pairing:
    wave_url: str
    pairing_id: str
    public_key: rsa.RSAPublicKey
    ws: aiohttp.ClientWebSocketResponse
    messages: list[dict[str, Any]] = field(default_factory=list)  # everything wave sent
    task: asyncio.Task[None] | None = None


def encrypt_packet(public_key: rsa.RSAPublicKey, payload: dict[str, Any]) -> str:
    """What Platform sends as ``keys``: ``1\\P\\<b64 RSA(aesKey)>\\<b64 AES/ECB/PKCS5(json)>``."""
    aes_key = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(json.dumps(payload).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
    data = encryptor.update(padded) + encryptor.finalize()
    key = public_key.encrypt(aes_key, asym_padding.PKCS1v15())
    return "\\".join(["1", "P", base64.b64encode(key).decode(), base64.b64encode(data).decode()])


class FakePlatform(BackgroundApp):
    def __init__(self) -> None:
        self.users: list[FakeUser] = []
        self.expired: set[str] = set()  # access tokens that now answer 401
        self.calls: list[str] = []  # "METHOD path?query" of every API call received
        self.direct_calls: list[str] = []  # those that did not come through a pairing socket
        self.refreshes = 0
        self.proxied = 0  # proxy-http-requests answered through a pairing socket
        self.pairings: dict[str, Pairing] = {}  # by pairingId
        self._next_id = 100
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        app = web.Application()
        app.router.add_get(f"{API_PREFIX}/user-info", self._user_info)
        app.router.add_post(f"{API_PREFIX}/oauth/access_token", self._refresh)
        app.router.add_get(f"{API_PREFIX}/credentials", self._credentials)
        app.router.add_get(f"{API_PREFIX}/credentials/{{id}}/keys", self._keys)
        super().__init__(app)

    @property
    def endpoint(self) -> str:
        """The API URL requests give as ``towerEndpoint``."""
        return self.url + API_PREFIX

    # --- the test's side ----------------------------------------------------------------------------

    def add_user(self, user_name: str, email: str) -> FakeUser:
        self._next_id += 1
        user = FakeUser(self._next_id, user_name, email, f"at-{secrets.token_hex(12)}", f"rt-{secrets.token_hex(12)}")
        self.users.append(user)
        return user

    def add_credentials(self, user: FakeUser, registry: str, username: str, password: str,
                        workspace: int | None = None, name: str = "registry", aws: bool = False) -> FakeCredential:
        self._next_id += 1
        entry = FakeCredential(f"cred{self._next_id}", registry, username, password, name, aws=aws)
        user.credentials.setdefault(workspace, []).append(entry)
        return entry

    def expire(self, user: FakeUser) -> None:
        """The user's access token stops working (as when it expires); the refresh token still works."""
        self.expired.add(user.access_token)

    def pair(self, wave_url: str, license_token: str = "license-token", service: str = "tower",
             endpoint: str | None = None) -> Pairing:
        """Open the pairing socket to wave (blocking) and wait for its pairing-response."""
        return self.call(self._pair(wave_url, license_token, service, endpoint or self.endpoint))

    def pair_status(self, wave_url: str, endpoint: str, service: str = "tower") -> int:
        """Try to pair with another endpoint; the HTTP status wave answered the upgrade with."""
        return self.call(self._pair_status(wave_url, endpoint, service))

    def unpair(self, pairing: Pairing) -> None:
        self.call(self._unpair(pairing))

    # --- the API --------------------------------------------------------------------------------------

    def _record(self, request: web.Request) -> None:
        self.calls.append(f"{request.method} {request.path_qs}")
        if request.headers.get(PROXIED) != "1":
            self.direct_calls.append(f"{request.method} {request.path_qs}")

    def _bearer(self, request: web.Request) -> FakeUser | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token is None or token in self.expired:
            return None
        return next((u for u in self.users if u.access_token == token), None)

    async def _user_info(self, request: web.Request) -> web.Response:
        self._record(request)
        user = self._bearer(request)
        if user is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        return web.json_response({"user": {"id": user.id, "userName": user.user_name, "email": user.email,
                                           "firstName": None, "organization": None}})

    async def _refresh(self, request: web.Request) -> web.Response:
        self._record(request)
        form = await request.post()
        token = form.get("refresh_token")
        user = next((u for u in self.users if u.refresh_token == token), None)
        if form.get("grant_type") != "refresh_token" or user is None:
            return web.json_response({"message": "invalid refresh token"}, status=401)
        self.refreshes += 1
        user.access_token = f"at-{secrets.token_hex(12)}"
        user.refresh_token = f"rt-{secrets.token_hex(12)}"
        response = web.json_response({})
        response.set_cookie("JWT", user.access_token, httponly=True, path="/")
        response.set_cookie("JWT_REFRESH_TOKEN", user.refresh_token, httponly=True, path="/")
        return response

    def _workspace(self, request: web.Request) -> int | None:
        text = request.query.get("workspaceId")
        return int(text) if text else None

    async def _credentials(self, request: web.Request) -> web.Response:
        self._record(request)
        user = self._bearer(request)
        if user is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        entries = user.credentials.get(self._workspace(request), [])
        return web.json_response({"credentials": [
            {"id": c.id, "name": c.name, "provider": c.provider, "registry": c.registry,
             "description": None, "lastUsed": None} for c in entries]})

    async def _keys(self, request: web.Request) -> web.Response:
        self._record(request)
        user = self._bearer(request)
        if user is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        pairing = self.pairings.get(request.query.get("pairingId", ""))
        if pairing is None:
            return web.json_response({"message": "unknown pairingId"}, status=400)
        entry = next((c for c in user.credentials.get(self._workspace(request), [])
                      if c.id == request.match_info["id"]), None)
        if entry is None:
            return web.json_response({"message": "not found"}, status=404)
        payload: dict[str, Any] = {"discriminator": "container-reg", "userName": entry.username,
                                   "password": entry.password, "registry": entry.registry}
        if entry.aws:
            payload = {"discriminator": "aws", "accessKey": entry.username, "secretKey": entry.password,
                       "assumeRoleArn": None}
        return web.json_response({"keys": encrypt_packet(pairing.public_key, payload)})

    # --- the pairing client -------------------------------------------------------------------------

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _ws_url(self, wave_url: str, service: str, license_token: str) -> str:
        return f"{wave_url.replace('http://', 'ws://')}/pairing/{service}/token/{license_token}"

    async def _pair(self, wave_url: str, license_token: str, service: str, endpoint: str) -> Pairing:
        session = await self._client()
        ws = await session.ws_connect(self._ws_url(wave_url, service, license_token), params={"endpoint": endpoint},
                                      heartbeat=None)
        first = await asyncio.wait_for(ws.receive_json(), 10)
        assert first.get("@type") == "pairing-response", first
        key = serialization.load_der_public_key(base64.b64decode(first["publicKey"]))
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
        pairing = Pairing(wave_url, str(first["pairingId"]), key, ws, [first])
        self.pairings[pairing.pairing_id] = pairing
        pairing.task = asyncio.create_task(self._serve(pairing))
        await ws.send_json({"@type": "pairing-heartbeat", "msgId": secrets.token_hex(8)})
        await ws.send_json({"@type": "something-new", "msgId": "x", "extra": 1})  # must be ignored
        return pairing

    async def _pair_status(self, wave_url: str, endpoint: str, service: str) -> int:
        session = await self._client()
        try:
            ws = await session.ws_connect(self._ws_url(wave_url, service, "license-token"),
                                          params={"endpoint": endpoint})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101

    async def _serve(self, pairing: Pairing) -> None:
        session = await self._client()
        async for message in pairing.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            pairing.messages.append(body)
            if body.get("@type") == "proxy-http-request":
                task = asyncio.create_task(self._proxy(session, pairing, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _proxy(self, session: aiohttp.ClientSession, pairing: Pairing, body: dict[str, Any]) -> None:
        """Perform the call inside "Platform's network" (its own API) and send the answer back."""
        headers = {k: ", ".join(v) for k, v in (body.get("headers") or {}).items()}
        headers[PROXIED] = "1"
        if body.get("auth"):
            headers["Authorization"] = f"Bearer {body['auth']}"
        async with session.request(body["method"], body["uri"], headers=headers,
                                   data=body.get("body")) as response:
            text = await response.text()
            answer_headers: dict[str, list[str]] = {}
            for k, v in response.headers.items():
                answer_headers.setdefault(k, []).append(v)
        self.proxied += 1
        await pairing.ws.send_json({"@type": "proxy-http-response", "msgId": body["msgId"],
                                    "status": response.status, "body": text, "headers": answer_headers})

    async def _unpair(self, pairing: Pairing) -> None:
        await pairing.ws.close()
        if pairing.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await pairing.task

    def stop(self) -> None:
        async def close() -> None:
            for pairing in self.pairings.values():
                if not pairing.ws.closed:
                    await pairing.ws.close()
            if self._session is not None:
                await self._session.close()

        if self._thread.is_alive():
            self.call(close())
        super().stop()
