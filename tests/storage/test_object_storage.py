"""One behaviour suite for every object storage backend (local directory, S3 on a real moto server), plus
what only one backend can get wrong: S3 errors, key placement, atomic local writes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from wave.config import ConfigError, Settings, load_settings
from wave.errors import Unavailable
from wave.storage import ObjectStorage, open_storage
from wave.storage.local import LocalStorage
from wave.storage.s3 import S3Storage

from .s3server import REGION, S3Endpoint

BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside.log",
    "builds/../../x",
    "builds/./x",
    "builds//x",
    "a\\b",
    "..",
    "a/..",
    "a\x00b",
]


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "local":
        return load_settings(environ={}, state_dir=tmp_path)
    endpoint, bucket = request.getfixturevalue("moto_s3")
    return load_settings(
        environ={},
        state_dir=tmp_path,
        storage_url=f"s3://{bucket}/wave",
        s3_endpoint=endpoint,
        s3_region=REGION,
    )


@pytest.fixture
async def storage(settings: Settings) -> AsyncIterator[ObjectStorage]:
    store = open_storage(settings)
    yield store
    await store.close()


# --- the shared suite ---------------------------------------------------------------------------------


async def test_put_then_get_returns_the_same_bytes(storage: ObjectStorage) -> None:
    data = bytes(range(256)) * 100
    await storage.put("builds/abc_1.log", data, content_type="text/plain")
    assert await storage.get("builds/abc_1.log") == data


async def test_get_of_missing_key_is_none(storage: ObjectStorage) -> None:
    assert await storage.get("builds/never-written.log") is None


async def test_put_replaces_what_was_there(storage: ObjectStorage) -> None:
    await storage.put("blobs/x", b"a much longer first version")
    await storage.put("blobs/x", b"short")
    assert await storage.get("blobs/x") == b"short"


async def test_append_creates_the_key_then_grows_it(storage: ObjectStorage) -> None:
    await storage.append("builds/b_1.log", b"step 1\n")
    assert await storage.get("builds/b_1.log") == b"step 1\n"
    await storage.append("builds/b_1.log", b"step 2\n")
    await storage.append("builds/b_1.log", b"")
    assert await storage.get("builds/b_1.log") == b"step 1\nstep 2\n"


async def test_append_after_put_extends_the_put_value(storage: ObjectStorage) -> None:
    await storage.put("builds/c_1.log", b"header\n", content_type="text/plain")
    await storage.append("builds/c_1.log", b"line\n")
    assert await storage.get("builds/c_1.log") == b"header\nline\n"


async def test_concurrent_appends_lose_no_chunk(storage: ObjectStorage) -> None:
    chunks = [f"chunk {i}\n".encode() for i in range(12)]
    await asyncio.gather(*(storage.append("builds/d_1.log", chunk) for chunk in chunks))
    lines = (await storage.get("builds/d_1.log") or b"").splitlines(keepends=True)
    assert sorted(lines) == sorted(chunks)


async def test_appends_from_two_replicas_lose_no_chunk(settings: Settings) -> None:
    """Two replicas on one storage location each append; neither overwrites the other's lines."""
    replica_a, replica_b = open_storage(settings), open_storage(settings)
    try:
        chunks_a = [f"a{i}\n".encode() for i in range(8)]
        chunks_b = [f"b{i}\n".encode() for i in range(8)]
        await asyncio.gather(
            *(replica_a.append("builds/e_1.log", c) for c in chunks_a),
            *(replica_b.append("builds/e_1.log", c) for c in chunks_b),
        )
        lines = (await replica_b.get("builds/e_1.log") or b"").splitlines(keepends=True)
        assert sorted(lines) == sorted(chunks_a + chunks_b)
    finally:
        await replica_a.close()
        await replica_b.close()


async def test_delete_removes_the_key_and_tolerates_a_missing_one(storage: ObjectStorage) -> None:
    await storage.put("builds/f_1.log", b"x")
    await storage.delete("builds/f_1.log")
    assert await storage.get("builds/f_1.log") is None
    assert not await storage.exists("builds/f_1.log")
    await storage.delete("builds/f_1.log")
    await storage.delete("no/such/dir/key")


async def test_exists_follows_puts_and_deletes(storage: ObjectStorage) -> None:
    assert not await storage.exists("builds/g_1.log")
    await storage.put("builds/g_1.log", b"")
    assert await storage.exists("builds/g_1.log")
    assert await storage.get("builds/g_1.log") == b""
    assert not await storage.exists("builds")  # a "directory" is not an object


async def test_keys_are_independent(storage: ObjectStorage) -> None:
    await storage.put("builds/h.log", b"log")
    await storage.put("builds/h.log.bak", b"bak")
    await storage.put("other/h.log", b"other")
    assert [await storage.get(k) for k in ("builds/h.log", "builds/h.log.bak", "other/h.log")] == [
        b"log",
        b"bak",
        b"other",
    ]


