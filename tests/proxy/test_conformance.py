"""The OCI distribution spec's pull and content-discovery requirements, against wave and its upstream side by side.

Why: wave is a registry to its clients. Each test is one requirement of the spec (distribution-spec
``spec.md``: "Pull", "Content Discovery", "Error Codes", the endpoint table) checked on every target: the
upstream registry itself (CNCF distribution), wave with a plain token and wave with an augmenting token, each
for an image manifest (``latest``) and an index (``multi-oci``). A requirement the upstream registry does not
meet is marked so (strict xfail): wave must then still meet it, and the mark fails the day the registry does.

One registry (the session's) and one wave serve the whole module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.layers import make_layer, serve_files
from tests.support.registry import HttpResponse, Registry, http_request
from tests.support.wave import WaveServer, start_wave

MANIFEST_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
ACCEPT = {"Accept": ", ".join(sorted(MANIFEST_TYPES))}
# "Error Codes": the code field MUST be one of these.
ERROR_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
               "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN",
               "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS"}
LAB_TAGS = {"latest", "oci", "multi-oci", "multi-v2s2"}
UNKNOWN_DIGEST = "sha256:" + "0" * 64
INLINE = make_layer({"opt/conformance/inline.txt": "an injected layer wave serves itself\n"})
LINKED = make_layer({"opt/conformance/linked.txt": "an injected layer behind a redirect\n"})
DISTRIBUTION_2 = "CNCF distribution 2.x does not page or sort tag lists"


@dataclass(frozen=True)
class Target:
    """A repository as a client reaches it: ``root`` (scheme and authority), ``name`` and a tag."""

    id: str
    root: str
    name: str
    tag: str
    unknown_name: str  # a repository the target does not serve
    upstream: bool = False  # the registry itself, not wave
    cache: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def base(self) -> str:
        return f"{self.root}/v2/{self.name}"

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> HttpResponse:
        return http_request(method, self.base + path, headers or {}, timeout=60)

    def manifest(self) -> HttpResponse:
        """GET of the tag with every manifest type accepted, once."""
        if "manifest" not in self.cache:
            got = self.get(f"/manifests/{self.tag}", ACCEPT)
            assert got.status == 200, got.body[:300]
            self.cache["manifest"] = got
        return self.cache["manifest"]  # type: ignore[no-any-return]

    def image_manifest(self) -> dict[str, Any]:
        """The image manifest of the tag: the linux/amd64 entry's when the tag is an index."""
        document = json.loads(self.manifest().body)
        if "manifests" in document:
            entry = next(e for e in document["manifests"] if e.get("platform", {}).get("architecture") == "amd64")
            got = self.get(f"/manifests/{entry['digest']}", ACCEPT)
            assert got.status == 200
            document = json.loads(got.body)
        return document  # type: ignore[no-any-return]

    def blob(self, kind: str) -> dict[str, Any]:
        """The descriptor of the image's config or its first (upstream) layer."""
        document = self.image_manifest()
        return document["config"] if kind == "config" else document["layers"][0]  # type: ignore[no-any-return]


TARGET_IDS = ["registry", "wave", "wave-augmented", "registry-index", "wave-augmented-index"]


