"""The address policy (what wave may connect to) and who the client is behind trusted proxies."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.registry import Registry, basic_auth
from wave.addresses import (
    AddressPolicy,
    InternalAddress,
    address_policy,
    client_address,
    embedded_ipv4,
    is_internal,
    parse_trust_entry,
)
from wave.config import ConfigError, load_settings
from wave.http import policy_for

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


# --- what is internal: every spelling of an internal IPv4 address counts ------------------------------


@pytest.mark.parametrize("text", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "100.100.100.200",
    "0.0.0.0", "0.1.2.3", "224.0.0.1", "224.0.1.1", "239.255.255.250", "255.255.255.255", "198.18.0.1",
    "::1", "::", "fe80::1", "fd00::1", "fd00:ec2::254", "fec0::1", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",  # IPv4-mapped
    "::127.0.0.1", "::a9fe:a9fe", "::10.0.0.1",  # IPv4-compatible
    "64:ff9b::a9fe:a9fe", "64:ff9b::127.0.0.1", "64:ff9b::10.0.0.1",  # NAT64 of internal hosts
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:0a00:0001::",  # 6to4 of internal hosts
    "2001:db8::1",  # documentation
])
def test_internal_addresses_in_every_form(text: str) -> None:
    assert is_internal(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8",
                                  "64:ff9b::8.8.8.8", "2002:0808:0808::1"])
def test_public_addresses_in_every_form(text: str) -> None:
    assert not is_internal(ipaddress.ip_address(text))


def test_embedded_ipv4_reads_each_ipv6_form() -> None:
    expected = ipaddress.IPv4Address("169.254.169.254")
    for text in ("::ffff:169.254.169.254", "::169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::"):
        address = ipaddress.ip_address(text)
        assert isinstance(address, ipaddress.IPv6Address) and embedded_ipv4(address) == expected
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1111")) is None


# --- what the operator trusts ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "host", "port", "network"), [
    ("registry.lan", "registry.lan", None, None),
    ("Registry.LAN.", "registry.lan", None, None),
    ("registry.lan:5000", "registry.lan", 5000, None),
    ("127.0.0.1:5501", "127.0.0.1", 5501, None),
    ("[::1]:5000", "::1", 5000, None),
    ("[fd00::7]", "fd00::7", None, None),
    ("fd00::7", "fd00::7", None, None),
    ("10.0.0.0/8", None, None, "10.0.0.0/8"),
    ("fd00::/8", None, None, "fd00::/8"),
])
def test_trust_entries_parse(text: str, host: str | None, port: int | None, network: str | None) -> None:
    entry = parse_trust_entry(text)
    assert (entry.host, entry.port) == (host, port)
    assert (str(entry.network) if entry.network else None) == network


@pytest.mark.parametrize("text", ["10.0.0.0/33", "host:0", "host:65536", "host:abc", "[::1", "[nothost]:5",
                                  "a:b:c", "user@host", "host:"])
def test_bad_trust_entries_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_trust_entry(text)


def test_bad_trusted_hosts_fail_at_start_up_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="WAVE_TRUSTED_HOSTS"):
        load_settings(environ={"WAVE_TRUSTED_HOSTS": "registry.lan:99999"})
    with pytest.raises(ConfigError, match="WAVE_LAYER_ALLOWED_HOSTS"):
        load_settings(environ={"WAVE_LAYER_ALLOWED_HOSTS": "10.0.0.0/33"})
    settings = load_settings(environ={"WAVE_TRUSTED_HOSTS": "none", "WAVE_LAYER_ALLOWED_HOSTS": "files.lan"})
    assert settings.trusted_entries == ("none", "files.lan")


LOOP = ipaddress.ip_address("127.0.0.1")


def refuses(policy: AddressPolicy, host: str, port: int, *addresses: str) -> bool:
    try:
        policy.check(host, port, [ipaddress.ip_address(a) for a in addresses] or [LOOP])
    except InternalAddress as exc:
        assert "WAVE_TRUSTED_HOSTS" in str(exc) and exc.where in str(exc)
        return True
    return False


def test_unset_trusts_loopback_only_while_wave_listens_on_loopback() -> None:
    laptop = address_policy((), listen_host="127.0.0.1")
    assert not refuses(laptop, "127.0.0.1", 5000) and not refuses(laptop, "localhost", 1, "::1")
    assert refuses(laptop, "10.0.0.1", 80, "10.0.0.1") and refuses(laptop, "169.254.169.254", 80, "169.254.169.254")
    for listen in ("0.0.0.0", "::", "10.0.0.5"):
        server = address_policy((), listen_host=listen)
        assert refuses(server, "127.0.0.1", 5000) and refuses(server, "localhost", 5000, "::1")
    assert refuses(address_policy(("none",), listen_host="127.0.0.1"), "127.0.0.1", 5000)


def test_a_host_port_entry_trusts_that_port_only() -> None:
    policy = address_policy(("127.0.0.1:5000", "files.lan:8080"), listen_host="127.0.0.1")
    assert not refuses(policy, "127.0.0.1", 5000)
    assert refuses(policy, "127.0.0.1", 6379)  # same host, another port
    assert not refuses(policy, "files.lan", 8080, "10.0.0.9") and refuses(policy, "files.lan", 22, "10.0.0.9")


def test_a_configured_registry_is_trusted_on_its_own_port_only() -> None:
    settings = load_settings(environ={}, host="0.0.0.0", trusted_hosts=("none",),
                             registry_credentials={"127.0.0.1:5501": ("u", "p")},
                             insecure_registries=("registry.lan",))
    policy = policy_for(settings)
    assert not refuses(policy, "127.0.0.1", 5501) and refuses(policy, "127.0.0.1", 6390)
    assert not refuses(policy, "registry.lan", 80, "10.0.0.3") and refuses(policy, "registry.lan", 443, "10.0.0.3")
    assert "127.0.0.1:5501 (registry credentials)" in policy.describe()


def test_a_name_with_one_internal_address_is_refused_and_a_metadata_name_whatever_it_resolves_to() -> None:
    policy = address_policy(("none",), listen_host="0.0.0.0")
    assert refuses(policy, "mixed.example", 443, "93.184.216.34", "10.0.0.1")
    assert not refuses(policy, "public.example", 443, "93.184.216.34")
    assert refuses(policy, "metadata.google.internal", 80, "93.184.216.34")
    assert not refuses(address_policy(("metadata.google.internal",), listen_host="0.0.0.0"),
                       "metadata.google.internal", 80, "169.254.169.254")


def test_a_network_entry_covers_the_ipv4_mapped_form_but_not_other_families() -> None:
    policy = address_policy(("127.0.0.0/8",), listen_host="0.0.0.0")
    assert not refuses(policy, "::ffff:127.0.0.1", 80, "::ffff:127.0.0.1")
    assert refuses(policy, "::1", 80, "::1")


def test_the_policy_line_says_what_is_trusted() -> None:
    assert "loopback trusted because wave listens" in address_policy((), listen_host="127.0.0.1").describe()
    assert address_policy(("none",), listen_host="127.0.0.1").describe() == (
        "internal addresses refused; nothing internal trusted")
    assert address_policy(("10.0.0.0/8",), listen_host="0.0.0.0").describe() == (
        "internal addresses refused; trusted: 10.0.0.0/8")
