"""HTTP basic auth for the operator endpoints (usage metrics, token revocation).

Accounts come from ``WAVE_METRICS_ACCOUNTS`` as ``user:<sha256 hex of the password>``, so no password is
ever configured, logged or stored in clear. The check hashes what the client sent and compares digests in
constant time, and does the same work for an unknown user (against a dummy digest), so timing reveals neither
a password nor which account names exist. A refusal is 401 with the ``Basic`` challenge (curl, browsers and
Prometheus then know to send credentials) and the control API's ``{"message": …}`` body.

Use ``@requires_account`` on a handler; the accounts are read from the application's settings on each request.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import cast

import orjson
from aiohttp import web
from aiohttp_basicauth import BasicAuthMiddleware

from wave import keys

REALM = "wave"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DUMMY_DIGEST = hashlib.sha256(b"not an account").hexdigest()


def password_digest(password: str) -> str:
    """sha256 hex of the password's bytes as the client sent them (aiohttp decodes the header as latin-1,
    which maps bytes to characters one to one: encoding back gives the original UTF-8 bytes)."""
    try:
        raw = password.encode("latin-1")
    except UnicodeEncodeError:
        raw = password.encode("utf-8")
    return hashlib.sha256(raw).hexdigest()


class AccountsAuth(BasicAuthMiddleware):
    """Basic auth against the configured accounts; only ``required`` is used (never as a global middleware)."""

    def __init__(self) -> None:
        super().__init__(force=False, realm=REALM)

    async def check_credentials(self, username: str, password: str, request: web.Request) -> bool:
        accounts = request.app[keys.SETTINGS].metrics_accounts
        expected = accounts.get(username)
        matches = hmac.compare_digest(password_digest(password), expected or _DUMMY_DIGEST)
        return matches and expected is not None

    def challenge(self) -> web.Response:
        body = {"message": "authentication required: use HTTP basic auth with an account configured in "
                           "WAVE_METRICS_ACCOUNTS"}
        return web.Response(body=orjson.dumps(body), status=401, content_type="application/json",
                            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})


_auth = AccountsAuth()


def requires_account(handler: Handler) -> Handler:
    """The handler, answering only requests with the credentials of a configured account (typed: the
    package's own decorator is not)."""
    return cast(Handler, _auth.required(handler))
