"""Real pulls through wave with skopeo, counted by the metrics endpoints per day, org, IP and user, on both
stores; revoking a token makes the next pull NAME_UNKNOWN. What an operator following the README sees."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.metrics.conftest import ACCOUNTS, AUTH
from tests.support.clients import ClientError, skopeo_copy
from tests.support.registry import Registry
from tests.support.wave import WaveServer
from wave import keys
from wave.metrics import utc_today
from wave.oci.models import ContainerConfig
from wave.oci.platform import parse_platform
from wave.oci.reference import parse_reference
from wave.tokens import ContainerRequest, new_token

pytestmark = pytest.mark.clients


def metric(wave: WaveServer, path: str) -> Any:
    response = wave.request("GET", path, headers=AUTH)
    assert response.status == 200, response.body
    return response.json()


def wait_for_count(wave: WaveServer, path: str, expected: int, timeout: float = 10.0) -> None:
    """Pulls are counted in the background (a pull never waits for a counter): poll briefly."""
    deadline = time.monotonic() + timeout
    while (count := metric(wave, path)["count"]) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count == expected, f"{path}: {count} != {expected}"


def token_for(wave: WaveServer, registry: Registry, ref: str, email: str) -> str:
    """A token of a signed-in user (the submit API has no user yet: Platform sign-in is another issue)."""
    now = time.time()
    request = ContainerRequest(token=new_token(), image=parse_reference(registry.ref(ref)), config=ContainerConfig(),
                               platform=parse_platform("linux/amd64"), created=now, expires=now + 600,
                               user_email=email, client_ip="127.0.0.1")
    wave.call(wave.app[keys.TOKENS].save(request))
    return f"{wave.host}/wt/{request.token}/{ref}"


def test_skopeo_pulls_are_counted_per_day_org_ip_and_user(wave_factory: Any, registry: Registry,
                                                          backend: dict[str, Any], tmp_path: Path) -> None:
    wave = wave_factory(metrics_accounts=ACCOUNTS, **backend)
    today = utc_today().isoformat()

    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    skopeo_copy(answer["targetImage"], tmp_path / "anonymous")
    skopeo_copy(token_for(wave, registry, "library/busybox:multi-oci", "alice@seqera.io"), tmp_path / "alice")
    skopeo_copy(token_for(wave, registry, "library/busybox:oci", "bob@seqera.io"), tmp_path / "bob")

    wait_for_count(wave, f"/v1alpha2/metrics/pulls?date={today}", 3)
    assert metric(wave, "/v1alpha2/metrics/pulls?org=seqera.io") == {"count": 2}
    assert metric(wave, f"/v1alpha2/metrics/pulls?date={today}&org=seqera.io") == {"count": 2}
    assert metric(wave, f"/v1alpha2/metrics/fusion/pulls?date={today}") == {"count": 0}
    # v1alpha1 counts container requests: the one submit, from the test's address.
    assert metric(wave, f"/v1alpha1/metrics/pulls?startDate={today}") == {"count": 1}
    assert metric(wave, "/v1alpha1/metrics/pulls/ip") == {"result": {"127.0.0.1": 1}}
    assert wave.request("GET", f"/v1alpha2/metrics/pulls?date={today}").status == 401


def test_revoked_token_pull_is_name_unknown(wave_factory: Any, registry: Registry,
                                            backend: dict[str, Any], tmp_path: Path) -> None:
    wave = wave_factory(metrics_accounts=ACCOUNTS, **backend)
    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest")})
    token = answer["containerToken"]
    skopeo_copy(answer["targetImage"], tmp_path / "before")

    assert wave.request("DELETE", f"/container-token/{token}", headers=AUTH).status == 204

    manifest = wave.request("GET", f"/v2/wt/{token}/library/busybox/manifests/latest")
    assert manifest.status == 404
    assert manifest.json()["errors"][0]["code"] == "NAME_UNKNOWN"  # type: ignore[index]
    with pytest.raises(ClientError):
        skopeo_copy(answer["targetImage"], tmp_path / "after")
