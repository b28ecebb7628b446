"""Control API routes; only registration lives here."""

from __future__ import annotations

from aiohttp import web

from wave.api import handlers, inspect, openapi


def setup(app: web.Application) -> None:
    app.router.add_post("/container-token", handlers.container_token)
    app.router.add_post("/v1alpha2/container", handlers.container_v2)
    app.router.add_post("/v1alpha1/inspect", inspect.inspect)
    app.router.add_get("/service-info", handlers.service_info)
    app.router.add_get("/openapi.json", openapi.openapi_json)