@pytest.fixture(scope="module")
def targets(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    with ExitStack() as stack:
        files = stack.enter_context(serve_files({"/linked.tar.gz": LINKED.gzip_bytes}))
        wave: WaveServer = start_wave(tmp_path_factory.mktemp("wave-conformance"), layer_allowed_hosts=("127.0.0.0/8",))
        stack.callback(wave.stop)
        config = {"env": ["CONFORMANCE=1"], "cmd": ["sh"],
                  "layers": [INLINE.request(), LINKED.request(f"{files}/linked.tar.gz")]}

        def token(tag: str, augment: bool) -> str:
            body: dict[str, Any] = {"containerImage": registry.ref(f"library/busybox:{tag}")}
            if augment:
                body["containerConfig"] = config
            return str(wave.submit(body)["containerToken"])

        unknown_wave = "wt/" + "0" * 32 + "/library/busybox"
        yield {
            "registry": Target("registry", registry.url, "library/busybox", "latest", "library/nothere",
                               upstream=True),
            "wave": Target("wave", wave.url, f"wt/{token('latest', False)}/library/busybox", "latest", unknown_wave),
            "wave-augmented": Target("wave-augmented", wave.url, f"wt/{token('latest', True)}/library/busybox",
                                     "latest", unknown_wave),
            "registry-index": Target("registry-index", registry.url, "library/busybox", "multi-oci",
                                     "library/nothere", upstream=True),
            "wave-augmented-index": Target("wave-augmented-index", wave.url,
                                           f"wt/{token('multi-oci', True)}/library/busybox", "multi-oci",
                                           unknown_wave),
        }


@pytest.fixture(params=TARGET_IDS)
def target(request: pytest.FixtureRequest, targets: dict[str, Target]) -> Target:
    return targets[request.param]


def _upstream_lacks(request: pytest.FixtureRequest, target: Target, reason: str) -> None:
    """Mark a requirement the upstream registry does not meet (strict: the mark fails once it does)."""
    if target.upstream:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_error(got: HttpResponse, status: int, *codes: str, method: str = "GET") -> None:
    """An error response as "Error Codes" describes it: the status; a JSON body ``{"errors": [{code, message,
    detail}]}`` whose code is one of the spec's (a 4XX MAY have a body in another format); no body on HEAD, but
    the Content-Length a GET would have."""
    assert got.status == status, (got.status, got.body[:300])
    if method == "HEAD":
        assert got.body == b""
        assert "content-length" in got.headers
        return
    if not got.headers.get("content-type", "").startswith("application/json"):
        return  # "MAY return a body in any format"
    errors = json.loads(got.body)["errors"]
    assert isinstance(errors, list) and errors
    for error in errors:
        assert error["code"] in ERROR_CODES and re.fullmatch(r"[A-Z_]+", error["code"])
        assert isinstance(error.get("message", ""), str)
    if codes:
        assert errors[0]["code"] in codes, errors


# --- API: determining support (end-1) ---------------------------------------------------------------------


def test_end1_v2_answers_200_with_the_api_version(target: Target) -> None:
    got = http_request("GET", f"{target.root}/v2/")
    assert got.status == 200
    assert got.headers.get("docker-distribution-api-version") == "registry/2.0"


# --- Pull: manifests (end-3) ------------------------------------------------------------------------------


def test_pull_manifest_by_tag_is_200_with_type_digest_and_length(target: Target) -> None:
    got = target.manifest()
    document = json.loads(got.body)
    content_type = got.headers["content-type"]
    assert content_type in MANIFEST_TYPES
    if "mediaType" in document:  # clients reject a manifest whose mediaType is not its Content-Type
        assert document["mediaType"] == content_type
    assert got.headers["docker-content-digest"] == sha256(got.body)
    assert int(got.headers["content-length"]) == len(got.body)


def test_pull_manifest_by_digest_is_the_same_manifest(target: Target) -> None:
    digest = sha256(target.manifest().body)
    got = target.get(f"/manifests/{digest}", ACCEPT)
    assert got.status == 200
    assert got.body == target.manifest().body
    assert got.headers["docker-content-digest"] == digest
    assert got.headers["content-type"] == target.manifest().headers["content-type"]


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_head_manifest_is_200_without_body_with_the_gets_digest_and_length(target: Target, by: str) -> None:
    whole = target.manifest()
    reference = target.tag if by == "tag" else sha256(whole.body)
    got = target.get(f"/manifests/{reference}", ACCEPT, method="HEAD")
    assert got.status == 200 and got.body == b""
    assert got.headers["docker-content-digest"] == sha256(whole.body)
    assert int(got.headers["content-length"]) == len(whole.body)
    assert got.headers["content-type"] == whole.headers["content-type"]


def _fetch(target: Target, descriptor: dict[str, Any], is_manifest: bool) -> bytes:
    """A descriptor's content, following a redirect as clients do (a blob MAY be a 307 to another service)."""
    path = ("/manifests/" if is_manifest else "/blobs/") + descriptor["digest"]
    got = target.get(path, ACCEPT if is_manifest else None)
    if got.status == 307:
        location = got.headers["location"]
        got = http_request("GET", urllib.parse.urljoin(target.base + path, location))
    assert got.status == 200, (path, got.status, got.body[:200])
    return got.body


def test_every_descriptor_resolves_to_content_of_its_digest_size_and_data(target: Target) -> None:
    """What a manifest points at is pullable by digest, and is what its descriptor says (image spec)."""
    top = json.loads(target.manifest().body)
    documents = [(top, "manifests" in top)]
    if "manifests" in top:
        documents.append((target.image_manifest(), False))
    for document, is_index in documents:
        descriptors = document["manifests"] if is_index else [document["config"], *document["layers"]]
        for descriptor in descriptors:
            data = _fetch(target, descriptor, is_index)
            assert sha256(data) == descriptor["digest"] and len(data) == descriptor["size"]
            if "data" in descriptor:
                assert base64.b64decode(descriptor["data"]) == data


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("reference", ["nope-not-a-tag-here", UNKNOWN_DIGEST], ids=["tag", "digest"])
def test_pull_unknown_manifest_is_404_manifest_unknown(target: Target, method: str, reference: str) -> None:
    assert_error(target.get(f"/manifests/{reference}", ACCEPT, method=method), 404, "MANIFEST_UNKNOWN",
                 method=method)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_pull_manifest_reference_neither_digest_nor_tag_is_404(target: Target, method: str) -> None:
    """``<reference>`` MUST be a digest or a tag (what the spec's conformance suite sends)."""
    got = target.get("/manifests/.INVALID_MANIFEST_NAME", ACCEPT, method=method)
    assert_error(got, 404, "MANIFEST_UNKNOWN", method=method)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_pull_manifest_of_an_unknown_repository_is_404(target: Target, method: str) -> None:
    got = http_request(method, f"{target.root}/v2/{target.unknown_name}/manifests/{target.tag}", ACCEPT)
    assert_error(got, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN", method=method)


# --- Pull: blobs (end-2) ----------------------------------------------------------------------------------

BLOB_KINDS = ["config", "layer"]


@pytest.mark.parametrize("kind", BLOB_KINDS)
def test_pull_blob_is_200_with_the_bytes_of_its_digest(target: Target, kind: str) -> None:
    descriptor = target.blob(kind)
    got = target.get(f"/blobs/{descriptor['digest']}")
    assert got.status == 200
    assert sha256(got.body) == descriptor["digest"]  # "MUST provide the expected blob"
    assert got.headers.get("docker-content-digest", descriptor["digest"]) == descriptor["digest"]
    assert int(got.headers["content-length"]) == descriptor["size"]


@pytest.mark.parametrize("kind", BLOB_KINDS)
def test_head_blob_is_200_without_body_with_digest_and_length(target: Target, kind: str) -> None:
    descriptor = target.blob(kind)
    got = target.get(f"/blobs/{descriptor['digest']}", method="HEAD")
    assert got.status == 200 and got.body == b""
    assert got.headers["docker-content-digest"] == descriptor["digest"]
    assert int(got.headers["content-length"]) == descriptor["size"]


def _whole(target: Target, kind: str) -> tuple[str, bytes]:
    descriptor = target.blob(kind)
    got = target.get(f"/blobs/{descriptor['digest']}")
    assert got.status == 200
    return descriptor["digest"], got.body


@pytest.mark.parametrize("kind", BLOB_KINDS)
@pytest.mark.parametrize(("range_header", "first", "last"), [("bytes=10-19", 10, 19), ("bytes=-10", -10, None),
                                                             ("bytes=5-", 5, None)],
                         ids=["span", "suffix", "open"])
def test_pull_blob_range_is_206_with_content_range(target: Target, kind: str, range_header: str, first: int,
                                                   last: int | None) -> None:
    """Range requests SHOULD be supported (RFC 9110): resumable pulls."""
    digest, whole = _whole(target, kind)
    expected = whole[first:] if last is None else whole[first:last + 1]
    got = target.get(f"/blobs/{digest}", {"Range": range_header})
    assert got.status == 206
    assert got.body == expected
    start = first if first >= 0 else len(whole) + first
    assert got.headers["content-range"] == f"bytes {start}-{start + len(expected) - 1}/{len(whole)}"
    assert int(got.headers["content-length"]) == len(expected)


@pytest.mark.parametrize("kind", BLOB_KINDS)
def test_pull_blob_range_past_the_end_is_416(request: pytest.FixtureRequest, target: Target, kind: str) -> None:
    _upstream_lacks(request, target, "distribution 2.x answers 416 declaring the blob's length, with a short body")
    digest, whole = _whole(target, kind)
    got = target.get(f"/blobs/{digest}", {"Range": f"bytes={len(whole) + 10}-"})
    assert got.status == 416
    assert got.headers["content-range"] == f"bytes */{len(whole)}"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_pull_unknown_blob_is_404_blob_unknown(target: Target, method: str) -> None:
    assert_error(target.get(f"/blobs/{UNKNOWN_DIGEST}", method=method), 404, "BLOB_UNKNOWN", method=method)


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "A" * 64], ids=["short", "uppercase"])
def test_pull_blob_with_a_malformed_digest_is_400_digest_invalid(target: Target, digest: str) -> None:
    assert_error(target.get(f"/blobs/{digest}"), 400, "DIGEST_INVALID")


