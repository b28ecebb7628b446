"""The build service: submit, coalesce, run in the background, report, wait.

State lives in the shared store (see :mod:`wave.builds.records`) so any replica answers status and waits
for any build; the running build itself is a task of the replica that won the claim. A build always ends
COMPLETED — succeeded, failed with the launcher's reason, timed out, crashed, or cancelled at shutdown — and
a build whose replica vanished is reported failed after its heartbeat stops or its deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from wave.builds.definition import BuildDefinition, define_build
from wave.builds.launchers.base import BuildJob, Launcher, LaunchResult
from wave.builds.launchers.registries import from_registries, referenced_registries, registry_host
from wave.builds.logs import BuildLog, log_key
from wave.builds.reach import check_build_reach
from wave.builds.records import (
    DEADLINE_GRACE,
    HEARTBEAT_INTERVAL,
    BuildRecord,
    BuildRecords,
    BuildStatus,
    now,
)
from wave.builds.workspace import LayerDownloadError, download_layers, remove_workspace, write_workspace
from wave.errors import BadRequest, NotFound, Unavailable
from wave.http import AddressGuard, create_client_session, policy_for
from wave.units import format_duration

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp

    from wave.config import Settings
    from wave.model import SubmitRequest
    from wave.storage.base import ObjectStorage
    from wave.store.base import KeyValueStore

log = logging.getLogger("wave.builds")

ImageExists = Callable[[str], Awaitable[bool]]
# The requester's own credentials for the registries a build talks to (looked up when the build is defined).
BuildCredentials = Callable[[set[str]], Awaitable[dict[str, tuple[str, str]]]]


def log_path(build_id: str) -> str:
    """Where the control API serves a build's log (a failure's reason points there)."""
    return f"/v1alpha1/builds/{build_id}/logs"


@dataclass(frozen=True)
class BuildOwner:
    """The Seqera Platform user a build is for. Their credentials serve its base images and pushes; a build
    whose base images only their credentials opened is theirs alone (``key`` goes into its id), so the same
    Dockerfile from anyone else never shares it or its image."""

    key: str  # endpoint, user and workspace, hashed
    user_name: str
    credentials: BuildCredentials
    image_exists: ImageExists | None = None  # checks the target with the user's credentials


LAUNCH_GRACE = 30.0  # beyond the timeout given to a launcher before the service gives up on it
MAX_POLL = 0.5  # seconds between store polls while waiting for a build of another replica
CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class BuildTicket:
    """The answer to a submit. ``build_id`` is None when the image was already there and wave never built
    it; else it names the build producing (or having produced) ``target_image``. ``launched`` is True only
    for the one request that started the build (what usage metrics count)."""

    build_id: str | None
    target_image: str
    cached: bool
    freeze: bool
    format: str
    launched: bool = False


class BuildEvents(Protocol):
    """Usage metrics hooks (``wave.metrics.UsageMetrics`` has them); failures there never fail a build."""

    async def build_launched(self, build_id: str, user_email: str | None, client_ip: str | None) -> None: ...

    async def build_finished(self, build_id: str, user_email: str | None, client_ip: str | None,
                             succeeded: bool) -> None: ...


@dataclass(frozen=True)
class _Requester:
    user_email: str | None
    client_ip: str | None


class BuildService:
    def __init__(self, settings: Settings, store: KeyValueStore, storage: ObjectStorage, launcher: Launcher,
                 image_exists: ImageExists, *, events: BuildEvents | None = None,
                 http: aiohttp.ClientSession | None = None, guard: AddressGuard | None = None) -> None:
        """``http`` and ``guard``: wave's guarded session and address guard (``wave.http``), for layer
        downloads and for checking where the builder will connect; without them (unit tests) a session is
        made for each build's downloads, and submitted builds are not checked."""
        self._settings = settings
        self._http = http
        self._guard = guard
        self._events = events
        self._records = BuildRecords(store)
        self._storage = storage
        self._launcher = launcher
        self._image_exists = image_exists
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._logs: dict[str, BuildLog] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._closing = False

    # --- submit ---------------------------------------------------------------------------------------

    def plan(self, request: SubmitRequest) -> BuildTicket:
        """What :meth:`submit` would answer for a new build of this request, without any side effect (for
        ``dryRun``): the definition is computed and checked (BadRequest as submit raises it), but the registry
        is not asked, nothing is claimed, counted or launched — so ``build_id`` is None and ``cached`` False."""
        definition = define_build(request, self._settings)
        return BuildTicket(None, definition.target_image, False, request.freeze, definition.format)

    async def submit(self, request: SubmitRequest, owner: BuildOwner | None = None) -> BuildTicket:
        """Return the build for this request: the existing image (cached), the build already producing it,
        or a new build started in the background. BadRequest for what the client must fix. ``owner``: the
        Seqera Platform user asking, whose own registry credentials the build uses."""
        if self._closing:
            raise Unavailable("wave is shutting down")
        definition = define_build(request, self._settings)
        if self._guard is not None:  # before anything is asked of a registry or remembered
            await check_build_reach(self._guard, definition)
        user_credentials = await self._user_credentials(request, definition, owner)
        if owner is not None and from_registries(definition.build_file) & set(user_credentials):
            definition = define_build(request, self._settings, owner=owner.key)
        target = definition.target_image
        image_exists = owner.image_exists if owner is not None and owner.image_exists else self._image_exists

        def ticket(build_id: str | None, cached: bool, launched: bool = False) -> BuildTicket:
            return BuildTicket(build_id, target, cached, request.freeze, definition.format, launched)

        running = await self._running_build(target)
        if running is not None:
            return ticket(running, False)
        if await image_exists(definition.image_reference):
            return ticket(await self._records.last_success(target), True)
        why_not = await self._launcher.unavailable(definition.format)
        if why_not:
            raise BadRequest(why_not)
        for _ in range(CLAIM_ATTEMPTS):
            record = await self._new_record(definition, request, owner)
            if await self._records.claim(target, record.id, self._settings.build_timeout + DEADLINE_GRACE):
                requester = _Requester(request.user_email, request.client_ip)
                self._start(definition, record, requester, user_credentials)
                await self._notify("build_launched", record.id, requester)
                return ticket(record.id, False, launched=True)
            await self._records.delete(record.id)
            running = await self._running_build(target)
            if running is not None:
                return ticket(running, False)
            last = await self._records.last_success(target)
            if last is not None and await image_exists(definition.image_reference):
                return ticket(last, True)
        raise Unavailable(f"could not start a build of {target}: the store is contended; retry")

    async def _user_credentials(self, request: SubmitRequest, definition: BuildDefinition,
                                owner: BuildOwner | None) -> dict[str, tuple[str, str]]:
        """The requester's credentials for the build's registries, except for wave's own build and cache
        repositories (wave's configured credentials push there) unless the request named them itself."""
        if owner is None:
            return {}
        hosts = referenced_registries(definition.build_file, definition.target_image)
        if definition.cache_repository:
            hosts |= {h for h in [registry_host(definition.cache_repository)] if h}
        service_hosts = {registry_host(r) for r in (self._settings.build_repo, self._settings.cache_repo) if r}
        service_hosts -= {registry_host(r) for r in (request.build_repository, request.cache_repository) if r}
        found = await owner.credentials(hosts)
        return {host: creds for host, creds in found.items() if host not in service_hosts}

    async def _new_record(self, definition: BuildDefinition, request: SubmitRequest,
                          owner: BuildOwner | None) -> BuildRecord:
        build_id = await self._records.next_id(definition.container_id)
        start = now()
        record = BuildRecord(
            id=build_id,
            target_image=definition.target_image,
            status="PENDING",
            start_time=start,
            deadline=start + self._settings.build_timeout + DEADLINE_GRACE,
            heartbeat=start,
            platform=definition.platform,
            format=definition.format,
            user_name=owner.user_name if owner is not None else None,
            user_email=request.user_email,
        )
        await self._records.put(record)
        return record

    async def _running_build(self, target: str) -> str | None:
        """The id of the live build holding ``target``; a finished or dead holder is cleared."""
        build_id = await self._records.claimant(target)
        if build_id is None:
            return None
        record = await self._fresh(build_id)
        if record is not None and record.pending:
            return build_id
        if build_id not in self._tasks:
            # only this holder's claim: another replica may have released it and claimed anew meanwhile
            await self._records.release(target, build_id)
        return None

    # --- running --------------------------------------------------------------------------------------

    async def _download(self, workdir: Path, definition: BuildDefinition) -> None:
        if not definition.downloads:
            return
        if self._http is not None:
            await download_layers(workdir / "context", definition.downloads, self._http)
            return
        guard = AddressGuard(policy_for(self._settings))
        async with create_client_session(self._settings, guard) as session:
            await download_layers(workdir / "context", definition.downloads, session)

    async def _notify(self, event: str, build_id: str, requester: _Requester, *args: bool) -> None:
        if self._events is None:
            return
        try:
            await getattr(self._events, event)(build_id, requester.user_email, requester.client_ip, *args)
        except Exception:
            log.exception("build %s: usage metrics hook %s failed", build_id, event)

    def _start(self, definition: BuildDefinition, record: BuildRecord, requester: _Requester,
               credentials: dict[str, tuple[str, str]] | None = None) -> None:
        self._done[record.id] = asyncio.Event()
        self._logs[record.id] = BuildLog(self._storage, record.id)
        task = asyncio.create_task(self._run(definition, record, requester, credentials or {}),
                                   name=f"build-{record.id}")
        self._tasks[record.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(record.id, None))

    async def _run(self, definition: BuildDefinition, record: BuildRecord, requester: _Requester,
                   credentials: dict[str, tuple[str, str]]) -> None:
        build_log = self._logs[record.id]
        log.info("build %s started: %s (%s, %s)", record.id, record.target_image, definition.kind,
                 self._launcher.name)
        heartbeat = asyncio.create_task(self._heartbeat(record))
        workdir = None
        result = LaunchResult(False, "the build did not run")
        try:
            workdir = await asyncio.to_thread(write_workspace, self._settings.build_dir, record.id, definition)
            await self._download(workdir, definition)
            job = BuildJob(
                build_id=record.id,
                workdir=workdir,
                build_file=definition.build_file_name,
                target_image=definition.target_image,
                platform=definition.platform,
                format=definition.format,
                timeout=self._settings.build_timeout,
                cache_repository=definition.cache_repository,
                credentials=credentials,
            )
            result = await asyncio.wait_for(self._launcher.launch(job, build_log),
                                            self._settings.build_timeout + LAUNCH_GRACE)
        except asyncio.CancelledError:
            result = LaunchResult(False, "wave stopped while the build was running")
            raise
        except TimeoutError:
            limit = format_duration(self._settings.build_timeout)
            result = LaunchResult(False, f"the build did not finish within {limit} (WAVE_BUILD_TIMEOUT)")
        except LayerDownloadError as exc:
            result = LaunchResult(False, str(exc))
        except Exception as exc:
            log.exception("build %s: launcher %s crashed", record.id, self._launcher.name)
            result = LaunchResult(False, f"the {self._launcher.name} launcher failed: {exc!r}")
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat  # no heartbeat write may land after the outcome
            if workdir is not None:
                await asyncio.to_thread(remove_workspace, workdir)
            await self._finish(record, result, build_log)
            await self._notify("build_finished", record.id, requester, result.succeeded)
            event = self._done.pop(record.id, None)
            if event is not None:
                event.set()  # last: a waiter that wakes finds everything about this build done

    async def _heartbeat(self, record: BuildRecord) -> None:
        """Tell other replicas this build is alive (see ``BuildRecord.is_stale``)."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            with contextlib.suppress(Exception):  # the owner is the only writer of a pending record
                await self._records.put(replace(record, heartbeat=now()))

    async def _finish(self, record: BuildRecord, result: LaunchResult, build_log: BuildLog) -> None:
        """Store the outcome, then release the target: waiters must see COMPLETED before a new claim."""
        # the status a user reads says where the whole story is: the log
        reason = None if result.succeeded else f"{result.reason or 'the build failed'}; log: {log_path(record.id)}"
        done = record.completed(result.succeeded, reason, now())
        if not result.succeeded and result.reason:
            with contextlib.suppress(Exception):
                await build_log.write(f"wave: build failed: {result.reason}")
        try:
            await build_log.close()
        except Exception:
            log.exception("build %s: could not store its log", record.id)
        try:
            await self._records.put(done)
            if result.succeeded:
                await self._records.set_last_success(record.target_image, record.id)
            # a build that overran its claim's TTL may find another build holding the target: leave it
            await self._records.release(record.target_image, record.id)
        except Exception:
            log.exception("build %s: could not store its outcome; it will be seen failed at its deadline",
                          record.id)
        outcome = "succeeded" if result.succeeded else f"failed: {result.reason}"
        log.info("build %s finished in %.1fs, %s", record.id, done.duration or 0.0, outcome)
        self._logs.pop(record.id, None)

    # --- queries --------------------------------------------------------------------------------------

    async def _fresh(self, build_id: str) -> BuildRecord | None:
        """The record, with a dead PENDING build (no heartbeat, past its deadline) turned into a failure."""
        record = await self._records.get(build_id)
        if record is None or build_id in self._tasks or not record.is_stale(now()):
            return record
        dead = record.dead(now())
        log.warning("build %s: %s; marking it failed", build_id, dead.reason)
        await self._records.put(dead)
        return dead

    async def status(self, build_id: str) -> BuildStatus | None:
        record = await self._fresh(build_id)
        return BuildStatus.of(record) if record else None

    async def wait(self, build_id: str, timeout: float) -> BuildStatus:  # noqa: ASYNC109 (the API's bound)
        """The build's status once COMPLETED, or as it is after ``timeout`` seconds (then PENDING).
        Local builds wake waiters at once; builds of other replicas are polled with backoff."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            current = await self.status(build_id)
            if current is None:
                raise NotFound(f"unknown build {build_id}")
            remaining = deadline - time.monotonic()
            if current.status == "COMPLETED" or remaining <= 0:
                return current
            event = self._done.get(build_id)
            pause = min(delay, remaining)
            if event is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), pause)
            else:
                await asyncio.sleep(pause)
            delay = min(delay * 2, MAX_POLL)

    async def logs(self, build_id: str) -> bytes | None:
        """The build log so far (None for an unknown build)."""
        stored = await self._storage.get(log_key(build_id))
        running = self._logs.get(build_id)
        if running is not None:
            return (stored or b"") + running.text()
        if stored is not None:
            return stored
        return b"" if await self._records.get(build_id) is not None else None

    async def log_tail(self, build_id: str, lines: int = 20) -> str:
        """The last lines of the build log: what a failed pull shows the user."""
        running = self._logs.get(build_id)
        if running is not None:
            return "\n".join(running.tail(lines))
        data = await self._storage.get(log_key(build_id)) or b""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    # --- lifecycle ------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel running builds (each is stored as failed) and close the launcher."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._launcher.close()
