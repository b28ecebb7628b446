"""Builds across replicas on one Redis, with their logs in S3 (a real moto server)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.storage.s3server import S3Endpoint
from tests.support.clients import have, skopeo_copy
from tests.support.registry import Registry
from tests.support.wave import WaveServer

pytestmark = pytest.mark.skipif(not have("buildah"), reason="buildah missing (apt-get install buildah)")


def test_build_started_on_one_replica_is_reported_awaited_and_logged_to_s3_on_another(
        wave_factory: Any, registry: Registry, shared_redis: str, moto_s3: S3Endpoint, tmp_path: Path) -> None:
    common = {"redis_url": shared_redis, "build_repo": f"{registry.host}/wave/replicas",
              "storage_url": f"s3://{moto_s3.bucket}/wave", "s3_endpoint": moto_s3.endpoint_url,
              "s3_region": "us-east-1"}
    a: WaveServer = wave_factory(**common)
    b: WaveServer = wave_factory(**common)
    marker = f"replicas-{time.time_ns()}"
    dockerfile = (f"FROM {registry.host}/library/busybox:latest\nRUN echo {marker} > /m && sleep 1\n"
                  'CMD ["cat", "/m"]\n')
    answer = a.submit({"containerFile": base64.b64encode(dockerfile.encode()).decode()})
    build_id = answer["buildId"]
    assert b.request("GET", f"/v1alpha1/builds/{build_id}/status").json()["status"] == "PENDING"  # type: ignore[index]
    assert b.submit({"containerFile": base64.b64encode(dockerfile.encode()).decode()})["buildId"] == build_id

    through_b = answer["targetImage"].replace(a.host, b.host)
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            skopeo_copy(through_b, tmp_path / "via-b")
        except BaseException as exc:
            errors.append(exc)

    puller = threading.Thread(target=pull)
    puller.start()  # B holds the pull until A's build finishes
    puller.join(300)
    assert not errors, errors
    status = b.request("GET", f"/v1alpha1/builds/{build_id}/status").json()
    assert status["status"] == "COMPLETED" and status["succeeded"] is True  # type: ignore[index]
    log = b.request("GET", f"/v1alpha1/builds/{build_id}/logs")
    assert log.status == 200 and marker in log.body.decode()
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=moto_s3.bucket).get("Contents", [])]
    assert f"wave/builds/{build_id}.log" in keys
