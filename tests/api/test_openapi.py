"""``/openapi.json``: valid OpenAPI 3.1, every route of the application in it (and nothing else), and real
answers of the running service matching the schemas it publishes."""

from __future__ import annotations

import base64
import shutil
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from tests.support.registry import Registry
from tests.support.wave import WaveServer
from wave import keys
from wave.api.openapi import document
from wave.app import create_app
from wave.config import load_settings

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route; aiohttp's implicit HEAD of a GET and catch-all routes (method
    ``*``) are not operations."""
    routes: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        for route in resource:
            method = route.method.lower()
            if method in HTTP_METHODS:
                routes.add((method, resource.canonical))
    return routes


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document("http://localhost:9090")
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_of_the_app_is_documented_and_only_those(tmp_path: Any) -> None:
    app = create_app(load_settings(environ={}, state_dir=tmp_path))
    routes, documented = _app_routes(app), _documented(document())
    assert routes, "the application has routes"
    missing = sorted(routes - documented)
    assert not missing, f"add these routes to OPERATIONS in wave/api/openapi.py: {missing}"
    stale = sorted(documented - routes)
    assert not stale, f"wave/api/openapi.py documents routes the application does not have: {stale}"


def test_the_request_schema_comes_from_the_model() -> None:
    schemas = document()["components"]["schemas"]
    request = schemas["SubmitRequest"]["properties"]
    assert {"containerImage", "containerFile", "containerConfig", "packages", "freeze", "towerAccessToken"} <= set(
        request)
    assert not {"sourceImage", "userEmail", "clientIp"} & set(request)  # wave sets those, never the client
    layer = schemas["Layer"]
    assert set(layer["required"]) == {"location", "gzipDigest", "gzipSize", "tarDigest"}
    assert schemas["ImageRef"]["type"] == "string" and schemas["Platform"]["type"] == "string"


def _validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def _check(doc: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """The answer matches the schema the document gives for this route and status."""
    template = next(p for p in doc["paths"] if _matches(p, path))
    content = doc["paths"][template][method]["responses"][str(status)]["content"]["application/json"]
    ref = content["schema"]["$ref"].rsplit("/", 1)[1]
    errors = sorted(_validator(doc, ref).iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path} ({status}) does not match {ref}: {errors[0].message}"


def _matches(template: str, path: str) -> bool:
    t, p = template.strip("/").split("/"), path.split("?")[0].strip("/").split("/")
    return len(t) == len(p) and all(a == b or a.startswith("{") for a, b in zip(t, p, strict=True))


def test_real_answers_match_their_schemas(registry: Registry, wave_factory: Any) -> None:
    wave: WaveServer = wave_factory(build_repo=f"{registry.host}/wave/openapi", build_timeout=300)
    doc = wave.request("GET", "/openapi.json").json()
    assert isinstance(doc, dict) and doc["servers"] == [{"url": wave.settings.public_url}]
    validate(doc)

    answer = wave.submit({"containerImage": registry.ref("library/busybox:latest"),
                          "containerConfig": {"env": ["A=1"]}})
    _check(doc, "/v1alpha2/container", "post", 200, answer)
    token = answer["containerToken"]
    for path in (f"/v1alpha2/container/{token}/status", f"/container-token/{token}", "/service-info", "/health",
                 "/ready"):
        response = wave.request("GET", path)
        assert response.status == 200, path
        _check(doc, path, "get", 200, response.json())
    for image in ("library/busybox:latest", "library/busybox:multi-oci"):
        inspected = wave.request("POST", "/v1alpha1/inspect", {"containerImage": registry.ref(image),
                                                              "containerPlatform": "linux/amd64"})
        assert inspected.status == 200
        _check(doc, "/v1alpha1/inspect", "post", 200, inspected.json())

    refused = wave.request("POST", "/v1alpha2/container", {"containerImage": "UPPER/case"})
    assert refused.status == 400
    _check(doc, "/v1alpha2/container", "post", 400, refused.json())
    gone = wave.request("GET", "/v1alpha1/builds/nope_1/status")
    _check(doc, "/v1alpha1/builds/nope_1/status", "get", 404, gone.json())

    if shutil.which("buildah") is None:
        pytest.skip("buildah not installed (apt-get install buildah): build status answers not checked")
    dockerfile = f"FROM {registry.ref('library/busybox:latest')}\nRUN echo openapi > /x\n"
    built = wave.submit({"containerFile": base64.b64encode(dockerfile.encode()).decode()})
    _check(doc, "/v1alpha2/container", "post", 200, built)
    status = wave.call(wave.app[keys.BUILDS].wait(built["buildId"], 120))
    assert status.succeeded, status.reason
    for path in (f"/v1alpha1/builds/{built['buildId']}/status",
                 f"/v1alpha2/container/{built['containerToken']}/status"):
        response = wave.request("GET", path)
        _check(doc, path, "get", 200, response.json())
