"""Where a build makes the builder connect: the ``FROM`` images a user wrote, the build and cache repositories.

The builder (buildah, BuildKit) pulls and pushes on its own, outside wave's HTTP session, so these hosts are
checked against the address policy when the build is submitted: a ``containerFile`` saying
``FROM 127.0.0.1:6379/x`` must not make wave's builder talk to an internal Redis. Images wave's own settings
name (the conda and spack base images) are the operator's choice and are not checked.
"""

from __future__ import annotations

import re

from wave.addresses import InternalAddress, is_loopback_host
from wave.builds.definition import BuildDefinition
from wave.errors import BadRequest
from wave.http import AddressGuard
from wave.oci.reference import ImageRef, InvalidReference, parse_reference

_DOCKER_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE | re.MULTILINE)
_SIF_FROM = re.compile(r"^\s*From:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
USER_RECIPES = frozenset({"dockerfile", "freeze"})  # build files whose FROM lines a user wrote


def user_images(definition: BuildDefinition) -> list[str]:
    """The images the build file's user-written ``FROM`` lines name, without stage names, ``scratch`` and
    ``$ARG`` forms (the builder expands those; wave cannot know them)."""
    if definition.kind not in USER_RECIPES:
        return []
    if definition.format == "sif":
        return [m[1] for m in _SIF_FROM.finditer(definition.build_file)]
    images, stages = [], set()
    for match in _DOCKER_FROM.finditer(definition.build_file):
        image, stage = match[1], match[2]
        if image.lower() not in stages and image.lower() != "scratch" and "$" not in image:
            images.append(image)
        if stage:
            stages.add(stage.lower())
    return images


def _endpoint(ref: ImageRef) -> tuple[str, int]:
    host = ref.endpoint
    if host.startswith("["):
        name, _, port = host[1:].partition("]")
        return name, int(port[1:]) if port[1:].isdigit() else 443
    name, _, port = host.partition(":")
    if port.isdigit():
        return name, int(port)
    return name, 80 if is_loopback_host(name) else 443


async def check_build_reach(guard: AddressGuard, definition: BuildDefinition) -> None:
    """BadRequest naming the image and the setting when a host the builder would reach is internal."""
    targets = [("FROM image", image) for image in user_images(definition)]
    targets.append(("buildRepository", definition.repository))
    if definition.cache_repository:
        targets.append(("cacheRepository", definition.cache_repository))
    for what, text in targets:
        try:
            ref = parse_reference(text)
        except InvalidReference:
            continue  # the builder reports a bad reference with its own words
        host, port = _endpoint(ref)
        try:
            await guard.check(host, port)
        except InternalAddress as exc:
            raise BadRequest(f"{what} {text}: registry {exc.where} is an internal address; "
                             "trust it with WAVE_TRUSTED_HOSTS") from None
        except OSError:
            continue  # does not resolve here: the builder fails on it and says so
