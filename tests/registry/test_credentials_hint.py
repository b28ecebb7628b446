"""A registry that refuses anonymous access: the 400 names the setting, its key for this registry and the
format, so the user knows what to configure; with credentials configured the hint is not given."""

from __future__ import annotations

from typing import Any

from tests.support.fixtures import REG_PASSWORD, REG_USER
from tests.support.registry import Registry


def test_the_refusal_names_the_setting_and_its_format(basic_registry: Registry, wave_factory: Any) -> None:
    wave = wave_factory()
    response = wave.request("POST", "/v1alpha2/container",
                            {"containerImage": basic_registry.ref("library/busybox:latest")})
    assert response.status == 400
    message = response.json()["message"]
    assert "anonymously" in message
    assert f"WAVE_REGISTRY_CREDENTIALS={basic_registry.host}=USER:PASSWORD" in message
    assert "host=user:password" in message


def test_bearer_refusal_names_the_setting(bearer_registry: Registry, wave_factory: Any) -> None:
    wave = wave_factory()
    response = wave.request("POST", "/v1alpha2/container",
                            {"containerImage": bearer_registry.ref("private/busybox:latest")})
    assert response.status == 400
    assert f"WAVE_REGISTRY_CREDENTIALS={bearer_registry.host}=USER:PASSWORD" in response.json()["message"]


def test_no_hint_when_credentials_are_configured(basic_registry: Registry, wave_factory: Any) -> None:
    wave = wave_factory(registry_credentials={basic_registry.host: (REG_USER, "wrong-password")})
    response = wave.request("POST", "/v1alpha2/container",
                            {"containerImage": basic_registry.ref("library/busybox:latest")})
    assert response.status == 400
    message = response.json()["message"]
    assert "with the configured credentials" in message and "WAVE_REGISTRY_CREDENTIALS=" not in message
    ok = wave_factory(registry_credentials={basic_registry.host: (REG_USER, REG_PASSWORD)})
    assert ok.request("POST", "/v1alpha2/container",
                      {"containerImage": basic_registry.ref("library/busybox:latest")}).status == 200
