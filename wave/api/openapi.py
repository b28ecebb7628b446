"""``GET /openapi.json``: the control API (and the registry routes) as an OpenAPI 3.1 document.

The schemas are generated from the models the API decodes (:class:`wave.model.SubmitRequest`) and renders
(:mod:`wave.api.answers`) with msgspec's JSON Schema generator (2020-12, OpenAPI 3.1's dialect), so they
change with the code. What a schema cannot say (which routes exist, their parameters and statuses) is the
table below; ``tests/api/test_openapi.py`` checks that every route of the application is in it, that the
document is valid OpenAPI, and that real answers match their schemas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from aiohttp import web

from wave import __version__
from wave.api import answers
from wave.model import Base64Text, Repository, SubmitRequest

REF = "#/components/schemas/{name}"
JSON = "application/json"


@dataclass(frozen=True)
class Parameter:
    name: str
    where: str  # "path" | "query"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "in": self.where, "description": self.description,
                "required": self.required or self.where == "path", "schema": self.schema}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    answer: type | None = None  # the 200 body's model
    body: type | None = None  # the request body's model
    status: int = 200
    content_type: str = JSON  # of the answer
    parameters: tuple[Parameter, ...] = ()
    basic_auth: bool = False
    description: str = ""
    errors: tuple[int, ...] = (400,)


TOKEN = Parameter("token", "path", "a container token")
BUILD_ID = Parameter("build_id", "path", "a build id (`<container id>_<n>`)")
DATE = Parameter("date", "query", "a day, yyyy-mm-dd", {"type": "string", "format": "date"})
ORG = Parameter("org", "query", "an organisation: the domain of its users' e-mail addresses")
START, END = (Parameter(n, "query", f"{w} day of the window (yyyy-mm-dd)", {"type": "string", "format": "date"})
              for n, w in (("startDate", "first"), ("endDate", "last")))
LIMIT = Parameter("limit", "query", "at most this many entries (0-1000, default 100)",
                  {"type": "integer", "minimum": 0, "maximum": 1000})
KIND = Parameter("kind", "path", "builds or pulls", {"enum": ["builds", "pulls"]})
BY = Parameter("by", "path", "group by client IP address or user e-mail", {"enum": ["ip", "user"]})
FLAGS = (Parameter("success", "query", "builds only: true or false", {"type": "boolean"}),
         Parameter("fusion", "query", "pulls only: Fusion pulls, true or false", {"type": "boolean"}))
V2_NAME = Parameter("name", "path", "the repository (may contain `/`)")
V2_PATH = "/v2/wt/{token}/{name}"

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/container-token", "Request a container (v1: conda and spack recipes as condaFile, "
              "spackFile)", "containers", answers.ContainerAnswer, SubmitRequest, errors=(400, 413)),
    Operation("post", "/v1alpha2/container", "Request a container (v2: conda and spack builds as packages)",
              "containers", answers.ContainerAnswer, SubmitRequest, errors=(400, 413)),
    Operation("get", "/v1alpha2/container/{token}/status", "Status of a container request", "containers",
              answers.ContainerStatusAnswer, parameters=(TOKEN,), errors=(404,)),
    Operation("get", "/container-token/{token}", "What a token serves", "containers", answers.TokenDescription,
              parameters=(TOKEN,), errors=(404,)),
    Operation("delete", "/container-token/{token}", "Revoke a token", "containers", status=204,
              parameters=(TOKEN,), basic_auth=True, errors=(401, 404)),
    Operation("post", "/v1alpha1/inspect", "An image's manifest and config, or its index", "containers",
              answers.InspectAnswer, answers.InspectRequest),
    Operation("get", "/v1alpha1/builds/{build_id}/status", "Status of a build", "builds",
              answers.BuildStatusAnswer, parameters=(BUILD_ID,), errors=(400, 404)),
    Operation("get", "/v1alpha1/builds/{build_id}/logs", "The log of a build (so far)", "builds",
              content_type="text/plain", parameters=(BUILD_ID,), errors=(400, 404)),
    Operation("get", "/service-info", "Version and commit", "service", answers.ServiceInfoAnswer, errors=()),
    Operation("get", "/health", "Liveness: the process answers", "service", answers.HealthAnswer, errors=()),
    Operation("get", "/ready", "Readiness: the store (and object storage) can be reached", "service",
              answers.HealthAnswer, errors=(503,)),
    Operation("get", "/metrics", "Prometheus metrics of this replica", "service", content_type="text/plain",
              errors=()),
    Operation("get", "/openapi.json", "This document", "service", errors=()),
    Operation("get", "/v1alpha2/metrics/builds", "Builds on a day and/or of an organisation", "metrics",
              answers.CountAnswer, parameters=(DATE, ORG), basic_auth=True, errors=(400, 401)),
    Operation("get", "/v1alpha2/metrics/pulls", "Pulls on a day and/or of an organisation", "metrics",
              answers.CountAnswer, parameters=(DATE, ORG), basic_auth=True, errors=(400, 401)),
    Operation("get", "/v1alpha2/metrics/fusion/pulls", "Fusion pulls on a day and/or of an organisation", "metrics",
              answers.CountAnswer, parameters=(DATE, ORG), basic_auth=True, errors=(400, 401)),
    Operation("get", "/v1alpha1/metrics/{kind}", "Builds or pulls in a window", "metrics", answers.CountAnswer,
              parameters=(KIND, START, END, *FLAGS), basic_auth=True, errors=(400, 401)),
    Operation("get", "/v1alpha1/metrics/{kind}/{by}", "Builds or pulls in a window, by IP or user", "metrics",
              answers.GroupedAnswer, parameters=(KIND, BY, START, END, *FLAGS, LIMIT), basic_auth=True,
              errors=(400, 401)),
    Operation("get", "/pairing/{service}/token/{token}", "Seqera Platform pairing (a WebSocket)", "platform",
              status=101, parameters=(Parameter("service", "path", "the paired service"),
                                      Parameter("token", "path", "the Platform access token")),
              description="Upgrades to a WebSocket on which Seqera Platform and wave exchange pairing messages.",
              errors=(400, 401)),
    Operation("get", "/v2/", "OCI distribution: API version check", "registry", content_type=JSON, errors=()),
    Operation("get", "/v2", "OCI distribution: API version check", "registry", content_type=JSON, errors=()),
    *(Operation(method, f"{V2_PATH}/manifests/{{reference}}", f"OCI distribution: a manifest ({method.upper()})",
                "registry", content_type="application/vnd.oci.image.manifest.v1+json",
                parameters=(TOKEN, V2_NAME, Parameter("reference", "path", "a tag or a digest")),
                description="The token's image, augmented as requested; any manifest media type (Accept).",
                errors=(401, 404)) for method in ("get", "head")),
    *(Operation(method, f"{V2_PATH}/blobs/{{digest}}", f"OCI distribution: a blob ({method.upper()})", "registry",
                content_type="application/octet-stream",
                parameters=(TOKEN, V2_NAME, Parameter("digest", "path", "the blob's digest")),
                description="Range requests are answered; upstream redirects are passed on.",
                errors=(404,)) for method in ("get", "head")),
    Operation("get", f"{V2_PATH}/tags/list", "OCI distribution: the repository's tags", "registry",
              content_type=JSON, parameters=(TOKEN, V2_NAME), errors=(404,)),
)
STATUS_TEXT = {101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad request: the message says what "
               "to fix", 401: "Authentication required", 404: "Not found", 413: "Request body too large: the "
               "message names the limit", 503: "Unavailable"}
FIELD_DOCS = {
    "containerImage": "the image to serve, e.g. docker.io/library/ubuntu:24.04 (or give a recipe)",
    "containerFile": "a Dockerfile to build, base64-encoded",
    "condaFile": "a conda environment file to build an image of, base64-encoded (v1 only)",
    "spackFile": "a spack.yaml to build an image of, base64-encoded (v1 only)",
    "packages": "conda or spack packages to build an image of (v2 only)",
    "containerPlatform": "os/arch[/variant]: the platform to build, or to augment in an index (default linux/amd64)",
    "buildRepository": "where a build is pushed (default: the service's WAVE_BUILD_REPO)",
    "cacheRepository": "where the build layer cache is kept (default: the service's WAVE_CACHE_REPO)",
    "freeze": "push the result to the build repository and answer its real name instead of a token",
    "format": "docker, or sif for a Singularity image (needs freeze and the kubernetes launcher)",
    "dryRun": "answer as for a real request, but store, count and build nothing",
    "towerAccessToken": "a Seqera Platform access token: the request is then that user's",
    "towerWorkspaceId": "the Platform workspace whose registry credentials are used",
}


def _schema_hook(kind: type) -> dict[str, Any]:
    if kind is Base64Text:
        return {"type": "string", "contentEncoding": "base64", "description": "base64 of UTF-8 text"}
    if kind is Repository:
        return {"type": "string", "description": "a repository without tag or digest, e.g. quay.io/me/builds"}
    raise NotImplementedError(kind)


def _first_paragraph(text: str) -> str:
    paragraph = text.split("\n\n", 1)[0]
    return re.sub(r"``([^`]+)``", r"`\1`", re.sub(r":\w+:`~?([^`]+)`", r"`\1`", " ".join(paragraph.split())))


def _components() -> dict[str, Any]:
    models = [SubmitRequest, answers.ErrorAnswer,
              *{op.answer for op in OPERATIONS if op.answer}, *{op.body for op in OPERATIONS if op.body}]
    _, components = msgspec.json.schema_components(sorted(set(models), key=lambda m: m.__name__),
                                                   schema_hook=_schema_hook, ref_template=REF)
    # Parsed on arrival, so the model holds objects: on the wire they are strings.
    components["ImageRef"] = {"type": "string", "description": "an image reference, as docker pull takes it",
                              "examples": ["docker.io/library/alpine:3.20"]}
    components["Platform"] = {"type": "string", "description": "os/arch[/variant]", "examples": ["linux/arm64"]}
    request = components["SubmitRequest"]
    request["description"] = ("A container request: an image to serve (maybe augmented by containerConfig), or a "
                              "recipe to build. Fields not listed are accepted and ignored.")
    request["additionalProperties"] = True
    for name in ("sourceImage", "userEmail", "clientIp"):  # set by wave itself, never read from the body
        request["properties"].pop(name, None)
    request["properties"]["containerPlatform"]["default"] = "linux/amd64"
    for name, text in FIELD_DOCS.items():
        request["properties"][name]["description"] = text
    for schema in components.values():
        if "description" in schema:
            schema["description"] = _first_paragraph(schema["description"])
    return dict(sorted(components.items()))


def _content(model: type | None, content_type: str) -> dict[str, Any]:
    if model is not None:
        return {content_type: {"schema": {"$ref": REF.format(name=model.__name__)}}}
    return {content_type: {"schema": {"type": "string"} if content_type == "text/plain" else {}}}


def _operation(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": STATUS_TEXT.get(op.status, "OK")}
    if op.status not in (101, 204):
        ok["content"] = _content(op.answer, op.content_type)
    responses: dict[str, Any] = {str(op.status): ok}
    for status in op.errors:
        error: dict[str, Any] = {"description": STATUS_TEXT[status]}
        if op.tag != "registry":
            error["content"] = _content(answers.ErrorAnswer, JSON)
        responses[str(status)] = error
    body: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": _operation_id(op),
                            "responses": responses}
    if op.description:
        body["description"] = op.description
    if op.parameters:
        body["parameters"] = [p.to_json() for p in op.parameters]
    if op.body is not None:
        body["requestBody"] = {"required": True, "content": _content(op.body, JSON)}
    if op.basic_auth:
        body["security"] = [{"basicAuth": []}]
    return body


def _operation_id(op: Operation) -> str:
    words = re.findall(r"[A-Za-z0-9]+", op.path.replace("{", "by-").replace("}", ""))
    slash = "Slash" if op.path.endswith("/") else ""  # /v2/ and /v2 are two routes
    return op.method + "".join(w[:1].upper() + w[1:] for w in words) + slash


def document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict; callers may change it)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "wave", "version": __version__,
                 "description": "Container provisioning: ask for a container, pull it through wave's registry. "
                                "The contract is docs/wave-api.md in the repository."},
        "paths": paths,
        "components": {"schemas": _components(),
                       "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic",
                                                         "description": "an account of WAVE_METRICS_ACCOUNTS"}}},
        "tags": [{"name": n} for n in ("containers", "builds", "service", "metrics", "platform", "registry")],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    normalised: dict[str, Any] = orjson.loads(orjson.dumps(doc))  # defaults such as () become JSON arrays
    _ecma_patterns(normalised)
    return normalised


def _ecma_patterns(node: Any) -> None:
    """JSON Schema patterns are ECMA-262 regular expressions: Python's end anchor ``\\Z`` is ``$`` there."""
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            node["pattern"] = node["pattern"].replace("\\Z", "$")
        for value in node.values():
            _ecma_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _ecma_patterns(value)


_ENCODED: dict[str, bytes] = {}


async def openapi_json(request: web.Request) -> web.Response:
    from wave import keys  # the settings' public URL goes into `servers`

    url = request.app[keys.SETTINGS].public_url
    if url not in _ENCODED:
        _ENCODED[url] = orjson.dumps(document(url))
    return web.Response(body=_ENCODED[url], content_type=JSON)
