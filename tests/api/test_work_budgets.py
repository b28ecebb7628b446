"""The work one container request may cost: identical inline layers verified once, a cap on layers and on the
bytes all inline layers inflate to, named in the refusal. Work is measured in bytes inflated, not wall time."""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
import types
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

import wave.oci.layers
from tests.support.scripted import ScriptedRegistry

MiB = 1 << 20


class InflateCounter:
    """Counts every byte wave's layer verification inflates (all threads)."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def decompressobj(self, *args: Any) -> Any:
        real = zlib.decompressobj(*args)
        counter = self

        class Counting:
            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                out = real.decompress(data, max_length)
                with counter._lock:
                    counter.total += len(out)
                return out

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        return Counting()


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> InflateCounter:
    counter = InflateCounter()
    fake = types.SimpleNamespace(decompressobj=counter.decompressobj, error=zlib.error, MAX_WBITS=zlib.MAX_WBITS)
    monkeypatch.setattr(wave.oci.layers, "zlib", fake)
    return counter


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedRegistry]:
    upstream = ScriptedRegistry().start()
    yield upstream
    upstream.stop()


def bomb(size: int, salt: bytes = b"") -> dict[str, object]:
    """A valid layer whose few KiB of gzip inflate to ``size`` bytes."""
    tar = salt + bytes(size - len(salt))
    packed = gzip.compress(tar, 9)
    return {"location": "data:" + base64.b64encode(packed).decode(),
            "gzipDigest": "sha256:" + hashlib.sha256(packed).hexdigest(), "gzipSize": len(packed),
            "tarDigest": "sha256:" + hashlib.sha256(tar).hexdigest()}


def test_identical_bombs_are_inflated_once(wave_factory: Any, scripted: ScriptedRegistry,
                                           inflated: InflateCounter) -> None:
    wave = wave_factory(max_request_uncompressed=16 * MiB)
    layer = bomb(4 * MiB)
    answer = wave.submit({"containerImage": scripted.ref(), "containerConfig": {"layers": [layer] * 90}})
    assert "containerToken" in answer
    # 90 listed, one verified (a small layer is tried on the loop up to 256 KiB inflated, then on the pool)
    assert 4 * MiB <= inflated.total <= 4 * MiB + 256 * 1024 + 1


def test_distinct_bombs_stop_at_the_request_budget_named_in_human_units(wave_factory: Any, scripted: ScriptedRegistry,
                                                                        inflated: InflateCounter) -> None:
    wave = wave_factory(max_request_uncompressed=8 * MiB)
    layers = [bomb(3 * MiB, salt=bytes([i + 1])) for i in range(20)]
    response = wave.request("POST", "/v1alpha2/container",
                            {"containerImage": scripted.ref(), "containerConfig": {"layers": layers}})
    assert response.status == 400
    message = str(response.json())
    assert "more than 8 MiB" in message and "layers[2]" in message
    assert inflated.total <= 8 * MiB + 1 + 3 * (256 * 1024 + 1)  # the budget, and each layer tried on the loop


def test_one_bomb_stops_at_the_layer_limit(wave_factory: Any, scripted: ScriptedRegistry,
                                           inflated: InflateCounter) -> None:
    wave = wave_factory(max_inline_layer_size=MiB, max_request_uncompressed=1 << 30)
    response = wave.request("POST", "/v1alpha2/container",
                            {"containerImage": scripted.ref(), "containerConfig": {"layers": [bomb(200 * MiB)]}})
    assert response.status == 400 and "more than 64 MiB" in str(response.json())
    assert inflated.total <= 64 * MiB + 1


def test_too_many_layers_are_refused_before_any_work(wave_factory: Any, scripted: ScriptedRegistry,
                                                     inflated: InflateCounter) -> None:
    wave = wave_factory(max_request_layers=3)
    layers = [bomb(MiB, salt=bytes([i + 1])) for i in range(4)]
    response = wave.request("POST", "/v1alpha2/container",
                            {"containerImage": scripted.ref(), "containerConfig": {"layers": layers}})
    assert response.status == 400 and "at most 3" in str(response.json())
    assert inflated.total == 0
