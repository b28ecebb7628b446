"""UsageMetrics on both stores: events land on the right days, orgs, IPs and users; windows and filters add
up exactly; a failing store loses a count but never the request."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from wave.config import load_settings
from wave.errors import BadRequest, Unavailable
from wave.metrics import MAX_RANGE_DAYS, UsageMetrics, Window, org_of
from wave.model import SubmitRequest
from wave.oci.models import ContainerConfig, Layer
from wave.oci.platform import parse_platform
from wave.oci.reference import parse_reference
from wave.prometheus import OpsMetrics
from wave.store import KeyValueStore
from wave.tokens import ContainerRequest, new_token

TODAY = date(2024, 4, 8)
FUSION_LAYER = Layer("https://fusionfs.seqera.io/releases/v2.4/layer.tar.gz", "sha256:" + "a" * 64, 10,
                     "sha256:" + "b" * 64)


class Clock:
    def __init__(self, day: date = TODAY) -> None:
        self.day = day

    def __call__(self) -> date:
        return self.day


def submit(ip: str | None = "10.0.0.1", email: str | None = "alice@seqera.io", fusion: bool = False) -> SubmitRequest:
    config = ContainerConfig(layers=(FUSION_LAYER,)) if fusion else ContainerConfig()
    return SubmitRequest(container_image=parse_reference("docker.io/library/busybox:latest"), container_file=None,
                         container_config=config, conda_file=None, spack_file=None, packages=None,
                         platform=parse_platform("linux/amd64"), build_repository=None, cache_repository=None,
                         freeze=False, format="docker", user_email=email, client_ip=ip)


def container(email: str | None = "alice@seqera.io", fusion: bool = False) -> ContainerRequest:
    now = time.time()
    return ContainerRequest(token=new_token(), image=parse_reference("docker.io/library/busybox:latest"),
                            config=ContainerConfig(), platform=parse_platform("linux/amd64"), created=now,
                            expires=now + 3600, user_email=email, fusion=fusion)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def usage(store: KeyValueStore, clock: Clock, tmp_path) -> UsageMetrics:
    return UsageMetrics(store, load_settings(environ={}, state_dir=tmp_path), ops=OpsMetrics(), clock=clock)


async def test_pulls_are_counted_per_day_and_org_and_org_day(usage: UsageMetrics, clock: Clock) -> None:
    await usage.image_pulled(container("alice@Seqera.IO"))
    await usage.image_pulled(container("bob@seqera.io", fusion=True))
    await usage.image_pulled(container("carol@example.com"))
    await usage.image_pulled(container(None))  # anonymous: counted by day only
    clock.day = TODAY + timedelta(days=1)
    await usage.image_pulled(container("dave@seqera.io"))

    assert await usage.counter("pulls", day=TODAY) == 4
    assert await usage.counter("pulls", day=TODAY + timedelta(days=1)) == 1
    assert await usage.counter("pulls", org="seqera.io") == 3
    assert await usage.counter("pulls", day=TODAY, org="seqera.io") == 2
    assert await usage.counter("pulls", day=TODAY, org="SEQERA.io") == 2
    assert await usage.counter("pulls", org="example.com") == 1
    assert await usage.counter("fusion", day=TODAY) == 1
    assert await usage.counter("fusion", org="seqera.io") == 1
    assert await usage.counter("pulls", day=date(2020, 1, 1)) == 0
    assert await usage.counter("builds", day=TODAY) == 0


async def test_counter_needs_a_date_or_an_org(usage: UsageMetrics) -> None:
    with pytest.raises(BadRequest):
        await usage.counter("pulls")


async def test_builds_count_launches_and_record_outcomes(usage: UsageMetrics) -> None:
    await usage.build_launched("abc_1", "alice@seqera.io", "10.0.0.1")
    await usage.build_launched("abc_2", None, "10.0.0.2")
    await usage.build_finished("abc_1", "alice@seqera.io", "10.0.0.1", succeeded=True)
    await usage.build_finished("abc_2", None, "10.0.0.2", succeeded=False)

    assert await usage.counter("builds", day=TODAY) == 2
    assert await usage.counter("builds", org="seqera.io") == 1
    everything = Window()
    assert await usage.total("builds", everything) == 2
    assert await usage.total("builds", everything, flag=True) == 1
    assert await usage.total("builds", everything, flag=False) == 1
    assert await usage.grouped("builds", "ip", everything, flag=False) == {"10.0.0.2": 1}
    assert await usage.grouped("builds", "user", everything) == {"alice@seqera.io": 1}


async def test_container_requests_are_pull_records_with_fusion_flag(usage: UsageMetrics) -> None:
    await usage.container_requested(submit(), container(), None)
    await usage.container_requested(submit(fusion=True), container(fusion=True), None)
    await usage.container_requested(submit(ip="10.0.0.2", email="bob@example.com"), None, "bld_1")  # freeze
    await usage.container_requested(submit(ip="10.0.0.2", email=None, fusion=True), None, "bld_2")

    window = Window(TODAY, TODAY)
    assert await usage.total("pulls", window) == 4
    assert await usage.total("pulls", window, flag=True) == 2  # fusion found from the layers w/o a container
    assert await usage.total("pulls", window, flag=False) == 2
    assert await usage.grouped("pulls", "ip", window) == {"10.0.0.1": 2, "10.0.0.2": 2}
    assert await usage.grouped("pulls", "user", window, flag=True) == {"alice@seqera.io": 1}
    assert await usage.grouped("pulls", "user", window) == {"alice@seqera.io": 2, "bob@example.com": 1}


async def test_windows_cover_exactly_their_days(usage: UsageMetrics, clock: Clock) -> None:
    for offset, n in [(-400, 1), (-10, 2), (-1, 3), (0, 4)]:
        clock.day = TODAY + timedelta(days=offset)
        for _ in range(n):
            await usage.container_requested(submit(), None, None)
    clock.day = TODAY

    assert await usage.total("pulls", Window()) == 10  # all time
    assert await usage.total("pulls", Window(TODAY, TODAY)) == 4
    assert await usage.total("pulls", Window(TODAY - timedelta(days=10), TODAY - timedelta(days=1))) == 5
    assert await usage.total("pulls", Window(TODAY - timedelta(days=1))) == 7  # only start: up to today
    assert await usage.total("pulls", Window(end=TODAY - timedelta(days=1))) == 6  # only end: all time up to it
    assert await usage.grouped("pulls", "ip", Window(end=TODAY - timedelta(days=2))) == {"10.0.0.1": 3}
    assert await usage.total("pulls", Window(TODAY + timedelta(days=1), TODAY + timedelta(days=3))) == 0


async def test_window_errors_name_the_parameter(usage: UsageMetrics) -> None:
    with pytest.raises(BadRequest, match="startDate 2024-04-08 is after endDate 2024-04-07"):
        await usage.total("pulls", Window(TODAY, TODAY - timedelta(days=1)))
    with pytest.raises(BadRequest, match=f"spans {MAX_RANGE_DAYS + 1} days"):
        await usage.total("pulls", Window(TODAY - timedelta(days=MAX_RANGE_DAYS), TODAY))
    assert await usage.total("pulls", Window(TODAY - timedelta(days=MAX_RANGE_DAYS - 1), TODAY)) == 0
    with pytest.raises(BadRequest, match="endDate"):
        await usage.total("pulls", Window(end=TODAY - timedelta(days=MAX_RANGE_DAYS + 1)))


async def test_limit_keeps_the_largest_first(usage: UsageMetrics) -> None:
    for ip, n in [("10.0.0.3", 1), ("10.0.0.1", 3), ("10.0.0.2", 2), ("10.0.0.4", 2)]:
        for _ in range(n):
            await usage.container_requested(submit(ip=ip), None, None)
    result = await usage.grouped("pulls", "ip", Window(), limit=3)
    assert list(result.items()) == [("10.0.0.1", 3), ("10.0.0.2", 2), ("10.0.0.4", 2)]
    assert await usage.grouped("pulls", "ip", Window(), limit=0) == {}


async def test_build_states_reach_the_ops_counters(usage: UsageMetrics) -> None:
    await usage.build_launched("a_1", None, None)
    await usage.build_finished("a_1", None, None, succeeded=False)
    ops = usage._ops
    assert ops is not None and dict(ops.builds) == {"launched": 1, "failed": 1}


class BrokenStore:
    """A store that is down: every call fails like the real backends do."""

    def __getattr__(self, name: str):
        async def fail(*args, **kwargs):
            raise Unavailable("the state store (redis) is unavailable; retry shortly")
        return fail


async def test_a_failing_store_loses_the_count_not_the_request(tmp_path, caplog) -> None:
    usage = UsageMetrics(BrokenStore(), load_settings(environ={}, state_dir=tmp_path))  # type: ignore[arg-type]
    await usage.image_pulled(container())
    await usage.container_requested(submit(), None, None)
    await usage.build_launched("a_1", None, None)
    await usage.build_finished("a_1", None, None, succeeded=True)
    assert "could not record a pull" in caplog.text


def test_org_is_the_email_domain() -> None:
    assert org_of("Alice@Seqera.IO") == "seqera.io"
    assert org_of("a@b@example.com") == "example.com"
    assert org_of("no-at-sign") is None
    assert org_of(None) is None
    assert org_of("x@bad/domain") is None