def test_pull_blob_by_something_that_is_no_digest_is_404(target: Target) -> None:
    assert_error(target.get("/blobs/notadigest"), 404, "BLOB_UNKNOWN")


def test_pull_blob_of_an_unknown_repository_is_404(target: Target) -> None:
    got = http_request("GET", f"{target.root}/v2/{target.unknown_name}/blobs/{target.blob('layer')['digest']}")
    assert_error(got, 404, "NAME_UNKNOWN", "BLOB_UNKNOWN")


@pytest.mark.parametrize("augmented", [t for t in TARGET_IDS if t.startswith("wave-augmented")])
def test_injected_layers_are_served_or_redirected_with_location(targets: dict[str, Target], augmented: str) -> None:
    """An injected layer wave holds is a blob like any; one behind a URL is a 307 to it (end-2 MAY redirect)."""
    target = targets[augmented]
    layers = {layer["digest"] for layer in target.image_manifest()["layers"]}
    assert {INLINE.gzip_digest, LINKED.gzip_digest} <= layers
    inline = target.get(f"/blobs/{INLINE.gzip_digest}")
    assert inline.status == 200 and inline.body == INLINE.gzip_bytes
    assert inline.headers["docker-content-digest"] == INLINE.gzip_digest
    linked = target.get(f"/blobs/{LINKED.gzip_digest}")
    assert linked.status == 307 and linked.headers["location"].endswith("/linked.tar.gz")
    assert http_request("GET", linked.headers["location"]).body == LINKED.gzip_bytes


