"""Builds as Kubernetes Jobs, through the official client (blocking: every call runs in a thread).

One Job per build (see :mod:`k8s_job`), polled until it succeeds, fails or passes its deadline; the pod's
log is copied into the build log, then the Job is deleted (its pods with it). Works in-cluster with the
pod's service account, or from a kubeconfig (``WAVE_K8S_KUBECONFIG`` or the default one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from wave.builds.launchers.base import BuildJob, LaunchResult, LogSink
from wave.builds.launchers.k8s_job import (
    CONTAINER,
    SECRET_KEY,
    auth_secret,
    auth_secret_name,
    build_job,
    job_name,
)
from wave.units import format_duration

if TYPE_CHECKING:
    from wave.config import Settings

log = logging.getLogger("wave.builds")

POLL_INTERVAL = 2.0
SCHEDULING_GRACE = 60.0  # beyond activeDeadlineSeconds before wave stops waiting for the cluster's verdict


def load_api_client(settings: Settings) -> k8s.ApiClient:
    """An explicit kubeconfig wins, then the in-cluster service account, then the default kubeconfig."""
    configuration = k8s.Configuration()
    if settings.k8s_kubeconfig:
        k8s_config.load_kube_config(config_file=settings.k8s_kubeconfig, client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(client_configuration=configuration)
    return k8s.ApiClient(configuration)


class KubernetesLauncher:
    name = "kubernetes"

    def __init__(self, settings: Settings, poll_interval: float = POLL_INTERVAL) -> None:
        self._settings = settings
        self._poll = poll_interval
        self._api: k8s.ApiClient | None = None
        self._lock = asyncio.Lock()

    async def unavailable(self, format: str) -> str | None:
        return None  # the cluster runs both BuildKit and Singularity images

    async def _client(self) -> k8s.ApiClient:
        async with self._lock:
            if self._api is None:
                self._api = await asyncio.to_thread(load_api_client, self._settings)
            return self._api

    async def launch(self, job: BuildJob, log_sink: LogSink) -> LaunchResult:
        try:
            api = await self._client()
        except (ConfigException, OSError) as exc:
            return LaunchResult(False, f"cannot reach Kubernetes: {exc}")
        batch, core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
        namespace, name = self._settings.k8s_namespace, job_name(job.build_id)
        secret = auth_secret(self._settings, job, await self._shared_auths(core, namespace)) \
            if job.credentials else None
        secret_name = auth_secret_name(job.build_id) if secret is not None else None
        if secret is not None:
            try:
                await asyncio.to_thread(core.create_namespaced_secret, namespace, secret)
            except ApiException as exc:
                return LaunchResult(False, f"Kubernetes refused the build's credentials Secret: {_api_error(exc)}")
        try:
            return await self._run_job(batch, core, namespace, name, job, secret_name, log_sink)
        finally:
            if secret_name is not None:
                try:
                    await asyncio.to_thread(core.delete_namespaced_secret, secret_name, namespace)
                except (ApiException, HTTPError, OSError) as exc:
                    log.warning("could not delete the credentials Secret of build %s: %s", job.build_id,
                                type(exc).__name__)

    async def _shared_auths(self, core: k8s.CoreV1Api, namespace: str) -> dict[str, Any]:
        """The ``auths`` of the shared credentials Secret (WAVE_K8S_REGISTRY_SECRET), which a build's own Secret
        replaces and so must include; empty when it cannot be read (its content is never logged)."""
        name = self._settings.k8s_registry_secret
        try:
            secret = await asyncio.to_thread(core.read_namespaced_secret, name, namespace)
            encoded = (secret.data or {}).get(SECRET_KEY)
            if not encoded:
                return {}
            auths = json.loads(base64.b64decode(encoded)).get("auths")
            return auths if isinstance(auths, dict) else {}
        except ApiException as exc:
            if exc.status != 404:
                log.warning("cannot read the shared credentials Secret %s/%s: %s", namespace, name, _api_error(exc))
            return {}
        except (HTTPError, OSError, ValueError, AttributeError):
            log.warning("the shared credentials Secret %s/%s is unreadable", namespace, name)
            return {}

    async def _run_job(self, batch: k8s.BatchV1Api, core: k8s.CoreV1Api, namespace: str, name: str, job: BuildJob,
                       secret_name: str | None, log_sink: LogSink) -> LaunchResult:
        try:
            await asyncio.to_thread(batch.create_namespaced_job, namespace,
                                    build_job(self._settings, job, secret_name))
        except ApiException as exc:
            return LaunchResult(False, f"Kubernetes refused the build job {name}: {_api_error(exc)}")
        await log_sink.write(f"wave: build {job.target_image} in Kubernetes job {namespace}/{name}")
        try:
            result = await self._watch(batch, namespace, name, job)
            pod = await self._pod(core, namespace, name)
            if not result.succeeded and pod is not None:
                result = LaunchResult(False, f"{result.reason}{_container_detail(pod)}")
            await self._copy_log(core, namespace, pod, log_sink)
            return result
        finally:
            try:
                await asyncio.to_thread(batch.delete_namespaced_job, name, namespace,
                                        propagation_policy="Background")
            except (ApiException, HTTPError, OSError) as exc:
                log.warning("could not delete build job %s/%s: %s", namespace, name, type(exc).__name__)

    async def _watch(self, batch: k8s.BatchV1Api, namespace: str, name: str, job: BuildJob) -> LaunchResult:
        give_up = time.monotonic() + job.timeout + SCHEDULING_GRACE
        running_logged = False
        while True:
            try:
                current = await asyncio.to_thread(batch.read_namespaced_job_status, name, namespace)
            except (HTTPError, OSError) as exc:  # the API server is briefly unreachable: keep watching
                log.warning("watching build job %s/%s: %s", namespace, name, type(exc).__name__)
                current = None
            status = current.status if current is not None else None
            if status is not None:
                if status.succeeded:
                    return LaunchResult(True)
                failed = next((c for c in status.conditions or () if c.type == "Failed" and c.status == "True"),
                              None)
                if failed is not None or status.failed:
                    return LaunchResult(False, _failure_reason(failed, job))
                if status.active and not running_logged:
                    running_logged = True
                    log.info("build %s running in job %s/%s", job.build_id, namespace, name)
            if time.monotonic() > give_up:
                return LaunchResult(False, f"the build timed out after {format_duration(job.timeout)} "
                                           f"(job {name} did not finish)")
            await asyncio.sleep(self._poll)

    async def _pod(self, core: k8s.CoreV1Api, namespace: str, name: str) -> Any:
        try:
            pods = await asyncio.to_thread(core.list_namespaced_pod, namespace, label_selector=f"job-name={name}")
        except ApiException:
            return None
        items = pods.items or []
        return items[-1] if items else None  # backoffLimit 0: one pod per job

    async def _copy_log(self, core: k8s.CoreV1Api, namespace: str, pod: Any, log_sink: LogSink) -> None:
        if pod is None:
            await log_sink.write("wave: the build pod is gone; no log")
            return
        try:
            text = await asyncio.to_thread(core.read_namespaced_pod_log, pod.metadata.name, namespace,
                                           container=CONTAINER)
        except ApiException as exc:
            await log_sink.write(f"wave: no log from pod {pod.metadata.name}: {_api_error(exc)}")
            return
        for line in (text or "").splitlines():
            await log_sink.write(line)

    async def close(self) -> None:
        if self._api is not None:
            await asyncio.to_thread(self._api.close)
            self._api = None


def _failure_reason(condition: Any, job: BuildJob) -> str:
    if condition is not None and condition.reason == "DeadlineExceeded":
        return f"the build timed out after {format_duration(job.timeout)}"
    if condition is not None:
        return f"the build job failed ({condition.reason}: {condition.message or 'no message'})"
    return "the build job failed"


def _container_detail(pod: Any) -> str:
    for status in (pod.status.container_statuses or []) if pod.status else []:
        state = status.state
        if state and state.terminated:
            return f"; the build exited with code {state.terminated.exit_code} ({state.terminated.reason})"
        if state and state.waiting and state.waiting.reason:
            return f"; the build container never ran: {state.waiting.reason} {state.waiting.message or ''}".rstrip()
    return ""


def _api_error(exc: ApiException) -> str:
    return f"HTTP {exc.status} {exc.reason}"
