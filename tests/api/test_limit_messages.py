"""Limits are stated in the units they are configured in: a 413 names its limit and its setting."""

from __future__ import annotations

import base64
from typing import Any


def test_a_body_over_the_request_limit_is_a_413_naming_the_limit(wave_factory: Any) -> None:
    wave = wave_factory(max_request_size=1 << 20)
    body = b'{"containerImage": "' + b"a" * (2 << 20) + b'"}'
    response = wave.request("POST", "/v1alpha2/container", body, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert response.json() == {"message": "the request body is larger than the limit of 1 MiB (WAVE_MAX_REQUEST_SIZE); "
                                          "put big layers at an http(s) URL instead of inline"}


def test_an_inline_layer_over_its_limit_names_the_limit_in_mib(wave_factory: Any) -> None:
    wave = wave_factory(max_inline_layer_size=1 << 20)
    layer = {"location": "data:" + "A" * (2 << 20), "gzipDigest": "sha256:" + "0" * 64, "gzipSize": 1,
             "tarDigest": "sha256:" + "0" * 64}
    response = wave.request("POST", "/v1alpha2/container",
                            {"containerImage": "127.0.0.1:1/a/b", "containerConfig": {"layers": [layer]}})
    assert response.status == 400
    assert response.json()["message"] == (
        "containerConfig.layers[0]: the inline layer is larger than the limit of 1 MiB "
        "(WAVE_MAX_INLINE_LAYER_SIZE); serve it from an http(s) URL")


def test_a_recipe_over_its_limit_names_the_limit_in_mib(wave_factory: Any) -> None:
    wave = wave_factory()
    big = base64.b64encode(b"RUN true\n" * (130 << 10)).decode()  # over 1 MiB decoded
    response = wave.request("POST", "/v1alpha2/container", {"containerFile": big})
    assert response.status == 400
    assert response.json()["message"] == "containerFile is larger than the limit of 1 MiB (before base64)"
