"""wave's one HTTP session refuses internal addresses at connect time, whatever the name resolved to before.

Nothing here leaves loopback: names go through a scripted resolver, the only listener is a canary on
127.0.0.1 that counts connections, and every socket connect is checked to be a loopback one (a "public"
address a resolver returns is never connected to: the test fails first).
"""

from __future__ import annotations

import ast
import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.support.canary import Canary
from wave.addresses import address_policy
from wave.config import load_settings
from wave.http import AddressGuard, create_client_session, refused_address

PUBLIC = "93.184.216.34"  # only ever returned by the scripted resolver; never connected to


class ScriptedResolver(AbstractResolver):
    """Answers each name with the next address of its script (the last one repeats)."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = {name: list(answers) for name, answers in script.items()}
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        answers = self.script.get(host)
        if not answers:
            raise OSError(f"{host} does not resolve")
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0,
                              flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[Any]]:
    """Every address a socket connects to on this loop; anything but loopback fails the test before it
    is sent."""
    loop = asyncio.get_running_loop()
    original = loop.sock_connect
    seen: list[Any] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"a test tried to connect outside loopback: {address}")
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    yield seen


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as listener:
        yield listener


@pytest.fixture
async def session_with() -> AsyncIterator[Callable[..., aiohttp.ClientSession]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(trusted: tuple[str, ...] = ("none",), resolver: AbstractResolver | None = None,
             listen_host: str = "0.0.0.0") -> aiohttp.ClientSession:
        guard = AddressGuard(address_policy(trusted, listen_host=listen_host), resolver)
        session = create_client_session(load_settings(environ={}, upstream_connect_timeout=5), guard)
        sessions.append(session)
        make.guard = guard  # type: ignore[attr-defined]
        return session

    yield make
    for session in sessions:
        await session.close()


async def refused_where(session: aiohttp.ClientSession, url: str) -> str:
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with session.get(url):
            pass
    refusal = refused_address(caught.value)
    assert refusal is not None, f"not a policy refusal: {caught.value!r}"
    assert "WAVE_TRUSTED_HOSTS" in str(refusal)
    return refusal.where


async def test_a_trusted_loopback_port_is_reached(session_with: Any, canary: Canary, connects: list[Any]) -> None:
    """The control: the canary counts what does connect, and the connect check sees it."""
    session = session_with((canary.host,))
    with pytest.raises(aiohttp.ClientError):  # the canary hangs up without answering
        async with session.get(canary.url + "/v2/"):
            pass
    assert canary.connections() >= 1
    assert connects and all(address[1] == canary.port for address in connects)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "[::1]"])
async def test_loopback_is_refused_before_connecting(session_with: Any, canary: Canary, connects: list[Any],
                                                     host: str) -> None:
    session = session_with(("none",))
    assert await refused_where(session, f"http://{host}:{canary.port}/")
    assert canary.connections() == 0 and connects == []


async def test_the_same_host_on_another_port_is_refused(session_with: Any, canary: Canary,
                                                        connects: list[Any]) -> None:
    session = session_with((f"127.0.0.1:{canary.port + 1 if canary.port < 65535 else canary.port - 1}",))
    assert await refused_where(session, canary.url) == canary.host
    assert canary.connections() == 0 and connects == []


@pytest.mark.parametrize("address", ["169.254.169.254", "[64:ff9b::a9fe:a9fe]", "[::a9fe:a9fe]",
                                     "[2002:a9fe:a9fe::1]", "[64:ff9b::7f00:1]", "0.0.0.0", "[fd00:ec2::254]"])
async def test_internal_literals_in_every_form_are_refused(session_with: Any, connects: list[Any],
                                                           address: str) -> None:
    assert await refused_where(session_with(("none",)), f"http://{address}/latest/meta-data/")
    assert connects == []


async def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connect(
        session_with: Any, canary: Canary, connects: list[Any]) -> None:
    resolver = ScriptedResolver({"rebind.example": [PUBLIC, "127.0.0.1"]})
    session = session_with(("none",), resolver)
    guard: AddressGuard = session_with.guard
    await guard.check("rebind.example", canary.port)  # what a check of the name alone sees: public
    assert await refused_where(session, f"http://rebind.example:{canary.port}/") == f"rebind.example:{canary.port}"
    assert resolver.asked == ["rebind.example", "rebind.example"]  # checked, then resolved again to connect
    assert canary.connections() == 0 and connects == []


async def test_a_name_with_one_internal_address_among_public_ones_is_refused(
        session_with: Any, canary: Canary, connects: list[Any]) -> None:
    class Mixed(ScriptedResolver):
        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
            return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0,
                                  flags=socket.AI_NUMERICHOST) for a in (PUBLIC, "127.0.0.1")]

    session = session_with(("none",), Mixed({}))
    assert await refused_where(session, f"http://mixed.example:{canary.port}/")
    assert canary.connections() == 0 and connects == []


async def test_a_trusted_name_is_reached_wherever_it_resolves(session_with: Any, canary: Canary,
                                                             connects: list[Any]) -> None:
    session = session_with(("registry.lan",), ScriptedResolver({"registry.lan": ["127.0.0.1"]}))
    with pytest.raises(aiohttp.ClientError):
        async with session.get(f"http://registry.lan:{canary.port}/"):
            pass
    assert canary.connections() >= 1  # aiohttp retries an idempotent request once after a hang-up


def test_no_module_but_wave_http_makes_a_client_session() -> None:
    """One session, so one policy: a second ``ClientSession`` or connector would connect unchecked."""
    root = Path(__file__).resolve().parents[1] / "wave"
    offenders = []
    for path in root.rglob("*.py"):
        if path == root / "http.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                if name in {"ClientSession", "TCPConnector"}:
                    offenders.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    assert offenders == []


async def test_the_platform_client_goes_through_the_guarded_session(session_with: Any, canary: Canary,
                                                                    connects: list[Any]) -> None:
    from wave.platform.client import DirectTransport, HttpCall, PlatformError

    transport = DirectTransport(session_with(("none",)), timeout=5)
    with pytest.raises(PlatformError) as caught:
        await transport.send(canary.url, HttpCall("GET", f"{canary.url}/user-info", auth="user-token"))
    assert caught.value.status == 400
    assert f"{canary.host} is an internal address; trust it with WAVE_TRUSTED_HOSTS" in caught.value.message
    assert canary.connections() == 0 and connects == []
