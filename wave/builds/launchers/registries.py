"""Registry settings for local builders: which registries speak plain http, and credentials as a file.

Credentials go into a docker ``config.json``-format file (mode 0600, inside the build directory, removed with
it) passed as ``--authfile``/``DOCKER_CONFIG``: never on a command line, where ``ps`` would show them.
Plain http is allowed per registry (loopback and configured insecure registries) through a
``registries.conf`` rather than ``--tls-verify=false``, which would also drop TLS checks for Docker Hub.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from wave.addresses import is_loopback_host
from wave.oci.reference import DOCKER_HUB, InvalidReference, parse_reference

_IMAGE_LINE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)
_COPY_FROM = re.compile(r"--from=(\S+)", re.IGNORECASE)
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


def registry_host(image: str) -> str | None:
    try:
        return parse_reference(image.removeprefix("oras://")).registry
    except InvalidReference:
        return None  # a build stage name, or an ARG


def referenced_registries(build_file: str, target: str) -> set[str]:
    """Registries a build talks to: the target's and those of its ``FROM`` / ``--from=`` images."""
    images = [target, *_IMAGE_LINE.findall(build_file), *_COPY_FROM.findall(build_file)]
    return {host for host in map(registry_host, images) if host}


def from_registries(build_file: str) -> set[str]:
    """Registries a build pulls from: those of its ``FROM`` / ``--from=`` images."""
    images = [*_IMAGE_LINE.findall(build_file), *_COPY_FROM.findall(build_file)]
    return {host for host in map(registry_host, images) if host}


def plain_http_registries(hosts: Iterable[str], insecure: Iterable[str]) -> list[str]:
    allowed = set(insecure)
    return sorted(h for h in set(hosts) | allowed if is_loopback_host(h) or h in allowed)


def write_registries_conf(path: Path, plain_http: list[str]) -> Path:
    lines = ['unqualified-search-registries = ["docker.io"]', 'short-name-mode = "permissive"', ""]
    for host in plain_http:
        lines += ["[[registry]]", f"location = {json.dumps(host)}", "insecure = true", ""]
    path.write_text("\n".join(lines))
    return path


def auth_config(credentials: Mapping[str, tuple[str, str]]) -> dict[str, dict[str, dict[str, str]]]:
    """A docker ``config.json`` document with these registry credentials."""
    auths: dict[str, dict[str, str]] = {}
    for host, (user, password) in credentials.items():
        entry = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        auths[host] = entry
        if host in (DOCKER_HUB, "registry-1.docker.io", "index.docker.io"):
            auths[DOCKER_HUB_AUTH_KEY] = entry
    return {"auths": auths}


def write_auth_file(path: Path, credentials: Mapping[str, tuple[str, str]]) -> Path | None:
    """A docker ``config.json`` with wave's registry credentials (None when there are none)."""
    if not credentials:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(auth_config(credentials), out)
    return path
