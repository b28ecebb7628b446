"""Errors that reach a client: one class per OCI error code and per API failure, each carrying its status.

Handlers and services raise these; :mod:`wave.edge` renders them (OCI error JSON on ``/v2/``,
``{"message": …}`` on the control API). Classes only: the lowest modules raise them without reaching up.
"""

from __future__ import annotations

from typing import Any


class WaveError(Exception):
    """Base of every error with a client-facing status and message."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class ApiError(WaveError):
    """A control API error: ``{"message": …}``."""

    status = 400


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class Unavailable(WaveError):
    """A dependency (the store, an upstream) cannot be reached; retrying later may work."""

    status = 503


class RegistryError(WaveError):
    """An OCI distribution error, rendered as OCI error JSON on ``/v2/``."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None,
                 headers: dict[str, str] | None = None, code: str | None = None):
        super().__init__(message, status=status, headers=headers)
        self.detail = detail
        if code is not None:
            self.code = code


def _registry_error(name: str, code: str, status: int) -> type[RegistryError]:
    return type(name, (RegistryError,), {"code": code, "status": status, "__doc__": f"OCI ``{code}``."})


NameUnknown = _registry_error("NameUnknown", "NAME_UNKNOWN", 404)
NameInvalid = _registry_error("NameInvalid", "NAME_INVALID", 400)
ManifestUnknown = _registry_error("ManifestUnknown", "MANIFEST_UNKNOWN", 404)
ManifestInvalid = _registry_error("ManifestInvalid", "MANIFEST_INVALID", 400)
BlobUnknown = _registry_error("BlobUnknown", "BLOB_UNKNOWN", 404)
DigestInvalid = _registry_error("DigestInvalid", "DIGEST_INVALID", 400)
Unauthorized = _registry_error("Unauthorized", "UNAUTHORIZED", 401)
Denied = _registry_error("Denied", "DENIED", 403)
UnsupportedOperation = _registry_error("UnsupportedOperation", "UNSUPPORTED", 405)
TooManyRequests = _registry_error("TooManyRequests", "TOOMANYREQUESTS", 429)
UpstreamUnavailable = _registry_error("UpstreamUnavailable", "UNAVAILABLE", 502)
# wave's own limit per caller (wave.limits), apart from TooManyRequests, which an upstream answered
RateLimited = _registry_error("RateLimited", "TOOMANYREQUESTS", 429)
