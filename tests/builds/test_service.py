"""BuildService behaviour with a scripted launcher and the real embedded store and local storage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any

import pytest
from aiohttp import web

from tests.builds.conftest import make_request
from tests.builds.fakes import Registry, ScriptedLauncher
from wave.builds import service as service_module
from wave.builds.definition import define_build
from wave.builds.gate import BuildGate
from wave.builds.launchers.base import LaunchResult
from wave.builds.records import BuildRecord, BuildRecords
from wave.builds.service import BuildService, BuildTicket
from wave.config import Settings
from wave.errors import BadRequest, ManifestUnknown, NotFound
from wave.oci.models import ContainerConfig, Layer
from wave.oci.platform import DEFAULT_PLATFORM
from wave.oci.reference import parse_reference
from wave.storage.local import LocalStorage
from wave.store.embedded import EmbeddedStore
from wave.tokens import ContainerRequest

DOCKERFILE = "FROM alpine:3.19\nRUN echo hi\n"


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def launcher(registry: Registry) -> ScriptedLauncher:
    return ScriptedLauncher(existing=registry.images)


@pytest.fixture
async def make_service(settings: Settings, store: EmbeddedStore, storage: LocalStorage,
                       registry: Registry) -> AsyncIterator[Callable[..., BuildService]]:
    services: list[BuildService] = []

    def make(launcher: Any, **kw: Any) -> BuildService:
        svc = BuildService(kw.get("settings", settings), kw.get("store", store), storage, launcher, registry.exists)
        services.append(svc)
        return svc

    yield make
    for svc in services:
        await svc.close()


async def test_identical_concurrent_submits_share_one_build(make_service: Any, launcher: ScriptedLauncher) -> None:
    builds = make_service(launcher)
    tickets = await asyncio.gather(*(builds.submit(make_request(container_file=DOCKERFILE)) for _ in range(10)))
    assert len({t.build_id for t in tickets}) == 1
    assert not any(t.cached for t in tickets)
    build_id = tickets[0].build_id
    assert build_id is not None and build_id.endswith("_1")
    await launcher.started.wait()
    status = await builds.status(build_id)
    assert status is not None and status.status == "PENDING" and status.succeeded is None
    launcher.release.set()
    done = await builds.wait(build_id, timeout=10)
    assert (done.status, done.succeeded) == ("COMPLETED", True)
    assert done.start_time.tzinfo == UTC and done.duration is not None and done.duration >= 0
    assert done.to_json()["startTime"].endswith("Z")
    assert len(launcher.jobs) == 1


async def test_second_submit_after_success_is_cached(make_service: Any, launcher: ScriptedLauncher,
                                                     registry: Registry) -> None:
    builds = make_service(launcher)
    launcher.release.set()
    first = await builds.submit(make_request(container_file=DOCKERFILE))
    assert first.build_id is not None
    await builds.wait(first.build_id, timeout=10)
    again = await builds.submit(make_request(container_file=DOCKERFILE))
    assert again.cached and again.build_id == first.build_id and again.target_image == first.target_image
    assert registry.asked[-1] == first.target_image
    assert len(launcher.jobs) == 1


async def test_failed_build_reports_reason_and_log(make_service: Any, launcher: ScriptedLauncher) -> None:
    launcher.result = LaunchResult(False, "buildah build failed with exit status 1")
    launcher.release.set()
    builds = make_service(launcher)
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=10)
    assert (status.status, status.succeeded, status.reason) == (
        "COMPLETED", False, f"buildah build failed with exit status 1; log: /v1alpha1/builds/{ticket.build_id}/logs")
    log = await builds.logs(ticket.build_id)
    assert log is not None and b"error: something broke" in log and b"wave: build failed" in log
    assert "error: something broke" in await builds.log_tail(ticket.build_id, 2)
    retry = await builds.submit(make_request(container_file=DOCKERFILE))
    assert retry.build_id == ticket.build_id.replace("_1", "_2") and not retry.cached


async def test_launcher_crash_marks_the_build_failed(make_service: Any, launcher: ScriptedLauncher) -> None:
    launcher.error = RuntimeError("kaboom")
    launcher.release.set()
    builds = make_service(launcher)
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=10)
    assert status.succeeded is False and status.reason is not None and "kaboom" in status.reason


async def test_launcher_ignoring_its_timeout_is_stopped(make_service: Any, settings_factory: Any,
                                                        launcher: ScriptedLauncher,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "LAUNCH_GRACE", 0.0)
    launcher.hang = True
    builds = make_service(launcher, settings=settings_factory(build_timeout=0.3))
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=10)
    assert status.succeeded is False and "did not finish within" in (status.reason or "")
    assert launcher.cancelled == 1


async def test_wait_returns_pending_at_its_timeout_and_unknown_is_not_found(make_service: Any,
                                                                            launcher: ScriptedLauncher) -> None:
    builds = make_service(launcher)
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    assert (await builds.wait(ticket.build_id, timeout=0.05)).status == "PENDING"
    with pytest.raises(NotFound):
        await builds.wait("0000000000000000_1", timeout=0.1)
    assert await builds.status("0000000000000000_1") is None
    assert await builds.logs("0000000000000000_1") is None
    launcher.release.set()


async def test_a_build_of_another_replica_is_shared_and_awaited(make_service: Any, launcher: ScriptedLauncher) -> None:
    replica_a = make_service(launcher)
    replica_b = make_service(ScriptedLauncher())
    ticket_a = await replica_a.submit(make_request(container_file=DOCKERFILE))
    ticket_b = await replica_b.submit(make_request(container_file=DOCKERFILE))
    assert ticket_a.build_id == ticket_b.build_id and not ticket_b.cached
    assert ticket_b.build_id is not None
    waiter = asyncio.create_task(replica_b.wait(ticket_b.build_id, timeout=10))
    await launcher.started.wait()
    assert not waiter.done()
    launcher.release.set()
    status = await waiter
    assert status.succeeded is True


async def test_build_of_a_dead_replica_is_failed_and_rebuilt(make_service: Any, launcher: ScriptedLauncher,
                                                             store: EmbeddedStore) -> None:
    builds = make_service(launcher)
    request = make_request(container_file=DOCKERFILE)
    from wave.builds.definition import define_build

    target = define_build(request, builds._settings).target_image
    records = BuildRecords(store)
    dead = BuildRecord(id="feedfacefeedface_7", target_image=target, status="PENDING", start_time=1000.0,
                       deadline=9e12, heartbeat=1000.0)
    await records.put(dead)
    assert await records.claim(target, dead.id, ttl=3600)
    status = await builds.status(dead.id)
    assert status is not None and status.status == "COMPLETED" and status.succeeded is False
    assert "stopped" in (status.reason or "")
    ticket = await builds.submit(request)
    assert ticket.build_id != dead.id and not ticket.cached
    launcher.release.set()


async def test_close_fails_running_builds(make_service: Any, launcher: ScriptedLauncher) -> None:
    builds = make_service(launcher)
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    await launcher.started.wait()
    await builds.close()
    status = await builds.status(ticket.build_id)
    assert status is not None and status.succeeded is False and "wave stopped" in (status.reason or "")
    assert launcher.cancelled == 1


async def test_no_builder_is_a_bad_request_but_an_existing_image_is_cached(
        make_service: Any, launcher: ScriptedLauncher, registry: Registry) -> None:
    launcher.why_not = "container builds need buildah, which is not installed"
    builds = make_service(launcher)
    request = make_request(container_file=DOCKERFILE)
    with pytest.raises(BadRequest, match="buildah"):
        await builds.submit(request)
    from wave.builds.definition import define_build

    registry.images.add(define_build(request, builds._settings).target_image)
    ticket = await builds.submit(request)
    assert ticket.cached and ticket.build_id is None


class Events:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def build_launched(self, build_id: str, user_email: str | None, client_ip: str | None) -> None:
        self.calls.append(("launched", build_id, user_email, client_ip))

    async def build_finished(self, build_id: str, user_email: str | None, client_ip: str | None,
                             succeeded: bool) -> None:
        self.calls.append(("finished", build_id, user_email, client_ip, succeeded))


async def test_usage_hooks_count_one_launch_and_its_outcome(settings: Settings, store: EmbeddedStore,
                                                            storage: LocalStorage, registry: Registry,
                                                            launcher: ScriptedLauncher) -> None:
    events = Events()
    builds = BuildService(settings, store, storage, launcher, registry.exists, events=events)
    request = make_request(container_file=DOCKERFILE, user_email="ana@example.org", client_ip="10.1.2.3")
    tickets = await asyncio.gather(*(builds.submit(request) for _ in range(5)))
    assert [t.launched for t in tickets].count(True) == 1
    build_id = tickets[0].build_id
    assert build_id is not None
    launcher.release.set()
    await builds.wait(build_id, timeout=10)
    await builds.close()
    assert events.calls == [("launched", build_id, "ana@example.org", "10.1.2.3"),
                            ("finished", build_id, "ana@example.org", "10.1.2.3", True)]


async def test_sif_on_the_local_builder_is_a_bad_request(settings: Settings, store: EmbeddedStore,
                                                         storage: LocalStorage, registry: Registry) -> None:
    from tests.builds.conftest import Packages
    from wave.builds.launchers.local import LocalLauncher

    builds = BuildService(settings, store, storage, LocalLauncher(settings), registry.exists)
    request = make_request(format="sif", freeze=True, packages=Packages("CONDA", entries=("salmon",)))
    with pytest.raises(BadRequest, match="singularity"):
        await builds.submit(request)
    await builds.close()


async def _take_over(store: EmbeddedStore, target: str, build_id: str) -> None:
    """Another replica's doing: the old claim of ``target`` is gone and a live build ``build_id`` holds it."""
    records = BuildRecords(store)
    await store.delete(f"build:target:{target}")
    start = time.time()
    await records.put(BuildRecord(id=build_id, target_image=target, status="PENDING", start_time=start,
                                  deadline=start + 3600, heartbeat=start))
    assert await records.claim(target, build_id, ttl=3600)


