"""``/v2`` is its own application: every error under it is OCI error JSON, the control API's are not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wave.app import create_app
from wave.config import load_settings

TOKEN_PATH = "/v2/wt/" + "a" * 32 + "/library/busybox"


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(create_app(load_settings(environ={}, state_dir=tmp_path)))


@pytest.mark.parametrize("path", ["/v2/nothing/here", "/v2/wt/UPPER/x/manifests/latest", "/v2/_catalog"])
async def test_unknown_v2_paths_are_oci_name_unknown(client: Any, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert (await response.json())["errors"][0]["code"] == "NAME_UNKNOWN"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "POST"])
async def test_writes_to_the_read_only_proxy_are_405_with_allow(client: Any, method: str) -> None:
    response = await client.request(method, f"{TOKEN_PATH}/manifests/latest")
    assert response.status == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD"}
    assert (await response.json())["errors"][0]["code"] == "UNSUPPORTED"


async def test_control_api_errors_stay_api_json(client: Any) -> None:
    response = await client.get("/no-such-endpoint")
    assert response.status == 404
    assert "message" in await response.json()
    response = await client.put("/container-token")
    assert response.status == 405
    assert "POST" in response.headers["Allow"]
    assert "message" in await response.json()
