"""The ``/v2/`` routes; only registration lives here."""

from __future__ import annotations

from aiohttp import web

from wave.proxy import handlers

# The characters of a repository name, not its grammar: a token serves exactly one repository, which the handler
# compares the name with (anything else is NAME_UNKNOWN), and the grammar's regex cost every request a microsecond.
_NAME = r"{name:[a-z0-9][a-z0-9._/-]*}"
_PREFIX = "/v2/wt/{token:[a-z0-9]+}/" + _NAME


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v2/", handlers.ping),  # aiohttp answers HEAD for GET routes
        web.get("/v2", handlers.ping),
        web.get(_PREFIX + "/manifests/{reference}", handlers.manifest),
        web.get(_PREFIX + "/blobs/{digest}", handlers.blob),
        web.get(_PREFIX + "/tags/list", handlers.tags),
        # Blob uploads (the push API) exist on a registry but not on this read-only proxy: 405, with no method allowed.
        web.route("*", _PREFIX + "/blobs/uploads/", handlers.read_only),
        web.route("*", _PREFIX + "/blobs/uploads/{session}", handlers.read_only),
        web.route("*", "/v2/{path:.*}", handlers.unknown_route),  # last: every other /v2 path is OCI's 404
    ]
