"""Who the client is, behind the proxies an operator trusts (metrics count clients by address)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.registry import Registry, basic_auth
from wave.addresses import client_address

TRUSTED = ("10.0.0.0/8", "127.0.0.1/32")


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("198.51.100.4", "203.0.113.7", TRUSTED, "198.51.100.4"),  # an untrusted peer cannot claim another address
    ("10.1.2.3", "203.0.113.7", TRUSTED, "203.0.113.7"),  # through the ingress
    ("10.1.2.3", "203.0.113.7, 10.9.9.9", TRUSTED, "203.0.113.7"),  # through two trusted proxies
    ("10.1.2.3", "6.6.6.6, 203.0.113.7", TRUSTED, "203.0.113.7"),  # a spoofed first hop is ignored
    ("10.1.2.3", "10.4.4.4", TRUSTED, "10.4.4.4"),  # only proxies: the first one
    ("10.1.2.3", None, TRUSTED, "10.1.2.3"),
    ("10.1.2.3", "203.0.113.7", (), "10.1.2.3"),  # nothing trusted: always the peer
    ("10.1.2.3", "not-an-ip", TRUSTED, "not-an-ip"),
])
def test_client_address(peer: str, forwarded: str | None, trusted: tuple[str, ...], expected: str) -> None:
    assert client_address(peer, forwarded, trusted) == expected


def test_metrics_count_the_forwarded_client_only_behind_a_trusted_proxy(wave_factory: Any,
                                                                       registry: Registry) -> None:
    accounts = {"ops": hashlib.sha256(b"pw").hexdigest()}
    behind_ingress = wave_factory(trusted_proxies=("127.0.0.0/8",), metrics_accounts=accounts)
    exposed = wave_factory(metrics_accounts=accounts)
    body = {"containerImage": registry.ref("library/busybox:latest")}
    for wave in (behind_ingress, exposed):
        response = wave.request("POST", "/v1alpha2/container", body, headers={"X-Forwarded-For": "203.0.113.7"})
        assert response.status == 200
    today = datetime.now(UTC).date().isoformat()
    path = f"/v1alpha1/metrics/pulls/ip?startDate={today}"
    auth = {"Authorization": basic_auth("ops", "pw")}
    assert behind_ingress.request("GET", path, headers=auth).json() == {"result": {"203.0.113.7": 1}}
    assert exposed.request("GET", path, headers=auth).json() == {"result": {"127.0.0.1": 1}}
