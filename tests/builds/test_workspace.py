"""Freeze layer downloads: redirects are followed by hand, and no hop may lead wave to an internal address.

Downloads go through wave's guarded session; the policy is built as on a server that does not listen on
loopback (so loopback is trusted only when the test says so).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from wave.addresses import address_policy
from wave.builds.freeze import LayerDownload
from wave.builds.workspace import MAX_REDIRECTS, LayerDownloadError
from wave.builds.workspace import download_layers as download_with
from wave.config import load_settings
from wave.http import AddressGuard, create_client_session

BLOB = b"\x1f\x8b not really a layer, but the digest is what counts"


@asynccontextmanager
async def _session(trusted: Sequence[str]) -> AsyncIterator[Any]:
    guard = AddressGuard(address_policy(tuple(trusted) or ("none",), listen_host="0.0.0.0"))
    async with create_client_session(load_settings(environ={}), guard) as session:
        yield session


async def download_layers(context: Path, items: tuple[LayerDownload, ...], trusted: Sequence[str]) -> None:
    async with _session(trusted) as session:
        await download_with(context, items, session)


def item(url: str) -> LayerDownload:
    return LayerDownload(url, "layer.tar.gz", "sha256:" + hashlib.sha256(BLOB).hexdigest(), len(BLOB))


@pytest.fixture
async def server(aiohttp_server: Any) -> Callable[[str, str], str]:
    """A layer server on 127.0.0.1: ``/layer`` is the blob, ``/to-loopback`` redirects to 127.0.0.1 itself,
    ``/chain/<n>`` redirects n times (relative Locations) before the blob. Returns URL(host, path)."""
    port = 0

    async def layer(_: web.Request) -> web.Response:
        return web.Response(body=BLOB)

    async def to_loopback(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{port}/layer")

    async def chain(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPTemporaryRedirect(f"/chain/{left - 1}" if left > 1 else "/layer")

    app = web.Application()
    app.router.add_get("/layer", layer)
    app.router.add_get("/to-loopback", to_loopback)
    app.router.add_get("/chain/{n}", chain)
    running = await aiohttp_server(app, host="127.0.0.1")
    port = running.port

    def url(host: str, path: str) -> str:
        return f"http://{host}:{port}{path}"

    return url


async def test_a_redirect_to_loopback_is_refused_unless_allowed(server: Callable[[str, str], str],
                                                                tmp_path: Path) -> None:
    # "localhost" is trusted by name, so only the redirect's host (127.0.0.1) is in question
    start = item(server("localhost", "/to-loopback"))
    with pytest.raises(LayerDownloadError, match=r"host 127\.0\.0\.1:\d+ is an internal address.*WAVE_TRUSTED_HOSTS"):
        await download_layers(tmp_path, (start,), ["localhost"])
    await download_layers(tmp_path, (start,), ["localhost", "127.0.0.0/8"])
    assert (tmp_path / "layer.tar.gz").read_bytes() == BLOB


async def test_the_submitted_host_is_checked_again(server: Callable[[str, str], str], tmp_path: Path) -> None:
    with pytest.raises(LayerDownloadError, match=r"host 127\.0\.0\.1:\d+ is an internal address.*WAVE_TRUSTED_HOSTS"):
        await download_layers(tmp_path, (item(server("127.0.0.1", "/layer")),), ())


async def test_redirects_are_followed_up_to_a_limit(server: Callable[[str, str], str], tmp_path: Path) -> None:
    allowed = ["127.0.0.0/8"]
    await download_layers(tmp_path, (item(server("127.0.0.1", f"/chain/{MAX_REDIRECTS}")),), allowed)
    assert (tmp_path / "layer.tar.gz").read_bytes() == BLOB
    with pytest.raises(LayerDownloadError, match=f"redirected more than {MAX_REDIRECTS} times"):
        await download_layers(tmp_path, (item(server("127.0.0.1", f"/chain/{MAX_REDIRECTS + 1}")),), allowed)
