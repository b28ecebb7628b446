"""The ``/v2/`` routes; only registration lives here."""

from __future__ import annotations

from aiohttp import web

from wave.proxy import handlers

_NAME = r"{name:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*}"
_PREFIX = "/v2/wt/{token:[a-z0-9]+}/" + _NAME


def setup(app: web.Application) -> None:
    app.router.add_get("/v2/", handlers.ping)  # aiohttp answers HEAD for GET routes
    app.router.add_get("/v2", handlers.ping)
    app.router.add_get(_PREFIX + "/manifests/{reference}", handlers.manifest)
    app.router.add_get(_PREFIX + "/blobs/{digest}", handlers.blob)
    app.router.add_get(_PREFIX + "/tags/list", handlers.tags)
