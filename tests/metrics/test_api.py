"""The metrics endpoints through a real aiohttp server, on both stores: basic auth, the contract's shapes,
and a 400 naming the parameter for every bad value."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.metrics.conftest import AUTH, PASSWORD, USER
from tests.metrics.test_usage import container, submit
from tests.support.registry import basic_auth
from wave import keys
from wave.app import create_app
from wave.config import Settings
from wave.metrics import UsageMetrics, utc_today

V2 = ["/v1alpha2/metrics/builds", "/v1alpha2/metrics/pulls", "/v1alpha2/metrics/fusion/pulls"]
V1 = [f"/v1alpha1/metrics/{kind}{by}" for kind in ("builds", "pulls") for by in ("", "/ip", "/user")]
TODAY = utc_today().isoformat()


@pytest.fixture
async def client(aiohttp_client, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))


def usage(client: TestClient) -> UsageMetrics:
    return client.app[keys.EVENTS]


@pytest.mark.parametrize("path", V2 + V1)
async def test_metrics_refuse_requests_without_or_with_wrong_credentials(client: TestClient, path: str) -> None:
    for headers in ({}, {"Authorization": basic_auth(USER, "wrong")},
                    {"Authorization": basic_auth("nobody", PASSWORD)},
                    {"Authorization": "Bearer abc"}, {"Authorization": "Basic !!!notbase64"}):
        response = await client.get(path, params={"date": TODAY}, headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Basic realm="wave"'
        assert "WAVE_METRICS_ACCOUNTS" in (await response.json())["message"]


async def test_no_account_is_accepted_when_none_is_configured(aiohttp_client, tmp_path) -> None:
    from wave.config import load_settings

    client = await aiohttp_client(create_app(load_settings(environ={}, state_dir=tmp_path)))
    response = await client.get("/v1alpha2/metrics/pulls", params={"date": TODAY}, headers=AUTH)
    assert response.status == 401


async def test_v2_counts_pulls_and_builds_by_date_and_org(client: TestClient) -> None:
    metrics = usage(client)
    await metrics.image_pulled(container("alice@seqera.io"))
    await metrics.image_pulled(container("bob@seqera.io", fusion=True))
    await metrics.image_pulled(container("carol@example.com"))
    await metrics.build_launched("b_1", "alice@seqera.io", "10.0.0.1")
    today = utc_today().isoformat()  # the day they were counted on (TODAY is from import: a run may cross midnight)

    async def count(path: str, **params: str) -> int:
        response = await client.get(path, params=params, headers=AUTH)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert list(body) == ["count"]
        return body["count"]

    assert await count("/v1alpha2/metrics/pulls", date=today) == 3
    assert await count("/v1alpha2/metrics/pulls", org="seqera.io") == 2
    assert await count("/v1alpha2/metrics/pulls", date=today, org="example.com") == 1
    assert await count("/v1alpha2/metrics/fusion/pulls", date=today) == 1
    assert await count("/v1alpha2/metrics/fusion/pulls", org="example.com") == 0
    assert await count("/v1alpha2/metrics/builds", date=today, org="seqera.io") == 1
    assert await count("/v1alpha2/metrics/pulls", date="2000-01-01") == 0


async def test_v1_counts_requests_and_builds_per_ip_and_user(client: TestClient) -> None:
    metrics = usage(client)
    await metrics.container_requested(submit("10.0.0.1", "alice@seqera.io"), container(), None)
    await metrics.container_requested(submit("10.0.0.1", "alice@seqera.io", fusion=True), None, None)
    await metrics.container_requested(submit("10.0.0.2", "bob@example.com"), container(), None)
    await metrics.build_finished("b_1", "alice@seqera.io", "10.0.0.1", succeeded=True)
    await metrics.build_finished("b_2", "bob@example.com", "10.0.0.2", succeeded=False)
    today = utc_today().isoformat()  # the day they were counted on (TODAY is from import: a run may cross midnight)

    async def get(path: str, **params: str) -> dict:
        response = await client.get(path, params=params, headers=AUTH)
        assert response.status == 200, await response.text()
        return await response.json()

    assert await get("/v1alpha1/metrics/pulls") == {"count": 3}
    assert await get("/v1alpha1/metrics/pulls", startDate=today, endDate=today, fusion="true") == {"count": 1}
    assert await get("/v1alpha1/metrics/pulls/ip", startDate=today) == {"result": {"10.0.0.1": 2, "10.0.0.2": 1}}
    assert await get("/v1alpha1/metrics/pulls/ip", limit="1") == {"result": {"10.0.0.1": 2}}
    assert await get("/v1alpha1/metrics/pulls/user", fusion="false") == {
        "result": {"alice@seqera.io": 1, "bob@example.com": 1}}
    assert await get("/v1alpha1/metrics/builds", startDate=today, endDate=today, success="true") == {"count": 1}
    assert await get("/v1alpha1/metrics/builds/ip", success="false") == {"result": {"10.0.0.2": 1}}
    assert await get("/v1alpha1/metrics/builds/user", endDate=today) == {
        "result": {"alice@seqera.io": 1, "bob@example.com": 1}}
    # The contract's own example passes success= to a pulls endpoint: parameters it does not list are ignored.
    assert await get("/v1alpha1/metrics/pulls/ip", success="true") == {"result": {"10.0.0.1": 2, "10.0.0.2": 1}}


@pytest.mark.parametrize(("path", "params", "names"), [
    ("/v1alpha2/metrics/pulls", {}, "date"),
    ("/v1alpha2/metrics/pulls", {"date": "2024-4-8"}, "date"),
    ("/v1alpha2/metrics/builds", {"date": "2024-02-30"}, "date"),
    ("/v1alpha2/metrics/fusion/pulls", {"org": "not a domain"}, "org"),
    ("/v1alpha2/metrics/fusion/pulls", {"org": ""}, "org"),
    ("/v1alpha1/metrics/pulls", {"startDate": "yesterday"}, "startDate"),
    ("/v1alpha1/metrics/pulls", {"endDate": "20240408"}, "endDate"),
    ("/v1alpha1/metrics/pulls", {"startDate": "2024-04-09", "endDate": "2024-04-08"}, "startDate"),
    ("/v1alpha1/metrics/pulls/ip", {"startDate": "2020-01-01", "endDate": "2024-01-01"}, "startDate"),
    ("/v1alpha1/metrics/pulls/ip", {"limit": "1001"}, "limit"),
    ("/v1alpha1/metrics/pulls/ip", {"limit": "-1"}, "limit"),
    ("/v1alpha1/metrics/pulls/user", {"limit": "ten"}, "limit"),
    ("/v1alpha1/metrics/pulls", {"fusion": "yes"}, "fusion"),
    ("/v1alpha1/metrics/builds/user", {"success": "1"}, "success"),
])
async def test_bad_parameters_are_400_naming_the_parameter(client: TestClient, path: str, params: dict,
                                                           names: str) -> None:
    response = await client.get(path, params=params, headers=AUTH)
    assert response.status == 400
    assert names in (await response.json())["message"]


async def test_limit_bounds_are_accepted(client: TestClient) -> None:
    for limit in ("0", "1000"):
        response = await client.get("/v1alpha1/metrics/builds/ip", params={"limit": limit}, headers=AUTH)
        assert response.status == 200
        assert await response.json() == {"result": {}}