# --- Content discovery: tags (end-8a, end-8b) ------------------------------------------------------------


def _tags(target: Target, query: str = "") -> tuple[dict[str, Any], str | None]:
    got = target.get("/tags/list" + query)
    assert got.status == 200, got.body[:300]
    assert got.headers["content-type"].startswith("application/json")
    return json.loads(got.body), got.headers.get("link")


def test_tags_list_is_200_with_the_name_asked_for_and_its_tags(target: Target) -> None:
    body, _ = _tags(target)
    assert body["name"] == target.name  # the namespace as the client named it
    assert set(body["tags"]) >= LAB_TAGS


def test_tags_list_is_in_lexical_order(request: pytest.FixtureRequest, target: Target) -> None:
    _upstream_lacks(request, target, DISTRIBUTION_2)
    tags = _tags(target)[0]["tags"]
    assert tags == sorted(tags, key=lambda tag: (tag.lower(), tag))


def test_tags_list_n_gives_n_tags_and_a_next_link(request: pytest.FixtureRequest, target: Target) -> None:
    _upstream_lacks(request, target, DISTRIBUTION_2)
    everything = sorted(_tags(target)[0]["tags"], key=lambda tag: (tag.lower(), tag))
    body, link = _tags(target, "?n=2")
    assert body["tags"] == everything[:2]
    assert link is not None and re.fullmatch(r'<[^>]+>; rel="next"', link)


