"""What wave made for a token stays servable for the token's whole life, whatever else shares or evicts it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.test_augmented_pulls import HELLO, augmented
from tests.support.clients import skopeo_copy
from tests.support.registry import Registry
from tests.support.wave import WaveServer
from wave import keys


def _name(answer: dict[str, Any]) -> str:
    return answer["targetImage"].split("/", 1)[1].rsplit(":", 1)[0]


def test_a_token_with_less_time_left_never_shortens_anothers_objects(wave_factory: Any, registry: Registry,
                                                                     tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = wave_factory(state_dir=state)
    body = augmented(registry, "library/busybox:latest")
    long_lived = first.submit(body)
    config = first.request("GET", f"/v2/{_name(long_lived)}/manifests/latest").json()["config"]["digest"]  # type: ignore[index]
    short = first.submit(body)  # the same request again: the same objects, shared
    tokens = first.app[keys.TOKENS]
    record = first.call(tokens.get(short["containerToken"]))
    assert record is not None
    first.call(tokens.save(replace(record, expires=time.time() + 1)))
    assert first.request("GET", f"/v2/{_name(short)}/manifests/latest").status == 200  # resolved with 1 s left
    deadline = time.monotonic() + 10
    while first.request("GET", f"/v2/{_name(short)}/manifests/latest").status != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    second = wave_factory(state_dir=state)  # another replica: nothing in its memory
    assert second.request("GET", f"/v2/{_name(long_lived)}/blobs/{config}").status == 200


@pytest.mark.parametrize("lost", ["objects", "objects and resolutions"])
def test_objects_lost_by_the_store_are_derived_again(wave_factory: Any, registry: Registry, tmp_path: Path,
                                                     lost: str) -> None:
    state = tmp_path / "state"
    first = wave_factory(state_dir=state)
    answer = first.submit(augmented(registry, "library/busybox:multi-oci"))
    skopeo_copy(answer["targetImage"], tmp_path / "before")
    index_digest = first.request("HEAD", f"/v2/{_name(answer)}/manifests/multi-oci").headers["docker-content-digest"]
    first.stop()
    pattern = "DELETE FROM kv WHERE key LIKE 'object/%'"
    if "resolutions" in lost:
        pattern += " OR key LIKE 'resolved/%'"
    with sqlite3.connect(state / "wave.db") as db:
        assert db.execute(pattern).rowcount > 0
    second = wave_factory(state_dir=state, port=first.settings.port, server_url=first.settings.server_url)
    by_digest = second.request("GET", f"/v2/{_name(answer)}/manifests/{index_digest}")
    assert by_digest.status == 200 and "sha256:" + hashlib.sha256(by_digest.body).hexdigest() == index_digest
    skopeo_copy(answer["targetImage"], tmp_path / "after")
    assert (tmp_path / "after" / "manifest.json").read_bytes() == (tmp_path / "before" / "manifest.json").read_bytes()


def test_inline_layers_live_beside_the_token_record_and_serve_ranges(wave: WaveServer, registry: Registry) -> None:
    answer = wave.submit(augmented(registry, "library/busybox:latest"))
    record = wave.call(wave.app[keys.TOKENS].get(answer["containerToken"]))
    assert record is not None and HELLO.gzip_bytes.hex()[:32] not in record.to_json().hex()
    assert len(record.to_json()) < 4096  # every pull reads the record: it holds no layer data
    path = f"/v2/{_name(answer)}/blobs/{HELLO.gzip_digest}"
    whole = wave.request("GET", path)
    assert whole.status == 200 and whole.body == HELLO.gzip_bytes
    part = wave.request("GET", path, headers={"Range": "bytes=4-"})
    assert part.status == 206 and part.body == HELLO.gzip_bytes[4:]
    assert part.headers["content-range"] == f"bytes 4-{len(HELLO.gzip_bytes) - 1}/{len(HELLO.gzip_bytes)}"
    assert wave.request("GET", path, headers={"Range": "bytes=999999-"}).status == 416
    config = json.loads(wave.request("GET", f"/v2/{_name(answer)}/manifests/latest").body)["config"]
    tail = wave.request("GET", f"/v2/{_name(answer)}/blobs/{config['digest']}", headers={"Range": "bytes=-10"})
    assert tail.status == 206 and len(tail.body) == 10