async def test_clearing_a_dead_claim_never_removes_a_newer_one(make_service: Any, launcher: ScriptedLauncher,
                                                              store: EmbeddedStore,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    builds = make_service(launcher)
    request = make_request(container_file=DOCKERFILE)
    target = builds.plan(request).target_image
    records = BuildRecords(store)
    dead = BuildRecord(id="feedfacefeedface_7", target_image=target, status="PENDING", start_time=1000.0,
                       deadline=9e12, heartbeat=1000.0)
    await records.put(dead)
    assert await records.claim(target, dead.id, ttl=3600)
    fresh = builds._fresh

    async def racing_fresh(build_id: str) -> BuildRecord | None:
        record = await fresh(build_id)
        if build_id == dead.id:  # between reading the dead claimant and clearing its claim
            await _take_over(store, target, "beefbeefbeefbeef_8")
        return record

    monkeypatch.setattr(builds, "_fresh", racing_fresh)
    ticket = await builds.submit(request)
    assert ticket.build_id == "beefbeefbeefbeef_8" and not ticket.launched
    assert await records.claimant(target) == "beefbeefbeefbeef_8"
    assert launcher.jobs == []


async def test_a_build_past_its_claim_leaves_the_next_claim_alone(make_service: Any, launcher: ScriptedLauncher,
                                                                  store: EmbeddedStore) -> None:
    builds = make_service(launcher)
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    await launcher.started.wait()
    await _take_over(store, ticket.target_image, "beefbeefbeefbeef_9")  # our claim expired; another took it
    launcher.release.set()
    assert (await builds.wait(ticket.build_id, timeout=10)).succeeded
    assert await BuildRecords(store).claimant(ticket.target_image) == "beefbeefbeefbeef_9"


async def test_a_finished_build_releases_its_own_claim(make_service: Any, launcher: ScriptedLauncher,
                                                       store: EmbeddedStore) -> None:
    builds = make_service(launcher)
    launcher.release.set()
    ticket = await builds.submit(make_request(container_file=DOCKERFILE))
    assert ticket.build_id is not None
    await builds.wait(ticket.build_id, timeout=10)
    assert await BuildRecords(store).claimant(ticket.target_image) is None


async def test_plan_answers_like_a_new_build_without_side_effects(make_service: Any, launcher: ScriptedLauncher,
                                                                  registry: Registry, store: EmbeddedStore) -> None:
    builds = make_service(launcher)
    request = make_request(freeze=True, container_image="alpine:3.19", format="docker",
                           container_config=ContainerConfig(env=("A=1",)))
    plan = builds.plan(request)
    assert plan == BuildTicket(None, plan.target_image, False, True, "docker", launched=False)
    assert plan.target_image.startswith("registry.example.com/wave/builds:")
    assert registry.asked == [] and launcher.jobs == []
    assert await BuildRecords(store).claimant(plan.target_image) is None
    assert await store.get(f"build:count:{define_build(request, builds._settings).container_id}") is None
    launcher.release.set()
    ticket = await builds.submit(request)
    assert ticket.target_image == plan.target_image and ticket.build_id is not None
    assert ticket.build_id.endswith("_1")  # plan counted nothing
    with pytest.raises(BadRequest, match="nothing to build"):
        builds.plan(make_request(container_image="alpine:3.19"))


async def test_a_freeze_layer_redirected_to_an_internal_host_fails_the_build(
        make_service: Any, launcher: ScriptedLauncher, settings_factory: Any, aiohttp_server: Any) -> None:
    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/layer.tar.gz")

    app = web.Application()
    app.router.add_get("/layer.tar.gz", redirect)
    server = await aiohttp_server(app, host="127.0.0.1")
    layer = Layer(f"http://localhost:{server.port}/layer.tar.gz", "sha256:" + "ab" * 32, 10, "sha256:" + "cd" * 32)
    builds = make_service(launcher, settings=settings_factory(layer_allowed_hosts=("localhost",)))
    ticket = await builds.submit(make_request(freeze=True, container_image="alpine:3.19",
                                              container_config=ContainerConfig(layers=(layer,))))
    assert ticket.build_id is not None
    status = await builds.wait(ticket.build_id, timeout=10)
    assert status.succeeded is False and "host 127.0.0.1:9 is an internal address" in (status.reason or "")
    assert launcher.jobs == []


async def test_gate_on_an_unknown_build_is_manifest_unknown(make_service: Any, launcher: ScriptedLauncher) -> None:
    gate = BuildGate(make_service(launcher), timeout=1)
    request = ContainerRequest(token="t", image=parse_reference("docker.io/library/alpine:3.19"),
                               config=ContainerConfig(), platform=DEFAULT_PLATFORM, created=0.0, expires=9e12,
                               build_id="0000000000000000_1")
    with pytest.raises(ManifestUnknown, match=r"build 0000000000000000_1 of .*alpine:3\.19 is unknown") as caught:
        await gate(request)
    assert caught.value.code == "MANIFEST_UNKNOWN" and caught.value.status == 404