def test_tags_list_last_starts_after_it(request: pytest.FixtureRequest, target: Target) -> None:
    _upstream_lacks(request, target, DISTRIBUTION_2)
    everything = sorted(_tags(target)[0]["tags"], key=lambda tag: (tag.lower(), tag))
    body, _ = _tags(target, f"?n=2&last={everything[0]}")
    assert body["tags"] == everything[1:3]
    body, _ = _tags(target, f"?last={everything[1]}")
    assert body["tags"] == everything[2:]


def test_tags_list_n_zero_is_empty_without_link(request: pytest.FixtureRequest, target: Target) -> None:
    _upstream_lacks(request, target, DISTRIBUTION_2)
    body, link = _tags(target, "?n=0")
    assert body["tags"] == [] and link is None


def test_tags_list_next_links_walk_every_tag_once(request: pytest.FixtureRequest, target: Target) -> None:
    _upstream_lacks(request, target, DISTRIBUTION_2)
    everything = _tags(target)[0]["tags"]
    body, link = _tags(target, "?n=1")
    pages = [body["tags"]]
    while link is not None and len(pages) <= len(everything):
        url = urllib.parse.urljoin(target.base, re.fullmatch(r"<([^>]+)>.*", link).group(1))  # type: ignore[union-attr]
        got = http_request("GET", url)
        assert got.status == 200
        pages.append(json.loads(got.body)["tags"])
        link = got.headers.get("link")
    assert all(len(page) == 1 for page in pages)
    assert [tag for page in pages for tag in page] == everything


def test_tags_list_of_an_unknown_repository_is_404_name_unknown(target: Target) -> None:
    assert_error(http_request("GET", f"{target.root}/v2/{target.unknown_name}/tags/list"), 404, "NAME_UNKNOWN")


# --- Content discovery: referrers (end-12a) ---------------------------------------------------------------


def test_referrers_api_unavailable_is_404(target: Target) -> None:
    """Neither offers the referrers API: a 404 tells clients to fall back to the referrers tag schema."""
    got = target.get(f"/referrers/{sha256(target.manifest().body)}")
    assert_error(got, 404)


# --- wave only: a read-only proxy ----------------------------------------------------------------------------


WRITES = [("PUT", "/manifests/latest"), ("DELETE", "/manifests/latest"), ("DELETE", f"/blobs/{UNKNOWN_DIGEST}"),
          ("POST", "/blobs/uploads/"), ("PATCH", "/blobs/uploads/some-session"), ("PUT", "/blobs/uploads/x")]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m}-{p.split('/')[1]}" for m, p in WRITES])
def test_writes_to_wave_are_405_unsupported_with_allow(targets: dict[str, Target], method: str, path: str) -> None:
    got = targets["wave"].get(path, method=method)
    assert_error(got, 405, "UNSUPPORTED")
    assert "allow" in got.headers  # the methods the resource does allow (none for uploads)
    assert {m.strip() for m in got.headers["allow"].split(",") if m.strip()} <= {"GET", "HEAD"}


def test_a_repository_a_token_does_not_serve_is_404_name_unknown(targets: dict[str, Target]) -> None:
    wave = targets["wave"]
    token = wave.name.split("/")[1]
    got = http_request("GET", f"{wave.root}/v2/wt/{token}/library/other/manifests/latest")
    assert_error(got, 404, "NAME_UNKNOWN")

