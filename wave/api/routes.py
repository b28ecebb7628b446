"""Control API routes; only registration lives here."""

from __future__ import annotations

from aiohttp import web

from wave.api import handlers, inspect, openapi


def routes() -> list[web.RouteDef]:
    return [
        web.post("/container-token", handlers.container_token),
        web.post("/v1alpha2/container", handlers.container_v2),
        web.post("/v1alpha1/inspect", inspect.inspect),
        web.get("/service-info", handlers.service_info),
        web.get("/openapi.json", openapi.openapi_json),
    ]
