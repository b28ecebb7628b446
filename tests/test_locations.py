"""Where an injected http(s) layer may come from (wave.locations).

No external DNS: IP literals need no resolution, ``localhost`` resolves from /etc/hosts, and other names go
through a stand-in resolver installed on the running loop. The policy is a server's that does not listen on
loopback (nothing internal trusted unless the test says so).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from wave.addresses import address_policy
from wave.errors import BadRequest
from wave.http import AddressGuard
from wave.locations import check_layer_location

FIELD = "containerConfig.layers[0].location"


def guard(trusted: tuple[str, ...]) -> AddressGuard:
    return AddressGuard(address_policy(trusted or ("none",), listen_host="0.0.0.0"))


async def refused(url: str, allowed: tuple[str, ...] = ()) -> str:
    with pytest.raises(BadRequest) as caught:
        await check_layer_location(url, guard(allowed), FIELD)
    assert caught.value.status == 400
    assert caught.value.message.startswith(FIELD)
    return caught.value.message


async def allowed(url: str, allow: tuple[str, ...] = ()) -> None:
    assert await check_layer_location(url, guard(allow), FIELD) is None


@pytest.fixture
def dns(monkeypatch) -> Callable[[dict[str, list[str]]], None]:
    """Answer getaddrinfo for the given names (case-insensitively, like DNS); anything else fails to resolve."""
    def install(records: dict[str, list[str]]) -> None:
        loop = asyncio.get_running_loop()

        async def getaddrinfo(host, port, *args, **kwargs):
            addresses = {name.lower(): value for name, value in records.items()}.get(host.lower())
            if addresses is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port) if ":" not in a else (a, port, 0, 0)) for a in addresses]

        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)

    return install


# --- internal addresses are refused ------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/layer.tar.gz",
    "https://127.0.0.1:8443/layer.tar.gz",
    "http://10.0.0.1/l.tgz",
    "http://172.16.5.4/l.tgz",
    "http://192.168.1.10/l.tgz",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/l.tgz",
    "http://0.0.0.0/l.tgz",
    "http://[::1]/l.tgz",
    "http://[::1]:5000/l.tgz",
    "http://[fd00::1]/l.tgz",
    "http://[fe80::1]/l.tgz",
    "http://[::ffff:127.0.0.1]/l.tgz",
    "http://[::ffff:169.254.169.254]/l.tgz",
    "http://224.0.0.1/l.tgz",
])
async def test_internal_ip_literals_are_refused(url):
    message = await refused(url)
    assert "internal address" in message
    assert "WAVE_TRUSTED_HOSTS" in message


@pytest.mark.parametrize("url", ["http://localhost/l.tgz", "http://localhost:5000/v2/x/blobs/sha256:abc",
                                 "http://LOCALHOST/l.tgz"])
async def test_localhost_is_refused(url):
    assert "internal address" in await refused(url)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "0"])
async def test_other_spellings_of_loopback_are_refused(host):
    assert "internal address" in await refused(f"http://{host}/l.tgz")


@pytest.mark.parametrize("host", ["metadata.google.internal", "metadata", "instance-data", "Metadata.Google.Internal"])
async def test_metadata_host_names_are_refused_even_if_they_resolve_publicly(dns, host):
    dns({host: ["93.184.216.34"]})
    assert "internal address" in await refused(f"http://{host}/computeMetadata/v1/")


async def test_name_resolving_to_a_private_address_is_refused(dns):
    dns({"files.internal.example": ["10.1.2.3"]})
    assert "host files.internal.example:443, an internal address" in await refused(
        "https://files.internal.example/l.tgz")


async def test_name_with_one_private_address_among_public_ones_is_refused(dns):
    dns({"mixed.example": ["93.184.216.34", "192.168.0.7"]})
    assert "internal address" in await refused("https://mixed.example/l.tgz")


async def test_name_resolving_to_ipv6_loopback_is_refused(dns):
    dns({"six.example": ["::1"]})
    assert "internal address" in await refused("https://six.example/l.tgz")


async def test_unresolvable_host_is_refused_naming_it(dns):
    dns({})
    message = await refused("https://nowhere.invalid/l.tgz")
    assert message == f"{FIELD} names host nowhere.invalid, which does not resolve"


# --- public addresses are allowed --------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://93.184.216.34/layer.tar.gz", "https://93.184.216.34:8443/l.tgz",
                                 "https://[2606:2800:220:1:248:1893:25c8:1946]/l.tgz"])
async def test_public_ip_literals_are_allowed(url):
    await allowed(url)


async def test_public_name_is_allowed(dns):
    dns({"fusionfs.seqera.io": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    await allowed("https://fusionfs.seqera.io/releases/v2.4.tar.gz")


# --- the operator's allow list -----------------------------------------------------------------------


@pytest.mark.parametrize("allow", [("localhost",), ("LocalHost",), ("files.lan", "localhost")])
async def test_allowed_host_name_is_allowed(allow):
    await allowed("http://localhost:5000/l.tgz", allow)


async def test_allowed_name_does_not_allow_other_names(dns):
    dns({"other.lan": ["10.0.0.9"]})
    await refused("http://other.lan/l.tgz", ("files.lan",))


@pytest.mark.parametrize("url, allow", [
    ("http://127.0.0.1:5000/l.tgz", ("127.0.0.0/8",)),
    ("http://10.20.30.40/l.tgz", ("10.0.0.0/8",)),
    ("http://[fd00::7]/l.tgz", ("fd00::/8",)),
    ("http://169.254.169.254/l.tgz", ("169.254.169.254/32",)),
])
async def test_address_in_an_allowed_network_is_allowed(url, allow):
    await allowed(url, allow)


async def test_name_whose_addresses_are_all_in_an_allowed_network_is_allowed(dns):
    dns({"files.lan": ["10.0.0.5", "10.0.0.6"]})
    await allowed("http://files.lan/l.tgz", ("10.0.0.0/8",))


async def test_address_outside_the_allowed_network_is_refused():
    await refused("http://192.168.1.1/l.tgz", ("10.0.0.0/8",))


async def test_allowed_ipv4_network_does_not_allow_ipv6_loopback():
    await refused("http://[::1]/l.tgz", ("127.0.0.0/8",))


# --- malformed URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://user:pw@93.184.216.34/l.tgz", "https://token@93.184.216.34/l.tgz",
                                 "https://user:pw@localhost/l.tgz"])
async def test_credentials_in_the_url_are_refused_without_echoing_them(url):
    message = await refused(url, ("localhost",))
    assert message == f"{FIELD} must not carry credentials in the URL"


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/l.tgz", "file:///etc/passwd", "http:///l.tgz", "//host/l.tgz",
                                 "93.184.216.34/l.tgz"])
async def test_non_http_or_hostless_urls_are_refused(url):
    assert await refused(url) == f"{FIELD} must be an http(s) URL with a host"


@pytest.mark.parametrize("url", ["http://localhost:abc/l.tgz", "http://93.184.216.34:99999/l.tgz"])
async def test_bad_port_is_refused_as_a_bad_request(url):
    await refused(url)
