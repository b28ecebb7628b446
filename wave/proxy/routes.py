"""The ``/v2/`` routes; only registration lives here."""

from __future__ import annotations

from aiohttp import web

from wave.proxy import handlers

_NAME = r"{name:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*}"
_PREFIX = "/wt/{token:[a-z0-9]+}/" + _NAME


def setup(v2: web.Application) -> None:
    """Register on the ``/v2`` sub-application: paths here are relative to ``/v2``."""
    v2.router.add_get("/", handlers.ping)  # aiohttp answers HEAD for GET routes
    v2.router.add_get("", handlers.ping)
    v2.router.add_get(_PREFIX + "/manifests/{reference}", handlers.manifest)
    v2.router.add_get(_PREFIX + "/blobs/{digest}", handlers.blob)
    v2.router.add_get(_PREFIX + "/tags/list", handlers.tags)
    # Blob uploads (the push API) exist on a registry but not on this read-only proxy: 405, with no method allowed.
    v2.router.add_route("*", _PREFIX + "/blobs/uploads/", handlers.read_only)
    v2.router.add_route("*", _PREFIX + "/blobs/uploads/{session}", handlers.read_only)
