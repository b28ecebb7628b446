"""``POST /v1alpha1/inspect``: an image's manifest and config, or its index, fetched by wave.

Body: ``{"containerImage": "…", "containerPlatform": "linux/arm64"?}`` (Platform credential fields are
accepted like a container request's). Answer: ``{"container": {image, registry, repository, reference, digest,
mediaType, manifest|index, config?, platformManifest?}}``. Upstream errors are 400s that say what the
registry said, as for a container request.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from wave import keys
from wave.api.answers import InspectAnswer, InspectedImage, InspectRequest
from wave.api.handlers import read_json
from wave.errors import BadRequest, Denied, ManifestUnknown, NameUnknown, RegistryError
from wave.oci import augment
from wave.oci.platform import InvalidPlatform, parse_platform
from wave.oci.reference import InvalidReference, parse_reference
from wave.registry.inspect import inspect_image
from wave.responses import json_response


async def inspect(request: web.Request) -> web.Response:
    body: Any = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if not isinstance(body.get("containerImage"), str) or not body["containerImage"]:
        raise BadRequest("containerImage is required (a string)")
    try:
        asked = msgspec.convert(body, InspectRequest)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc).replace(" - at `$.", " (").replace("`", "") + ")") from None
    try:
        ref = parse_reference(asked.container_image)
    except InvalidReference as exc:
        raise BadRequest(f"containerImage: {exc}") from None
    platform = None
    if asked.container_platform:
        try:
            platform = parse_platform(asked.container_platform)
        except InvalidPlatform as exc:
            raise BadRequest(f"containerPlatform: {exc}") from None
    try:
        auth = await request.app[keys.IDENTITY].request_auth(body, ref.registry)
        found = await inspect_image(request.app[keys.REGISTRY], ref, platform, auth=auth)
    except (ManifestUnknown, NameUnknown):
        raise BadRequest(f"containerImage {ref} does not exist in registry {ref.registry}") from None
    except augment.NoMatchingPlatform as exc:
        raise BadRequest(f"containerImage {ref}: {exc}") from None
    except Denied as exc:
        raise BadRequest(f"containerImage {ref}: {exc.message}") from None
    except RegistryError as exc:
        if exc.status < 500 and exc.status != 429:
            raise BadRequest(f"containerImage {ref}: {exc.message}") from None
        raise
    answer = InspectAnswer(msgspec.convert(found.to_json(), InspectedImage))  # the published shape, checked
    return json_response(msgspec.json.encode(answer))
