"""Limits are stated in the units they are configured in: a 413 names its limit and its setting."""

from __future__ import annotations

from typing import Any


def test_a_body_over_the_request_limit_is_a_413_naming_the_limit(wave_factory: Any) -> None:
    wave = wave_factory(max_request_size=1 << 20)
    body = b'{"containerImage": "' + b"a" * (2 << 20) + b'"}'
    response = wave.request("POST", "/v1alpha2/container", body, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert response.json() == {"message": "the request body is larger than the limit of 1 MiB (WAVE_MAX_REQUEST_SIZE); "
                                          "put big layers at an http(s) URL instead of inline"}
