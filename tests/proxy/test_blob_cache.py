"""The blob cache (WAVE_BLOB_CACHE): filled while the first client streams, one upstream fetch for concurrent
cold requests, sendfile with Range and HEAD, S3 redirects, isolation between repositories, eviction."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.storage.s3server import S3Endpoint
from tests.support.registry import http_request
from tests.support.wave import BackgroundApp, WaveServer, issue_plain_token
from wave import keys

BLOB = os.urandom(3 << 20) + b"tail"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class StubUpstream:
    """A registry that holds ``BLOB`` in the repositories listed in ``holders``; counts what it is asked, and
    can hold a GET after the first half of the blob until ``release`` is set (to see clients get bytes early).
    ``corrupt`` sends wrong bytes of the right length."""

    def __init__(self, holders: set[str], *, hold: bool = False, corrupt: bool = False) -> None:
        self.holders = holders
        self.counts: Counter[tuple[str, str]] = Counter()
        self.hold = hold
        self.corrupt = corrupt
        self.release = threading.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = BackgroundApp(app)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if "/blobs/" not in path:
            return web.Response(body=b"{}", content_type="application/json")
        repository = path.removeprefix("/v2/").partition("/blobs/")[0]
        self.counts[(request.method, repository)] += 1
        if repository not in self.holders or not path.endswith(DIGEST):
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        body = bytes(len(BLOB)) if self.corrupt else BLOB
        response = web.StreamResponse(headers={"Content-Length": str(len(body)), "Docker-Content-Digest": DIGEST,
                                               "Content-Type": "application/octet-stream"})
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        half = len(body) // 2
        await response.write(body[:half])
        if self.hold:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        await response.write(body[half:])
        await response.write_eof()
        return response

    def __enter__(self) -> StubUpstream:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.stop()



def _blob_path(wave: WaveServer, upstream: StubUpstream, repository: str) -> str:
    token = wave.call(issue_plain_token(wave, f"{upstream.host}/{repository}:latest"))
    return f"/v2/wt/{token}/{repository}/blobs/{DIGEST}"


def _metric(wave: WaveServer, line_start: str) -> float:
    text = wave.request("GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not in /metrics:\n{text}")


def test_first_pull_fills_the_directory_and_the_next_is_served_from_it(wave_factory: Any, tmp_path: Path,
                                                                       loop_kind: str) -> None:
    cache_dir = tmp_path / "blob-cache"
    with StubUpstream({"lab/app"}) as upstream:
        wave = wave_factory(blob_cache=str(cache_dir), upstream_retries=1)
        path = _blob_path(wave, upstream, "lab/app")
        first = wave.request("GET", path)
        assert first.status == 200 and first.body == BLOB
        wave.call(wave.app[keys.BLOB_CACHE].idle())  # committed just after the client has its last byte
        assert (cache_dir / "sha256" / DIGEST.split(":")[1]).read_bytes() == BLOB
        assert list((cache_dir / "spool").iterdir()) == []
        second = wave.request("GET", path)
        assert second.status == 200 and second.body == BLOB
        assert second.headers["docker-content-digest"] == DIGEST
        assert upstream.counts[("GET", "lab/app")] == 1  # the second came from the cache
        part = wave.request("GET", path, headers={"Range": "bytes=100-199"})
        assert part.status == 206 and part.body == BLOB[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(BLOB)}"
        tail = wave.request("GET", path, headers={"Range": "bytes=-10"})  # a resumed download's last bytes
        assert tail.status == 206 and tail.body == BLOB[-10:]
        rest = wave.request("GET", path, headers={"Range": f"bytes={len(BLOB) - 5}-"})
        assert rest.status == 206 and rest.body == BLOB[-5:]
        beyond = wave.request("GET", path, headers={"Range": f"bytes={len(BLOB)}-"})
        assert beyond.status == 416 and beyond.headers["content-range"] == f"bytes */{len(BLOB)}"
        head = wave.request("HEAD", path)
        assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) == len(BLOB)
        assert upstream.counts[("GET", "lab/app")] == 1
        assert _metric(wave, 'wave_blob_cache_requests_total{result="hit"}') == 6
        assert _metric(wave, 'wave_blob_cache_requests_total{result="miss"}') == 1
        assert _metric(wave, 'wave_blob_cache_bytes_total{result="filled"}') == len(BLOB)
        assert _metric(wave, "wave_blob_cache_upstream_fetches_total") == 1

        # a restart keeps the cache: a new wave on the same directory serves it without fetching it again
        again = wave_factory(blob_cache=str(cache_dir), upstream_retries=1)
        got = again.request("GET", _blob_path(again, upstream, "lab/app"))
        assert got.status == 200 and got.body == BLOB
        assert upstream.counts[("GET", "lab/app")] == 1
        assert upstream.counts[("HEAD", "lab/app")] >= 1  # the new token's repository was checked upstream


async def _stream_all(url: str, count: int, first_bytes: asyncio.Event | None = None) -> list[bytes]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=count, force_close=True),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = 0

        async def one() -> bytes:
            nonlocal started
            async with session.get(url) as response:
                assert response.status == 200
                chunks = [await response.content.readany()]
                started += 1
                if first_bytes is not None and started == count:
                    first_bytes.set()
                chunks.append(await response.content.read())
                return b"".join(chunks)

        return await asyncio.gather(*(one() for _ in range(count)))


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Servers started in the test run on this kind of loop (wave's WAVE_EVENT_LOOP choices)."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        monkeypatch.setattr(asyncio, "new_event_loop", uvloop.new_event_loop)
    return str(request.param)


def test_concurrent_cold_requests_make_one_fetch_and_all_start_before_the_blob_arrives(wave_factory: Any,
                                                                                      tmp_path: Path,
                                                                                      loop_kind: str) -> None:
    with StubUpstream({"lab/app"}, hold=True) as upstream:
        wave = wave_factory(blob_cache=str(tmp_path / "cache"), upstream_retries=1)
        assert type(wave._loop).__module__.startswith(loop_kind)
        url = wave.url + _blob_path(wave, upstream, "lab/app")

        async def run() -> list[bytes]:
            first_bytes = asyncio.Event()
            task = asyncio.ensure_future(_stream_all(url, 20, first_bytes))
            # every client has bytes while upstream still holds back the second half of the blob
            await asyncio.wait_for(first_bytes.wait(), 30)
            assert not task.done()
            upstream.release.set()
            return await task

        bodies = asyncio.run(run())
        assert all(body == BLOB for body in bodies)
        assert upstream.counts[("GET", "lab/app")] == 1


def test_a_wrong_digest_cuts_every_client_off_and_keeps_nothing(wave_factory: Any, tmp_path: Path,
                                                                 loop_kind: str) -> None:
    cache_dir = tmp_path / "cache"
    with StubUpstream({"lab/app"}, corrupt=True) as upstream:
        wave = wave_factory(blob_cache=str(cache_dir), upstream_retries=1)
        path = _blob_path(wave, upstream, "lab/app")
        conn = http.client.HTTPConnection("127.0.0.1", wave.settings.port, timeout=60)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            with pytest.raises(http.client.IncompleteRead) as short:
                response.read()
            assert len(short.value.partial) < len(BLOB)
        finally:
            conn.close()
        wave.call(wave.app[keys.BLOB_CACHE].idle())
        assert list((cache_dir / "sha256").iterdir()) == []
        assert list((cache_dir / "spool").iterdir()) == []
        assert _metric(wave, "wave_blob_cache_rejected_total") == 1


def test_a_cached_blob_goes_only_to_repositories_known_to_hold_it(wave_factory: Any, tmp_path: Path) -> None:
    with StubUpstream({"lab/app", "lab/other"}) as upstream:
        wave = wave_factory(blob_cache=str(tmp_path / "cache"), upstream_retries=1)
        assert wave.request("GET", _blob_path(wave, upstream, "lab/app")).body == BLOB  # cached now
        # a repository that does not hold the blob learns nothing from the cache: upstream's 404 stands
        denied = wave.request("GET", _blob_path(wave, upstream, "lab/private"))
        assert denied.status == 404 and BLOB[:16] not in denied.body
        assert wave.request("HEAD", _blob_path(wave, upstream, "lab/private")).status == 404
        # one that holds it (upstream confirms with a HEAD) is served from the cache, with no second GET
        other = wave.request("GET", _blob_path(wave, upstream, "lab/other"))
        assert other.status == 200 and other.body == BLOB
        assert upstream.counts[("HEAD", "lab/other")] == 1 and upstream.counts[("GET", "lab/other")] == 0


def test_least_recently_used_blobs_are_evicted_past_the_size_cap(wave_factory: Any, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    (cache_dir / "sha256").mkdir(parents=True)
    old = cache_dir / "sha256" / ("ab" * 32)
    old.write_bytes(b"x" * (2 << 20))  # left by an earlier run, used long ago
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    with StubUpstream({"lab/app"}) as upstream:
        wave = wave_factory(blob_cache=str(cache_dir), blob_cache_size=4 << 20, upstream_retries=1)
        assert wave.request("GET", _blob_path(wave, upstream, "lab/app")).body == BLOB
        wave.call(wave.app[keys.BLOB_CACHE].idle())
        assert not old.exists()
        assert (cache_dir / "sha256" / DIGEST.split(":")[1]).exists()
        assert _metric(wave, "wave_blob_cache_evictions_total") == 1


def test_s3_cache_redirects_to_a_signed_url(wave_factory: Any, moto_s3: S3Endpoint) -> None:
    with StubUpstream({"lab/app"}) as upstream:
        wave = wave_factory(blob_cache=f"s3://{moto_s3.bucket}/blobs", s3_endpoint=moto_s3.endpoint_url,
                            s3_region="us-east-1", upstream_retries=1)
        path = _blob_path(wave, upstream, "lab/app")
        first = wave.request("GET", path)  # streamed while it fills, uploaded once whole
        assert first.status == 200 and first.body == BLOB
        wave.call(wave.app[keys.BLOB_CACHE].idle())  # the upload ends after the client has its bytes
        second = wave.request("GET", path)
        assert second.status == 307
        location = second.headers["location"]
        assert location.startswith(moto_s3.endpoint_url) and "Signature" in location
        assert http_request("GET", location, timeout=30).body == BLOB
        head = wave.request("HEAD", path)
        assert head.status == 200 and int(head.headers["content-length"]) == len(BLOB)
        assert upstream.counts[("GET", "lab/app")] == 1
        # a repository that does not hold it gets no URL
        assert wave.request("GET", _blob_path(wave, upstream, "lab/private")).status == 404


@pytest.mark.parametrize("where", ["directory", "s3"])
def test_replicas_share_the_cache(wave_factory: Any, tmp_path: Path, where: str,
                                  request: pytest.FixtureRequest) -> None:
    """Two replicas on one directory (or bucket): what one filled, the other serves without fetching it."""
    if where == "s3":
        s3: S3Endpoint = request.getfixturevalue("moto_s3")
        settings = {"blob_cache": f"s3://{s3.bucket}/shared", "s3_endpoint": s3.endpoint_url, "s3_region": "us-east-1"}
    else:
        settings = {"blob_cache": str(tmp_path / "shared-cache")}
    with StubUpstream({"lab/app"}) as upstream:
        a = wave_factory(upstream_retries=1, **settings)
        b = wave_factory(upstream_retries=1, **settings)
        assert a.request("GET", _blob_path(a, upstream, "lab/app")).body == BLOB
        a.call(a.app[keys.BLOB_CACHE].idle())
        got = b.request("GET", _blob_path(b, upstream, "lab/app"))
        if where == "s3":
            assert got.status == 307 and http_request("GET", got.headers["location"], timeout=30).body == BLOB
        else:
            assert got.status == 200 and got.body == BLOB
        assert upstream.counts[("GET", "lab/app")] == 1


def test_processes_sharing_a_directory_fetch_a_blob_once(wave_factory: Any, tmp_path: Path) -> None:
    """A second process (here: a second wave on the same directory) follows the fill the first one runs,
    from its spool file, instead of fetching the blob again; both clients get their first bytes early."""
    settings = {"blob_cache": str(tmp_path / "shared-cache"), "upstream_retries": 1}
    with StubUpstream({"lab/app"}, hold=True) as upstream:
        a, b = wave_factory(**settings), wave_factory(**settings)
        urls = [a.url + _blob_path(a, upstream, "lab/app"), b.url + _blob_path(b, upstream, "lab/app")]

        async def run() -> list[bytes]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                async def one(url: str, started: asyncio.Event) -> bytes:
                    async with session.get(url) as response:
                        assert response.status == 200
                        first = await response.content.readany()
                        started.set()
                        return first + await response.content.read()

                first_started, second_started = asyncio.Event(), asyncio.Event()
                filling = asyncio.ensure_future(one(urls[0], first_started))
                await asyncio.wait_for(first_started.wait(), 30)
                following = asyncio.ensure_future(one(urls[1], second_started))
                await asyncio.wait_for(second_started.wait(), 30)  # while upstream still holds the second half
                upstream.release.set()
                return [await filling, await following]

        assert asyncio.run(run()) == [BLOB, BLOB]
        assert upstream.counts[("GET", "lab/app")] == 1
        assert upstream.counts[("HEAD", "lab/app")] == 1  # the follower learnt the size (and the repository)
        b.call(b.app[keys.BLOB_CACHE].idle())
        assert b.request("GET", _blob_path(b, upstream, "lab/app")).body == BLOB  # from the cache now
        assert upstream.counts[("GET", "lab/app")] == 1


def test_a_spool_file_left_by_a_dead_process_is_claimed_again(tmp_path: Path) -> None:
    from wave.storage.blobcache import claim_shared

    spool = tmp_path / "spool"
    path, fd = claim_shared(spool, DIGEST)
    assert fd is not None and path.exists()
    assert claim_shared(spool, DIGEST) == (path, None)  # held: a live filler
    os.close(fd)  # the filler dies without cleaning up: its lock goes with it
    again, fd2 = claim_shared(spool, DIGEST)
    assert again == path and fd2 is not None
    os.close(fd2)
