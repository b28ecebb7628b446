"""What a token stands for: its status (clients poll it while a build runs), its description, its revocation.

- ``GET /v1alpha2/container/{token}/status``: ``PENDING`` (a build is announced but not recorded yet),
  ``BUILDING`` (the build runs), ``DONE`` (no build, or the build completed; ``succeeded`` says how), like the
  reference: without a build, ``creationTime`` is the request's and ``duration`` the time since; with one,
  they are the build's start and duration (seconds).
- ``GET /container-token/{token}``: what was requested and what wave serves for it, never a secret: inline
  layer data is shown as its size, and neither the requester's e-mail nor IP is shown (whoever holds a token
  may read this).
- ``DELETE /container-token/{token}``: basic auth; the token stops working at once on every replica (every
  ``/v2`` request looks the token up in the shared store).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from wave import keys
from wave.api.auth import requires_account
from wave.errors import NotFound
from wave.oci.models import ContainerConfig, Layer
from wave.responses import json_response
from wave.tokens import ContainerRequest, iso_time
from wave.units import format_size

_TOKEN = "{token:[a-z0-9]{1,64}}"
BUILD_FAILED = "Container build did not complete successfully"


async def _container(request: web.Request) -> ContainerRequest:
    token = request.match_info["token"]
    container = await request.app[keys.TOKENS].get(token)
    if container is None:
        raise NotFound(f"container request {token[:8]}… is unknown or expired")
    return container


async def container_status(request: web.Request) -> web.Response:
    container = await _container(request)
    body: dict[str, Any] = {"id": container.token, "buildId": container.build_id}
    if not container.build_id:
        body.update(status="DONE", succeeded=True, creationTime=iso_time(container.created),
                    duration=round(max(0.0, time.time() - container.created), 3))
        return json_response(body)
    build = await request.app[keys.BUILDS].status(container.build_id)
    if build is None:  # announced to the client, not yet (or no longer) in the store
        body.update(status="PENDING", succeeded=None, creationTime=iso_time(container.created), duration=None)
        return json_response(body)
    started = build.start_time.timestamp()
    if build.status != "COMPLETED":
        body.update(status="BUILDING", succeeded=None, creationTime=iso_time(started),
                    duration=round(max(0.0, time.time() - started), 3))
        return json_response(body)
    body.update(status="DONE", succeeded=bool(build.succeeded), creationTime=iso_time(started),
                duration=build.duration)
    if not build.succeeded:
        body["reason"] = build.reason or BUILD_FAILED
    return json_response(body)


def _layer(layer: Layer) -> dict[str, Any]:
    location = f"data:…({format_size(layer.gzip_size)})" if layer.is_inline else layer.location
    return {"location": location, "gzipDigest": layer.gzip_digest, "gzipSize": layer.gzip_size,
            "tarDigest": layer.tar_digest}


def _config(config: ContainerConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"entrypoint": config.entrypoint, "cmd": config.cmd, "env": list(config.env),
                            "workingDir": config.working_dir, "layers": [_layer(x) for x in config.layers]}
    return {k: v for k, v in body.items() if v not in (None, [])}


def _user(container: ContainerRequest) -> dict[str, Any] | None:
    """The Seqera Platform user who asked: name and workspace (not the e-mail: whoever holds a token reads this)."""
    who = container.identity
    if who is None:
        return None
    return {"userName": who.user_name, "userId": who.user_id, "workspaceId": who.workspace_id,
            "towerEndpoint": who.endpoint}


async def describe_token(request: web.Request) -> web.Response:
    container = await _container(request)
    settings = request.app[keys.SETTINGS]
    image = container.image
    resolved = await request.app[keys.MANIFESTS].resolution_of(container)
    wave_digest = image.digest or (resolved.digest if resolved else None)
    source_digest = image.digest or (resolved.source if resolved else None)
    body = {
        "token": container.token,
        "creationTime": iso_time(container.created),
        "expiration": container.expiration,
        "request": {
            "containerImage": container.source_image or str(image),
            "containerPlatform": str(container.platform),
            "containerConfig": _config(container.config),
            "freeze": container.freeze,
        },
        "build": {"buildId": container.build_id} if container.build_id else None,
        "user": _user(container),
        "source": {"image": str(image), "digest": source_digest},
        "wave": {"image": container.target_image(settings.public_authority), "digest": wave_digest},
    }
    return json_response(body)


@requires_account
async def revoke_token(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    if not await request.app[keys.TOKENS].revoke(token):
        raise NotFound(f"container request {token[:8]}… is unknown or expired")
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.get(f"/v1alpha2/container/{_TOKEN}/status", container_status),
        web.get(f"/container-token/{_TOKEN}", describe_token),
        web.delete(f"/container-token/{_TOKEN}", revoke_token),
    ]
