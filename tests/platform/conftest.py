"""A fake Seqera Platform, a wave allowed to pair with it, and users whose credentials open a private
registry (the basic-auth one, whose password wave itself is not given)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.platform import FakePlatform, FakeUser, Pairing
from tests.support.registry import Registry
from tests.support.wave import WaveServer

WORKSPACE = 123


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    fake = FakePlatform().start()
    yield fake
    fake.stop()


@dataclass
class PairedWave:
    wave: WaveServer
    platform: FakePlatform
    pairing: Pairing
    registry: Registry
    alice: FakeUser  # has the registry's credentials in workspace WORKSPACE
    bob: FakeUser  # has none

    def body(self, user: FakeUser | None, image: str = "library/busybox:latest", **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"containerImage": self.registry.ref(image), **extra}
        if user is not None:
            body.update(towerAccessToken=user.access_token, towerRefreshToken=user.refresh_token,
                        towerEndpoint=self.platform.endpoint, towerWorkspaceId=WORKSPACE)
        return body


@pytest.fixture
def paired(wave_factory: Any, platform: FakePlatform, basic_registry: Registry) -> PairedWave:
    wave = wave_factory(platform_endpoints=(platform.endpoint,))
    pairing = platform.pair(wave.url)
    alice = platform.add_user("alice", "alice@example.org")
    platform.add_credentials(alice, basic_registry.host, REG_USER, REG_PASSWORD, workspace=WORKSPACE, name="lab")
    bob = platform.add_user("bob", "bob@other.org")
    return PairedWave(wave, platform, pairing, basic_registry, alice, bob)