async def test_ping_succeeds_on_a_usable_storage(storage: ObjectStorage) -> None:
    await storage.ping()


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_that_could_escape_the_root_are_refused(storage: ObjectStorage, key: str) -> None:
    calls = [
        lambda: storage.put(key, b"x"),
        lambda: storage.get(key),
        lambda: storage.append(key, b"x"),
        lambda: storage.delete(key),
        lambda: storage.exists(key),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            await call()


async def test_dots_inside_a_name_are_fine(storage: ObjectStorage) -> None:
    await storage.put("builds/a..b.log", b"ok")
    assert await storage.get("builds/a..b.log") == b"ok"


# --- choosing a backend -------------------------------------------------------------------------------


def test_default_location_is_a_directory_under_the_state_dir(tmp_path: Path) -> None:
    storage = open_storage(load_settings(environ={}, state_dir=tmp_path))
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path / "storage"


def test_file_url_and_plain_path_select_local_storage(tmp_path: Path) -> None:
    by_url = open_storage(load_settings(environ={}, storage_url=f"file://{tmp_path}/logs"))
    by_path = open_storage(load_settings(environ={}, storage_url=str(tmp_path / "logs")))
    assert isinstance(by_url, LocalStorage) and isinstance(by_path, LocalStorage)
    assert by_url.root == by_path.root == tmp_path / "logs"


def test_s3_url_selects_s3_with_bucket_prefix_endpoint_and_region() -> None:
    settings = load_settings(
        environ={
            "WAVE_STORAGE_URL": "s3://my-bucket/wave/logs/",
            "WAVE_S3_ENDPOINT": "http://127.0.0.1:9",
            "WAVE_S3_REGION": "eu-west-1",
        }
    )
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.endpoint_url, storage.region) == (
        "my-bucket",
        "wave/logs",
        "http://127.0.0.1:9",
        "eu-west-1",
    )


@pytest.mark.parametrize("url", ["gs://bucket/x", "file://otherhost/x"])
def test_unsupported_storage_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_storage(load_settings(environ={}, storage_url=url))


# --- local only ---------------------------------------------------------------------------------------


async def test_local_put_leaves_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    for i in range(3):
        await storage.put("builds/x.log", f"v{i}".encode())
    assert sorted(p.name for p in (tmp_path / "root" / "builds").iterdir()) == ["x.log"]
    assert (tmp_path / "root" / "builds" / "x.log").read_bytes() == b"v2"


async def test_local_storage_that_cannot_be_written_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    storage = LocalStorage(blocker / "root")  # a path below a regular file can never be a directory
    with pytest.raises(Unavailable, match="object storage directory"):
        await storage.put("builds/x.log", b"x")
    with pytest.raises(Unavailable):
        await storage.ping()


# --- S3 only ------------------------------------------------------------------------------------------


async def test_s3_objects_live_under_the_configured_prefix(moto_s3: S3Endpoint) -> None:
    storage = S3Storage(moto_s3.bucket, "team/wave", endpoint_url=moto_s3.endpoint_url, region=REGION)
    try:
        await storage.put("builds/p_1.log", b"x", content_type="text/plain")
    finally:
        await storage.close()
    client = boto3.session.Session().client("s3", endpoint_url=moto_s3.endpoint_url, region_name=REGION)
    try:
        head = client.head_object(Bucket=moto_s3.bucket, Key="team/wave/builds/p_1.log")
    finally:
        client.close()
    assert head["ContentType"] == "text/plain"


async def test_s3_missing_bucket_is_unavailable_naming_the_bucket(moto_s3: S3Endpoint) -> None:
    storage = S3Storage("wave-no-such-bucket", endpoint_url=moto_s3.endpoint_url, region=REGION)
    try:
        calls = [
            storage.ping,
            lambda: storage.put("k", b"x"),
            lambda: storage.get("k"),
            lambda: storage.append("k", b"x"),
            lambda: storage.delete("k"),
            lambda: storage.exists("k"),
        ]
        for call in calls:
            with pytest.raises(Unavailable, match="'wave-no-such-bucket' does not exist") as info:
                await call()
            assert info.value.status == 503
    finally:
        await storage.close()


@pytest.mark.usefixtures("aws_test_env")
async def test_s3_unreachable_endpoint_is_unavailable_quickly(unused_tcp_port: int) -> None:
    storage = S3Storage(
        "wave-logs", endpoint_url=f"http://127.0.0.1:{unused_tcp_port}", region=REGION, connect_timeout=1
    )
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable, match=r"'wave-logs' cannot be reached at http://127\.0\.0\.1"):
            await storage.get("builds/x.log")
    finally:
        await storage.close()
    assert time.monotonic() - started < 15


async def test_s3_errors_never_reveal_credentials(
    moto_s3: S3Endpoint, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wave-secret-do-not-print-0123456789"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    storage = S3Storage("wave-no-such-bucket", endpoint_url=moto_s3.endpoint_url, region=REGION)
    caplog.set_level(logging.DEBUG, logger="wave")
    try:
        with pytest.raises(Unavailable) as info:
            await storage.put("k", b"x")
    finally:
        await storage.close()
    assert secret not in info.value.message
    assert "wave-test-key" not in info.value.message
    assert secret not in caplog.text


def test_s3_access_denied_is_unavailable_naming_the_bucket_and_what_to_check() -> None:
    storage = S3Storage("wave-logs")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
    error = storage._unavailable("write 'k'", denied)
    assert error.status == 503
    assert "'wave-logs'" in error.message and "denied" in error.message and "credentials" in error.message
