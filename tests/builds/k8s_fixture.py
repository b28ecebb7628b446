"""A Kubernetes API server on loopback that implements exactly what the kubernetes launcher calls.

Why: no cluster can run here, and the launcher must be tested through the real ``kubernetes`` client (its
serialisation, URLs, auth header, errors). The fixture stores the Jobs it is sent, drives each through
active → succeeded / failed / deadline exceeded as the test scripts it, serves one pod per Job (labelled
``job-name`` as the Job controller does) with a log, and records deletions.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes import client as k8s

TOKEN = "fixture-token"


@dataclass
class JobScript:
    outcome: str = "succeeded"  # "succeeded" | "failed" | "deadline" | "never"
    active_polls: int = 2  # status reads that see the job active before its outcome
    log: str = "#1 [internal] load build definition from Dockerfile\n#2 DONE 0.1s\n"
    exit_code: int = 1


@dataclass
class FakeKubernetes:
    script: JobScript = field(default_factory=JobScript)
    refuse_create: int | None = None  # answer POST jobs with this HTTP status
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[tuple[str, str, str | None]] = field(default_factory=list)  # (ns, name, propagation)
    requests: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    bad_auth: int = 0
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets_created: list[dict[str, Any]] = field(default_factory=list)
    secrets_deleted: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_auth])
        jobs = "/apis/batch/v1/namespaces/{ns}/jobs"
        app.router.add_post(jobs, self.create_job)
        app.router.add_get(jobs + "/{name}/status", self.read_job)
        app.router.add_get(jobs + "/{name}", self.read_job)
        app.router.add_delete(jobs + "/{name}", self.delete_job)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self.list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self.pod_log)
        app.router.add_post("/api/v1/namespaces/{ns}/secrets", self.create_secret)
        app.router.add_delete("/api/v1/namespaces/{ns}/secrets/{name}", self.delete_secret)
        app.router.add_get("/api/v1/namespaces/{ns}/secrets/{name}", self.read_secret)
        return app

    # --- secrets ------------------------------------------------------------------------------------

    async def create_secret(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = body["metadata"]["name"]
        if name in self.secrets:
            return _status(409, f'secrets "{name}" already exists')
        self.secrets[name] = body
        self.secrets_created.append(copy.deepcopy(body))
        return web.json_response(body, status=201)

    async def read_secret(self, request: web.Request) -> web.Response:
        secret = self.secrets.get(request.match_info["name"])
        if secret is None:
            return _status(404, f'secrets "{request.match_info["name"]}" not found')
        return web.json_response(secret)

    async def delete_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.secrets_deleted.append(name)
        if self.secrets.pop(name, None) is None:
            return _status(404, f'secrets "{name}" not found')
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.bad_auth += 1
            return _status(401, "Unauthorized")
        return await handler(request)

    # --- jobs ---------------------------------------------------------------------------------------

    async def create_job(self, request: web.Request) -> web.Response:
        if self.refuse_create:
            return _status(self.refuse_create, "refused by the fixture")
        body = await request.json()
        self.created.append(copy.deepcopy(body))  # exactly what the client sent
        name = body["metadata"]["name"]
        if name in self.jobs:
            return _status(409, f'jobs.batch "{name}" already exists')
        body["metadata"].update(namespace=request.match_info["ns"], uid=f"uid-{name}",
                                creationTimestamp=_now())
        body["status"] = {}
        self.jobs[name] = body
        return web.json_response(body, status=201)

    async def read_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        job = self.jobs.get(name)
        if job is None:
            return _status(404, f'jobs.batch "{name}" not found')
        self.polls[name] = self.polls.get(name, 0) + 1
        job["status"] = self._job_status(self.polls[name])
        return web.json_response(job)

    def _job_status(self, polls: int) -> dict[str, Any]:
        start = {"startTime": _now()}
        if polls <= self.script.active_polls or self.script.outcome == "never":
            return {**start, "active": 1}
        if self.script.outcome == "succeeded":
            return {**start, "succeeded": 1, "completionTime": _now(),
                    "conditions": [{"type": "Complete", "status": "True"}]}
        reason, message = {
            "failed": ("BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            "deadline": ("DeadlineExceeded", "Job was active longer than specified deadline"),
        }[self.script.outcome]
        return {**start, "failed": 1, "conditions": [
            {"type": "Failed", "status": "True", "reason": reason, "message": message}]}

    async def delete_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        propagation = request.query.get("propagationPolicy")
        if request.can_read_body:
            propagation = (await request.json()).get("propagationPolicy", propagation)
        self.deleted.append((request.match_info["ns"], name, propagation))
        if self.jobs.pop(name, None) is None:
            return _status(404, f'jobs.batch "{name}" not found')
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})

    # --- pods ---------------------------------------------------------------------------------------

    def _pod(self, job: dict[str, Any]) -> dict[str, Any]:
        name = job["metadata"]["name"]
        outcome = self.script.outcome if self.polls.get(name, 0) > self.script.active_polls else "running"
        if outcome == "succeeded":
            state = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        elif outcome in ("failed", "deadline"):
            state = {"terminated": {"exitCode": self.script.exit_code, "reason": "Error"}}
        else:
            state = {"running": {"startedAt": _now()}}
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-x7k2p", "namespace": job["metadata"]["namespace"],
                         "labels": {"job-name": name, **job["spec"]["template"]["metadata"]["labels"]},
                         "creationTimestamp": _now()},
            "spec": job["spec"]["template"]["spec"],
            "status": {"phase": "Succeeded" if outcome == "succeeded" else "Failed",
                       "containerStatuses": [{"name": "build", "image": "x", "imageID": "", "ready": False,
                                              "restartCount": 0, "state": state}]},
        }

    async def list_pods(self, request: web.Request) -> web.Response:
        selector = request.query.get("labelSelector", "")
        key, _, value = selector.partition("=")
        items = [self._pod(job) for job in self.jobs.values() if key == "job-name" and job["metadata"]["name"] == value]
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    async def pod_log(self, request: web.Request) -> web.Response:
        if request.query.get("container") != "build":
            return _status(400, "container name must be given")
        return web.Response(text=self.script.log)

    # --- helpers for tests --------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, server: str, namespace: str = "wave-build") -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
            "clusters": [{"name": "fixture", "cluster": {"server": server}}],
            "users": [{"name": "fixture", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture",
                                                         "namespace": namespace}}],
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path


def as_v1_job(body: dict[str, Any]) -> Any:
    """What the client sent, read back into the client's model (fields the model does not know are lost:
    compare with the body to catch them). Typed Any: the model's every field is Optional."""
    return k8s.ApiClient().deserialize(json.dumps(body), "V1Job", "application/json")


def _status(code: int, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": "Fixture", "code": code}, status=code)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
