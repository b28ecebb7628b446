"""wave as a hostile caller finds it: no input gives a 5xx, no log line carries a secret, a full token or a
traceback, however malformed the request.

Every request goes over a real socket to a real wave, byte for byte as the fuzzer wrote it. Every image name
resolves to a scripted upstream on loopback (names are resolved to 127.0.0.1 and the registry client is
pointed at the scripted one), so nothing leaves the machine. ``WAVE_FUZZ_EXAMPLES`` raises the number of
examples per test (the suite runs a bounded number; the campaign figures in the report used 10,000).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.layers import make_layer
from tests.support.scripted import CONFIG_DIGEST, MANIFEST_DIGEST, ScriptedRegistry
from tests.support.wave import WaveServer, read_until_closed
from wave.builds.launchers.local import LocalLauncher
from wave.registry.client import RegistryClient

EXAMPLES = int(os.environ.get("WAVE_FUZZ_EXAMPLES", "150"))
ADMIN, ADMIN_PASSWORD = "admin", "hunter2-metrics-secret"
ADMIN_BASIC = base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
STATUSES: Counter[int] = Counter()  # every answer of the campaign, for the report


@pytest.fixture(scope="module", autouse=True)
def campaign_report() -> Iterator[None]:
    """With ``WAVE_FUZZ_REPORT=<file>``, the statuses of every fuzzed request are written there (JSON)."""
    yield
    if os.environ.get("WAVE_FUZZ_REPORT"):
        with open(os.environ["WAVE_FUZZ_REPORT"], "w") as out:
            json.dump({"requests": sum(STATUSES.values()), "statuses": dict(sorted(STATUSES.items()))}, out)


# --- the world the fuzzed wave lives in --------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedRegistry]:
    upstream = ScriptedRegistry().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def hostile_wave(scripted: ScriptedRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WaveServer]:
    """A wave whose every upstream is the scripted registry and whose every name resolves to loopback."""
    patch = pytest.MonkeyPatch()
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in str(host) else socket.AF_INET, str(host).strip("[]"))
            return real_getaddrinfo(host, port, *args, **kwargs)  # a literal: no name service involved
        except (OSError, ValueError):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port or 0)))]

    patch.setattr(socket, "getaddrinfo", loopback_only)
    patch.setattr(RegistryClient, "_base_url", lambda self, ref: scripted.url)
    patch.setattr(LocalLauncher, "unavailable", lambda self, fmt: "builds are switched off in the fuzz tests")
    from tests.support.wave import start_wave

    server = start_wave(tmp_path_factory.mktemp("hostile-wave"), build_repo=f"{scripted.authority}/builds",
                        metrics_accounts={ADMIN: hashlib.sha256(ADMIN_PASSWORD.encode()).hexdigest()},
                        log_level="DEBUG", client_header_timeout=2.0, layer_allowed_hosts=("layers.test",))
    try:
        yield server
    finally:
        server.stop()
        patch.undo()


@pytest.fixture(scope="module")
def token(hostile_wave: WaveServer, scripted: ScriptedRegistry) -> str:
    answer = hostile_wave.submit({"containerImage": scripted.ref()})
    return str(answer["containerToken"])


def send(wave: WaveServer, data: bytes, timeout: float = 30.0, half_close: bool = False) -> int | None:
    """Send raw bytes, return the status wave answered (None when it closed without answering).
    ``half_close`` ends the sending side, as a client does that has nothing more to say."""
    with socket.create_connection(("127.0.0.1", wave.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # wave refused the rest of an oversized request: its answer is still there to read
        head = read_until_closed(sock)[:64]
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    status = int(match[1]) if match else None
    STATUSES[status or 0] += 1
    return status


def http(method: str, target: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: wave.test", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + (body or b"")


def assert_clean_log(text: str, *tokens: str) -> None:
    """No traceback, no credential, no full token: what the issue asks of every captured log."""
    assert "Traceback" not in text
    assert ADMIN_PASSWORD not in text and ADMIN_BASIC not in text and ADMIN_BASIC[:24] not in text
    for secret in tokens:
        assert secret not in text


# --- strategies ------------------------------------------------------------------------------------

NASTY = st.sampled_from(["", " ", "²", "٣", "99999999999999999999999999", "-1", "0", "1e309", "NaN", "\x00",
                         "a" * 5000, "../../etc/passwd", "%00", "data:", "data:,", "http://", "http://[::1]/x",
                         "http://169.254.169.254/latest", "ftp://x", "sha256:" + "0" * 64, "sha256:zz",
                         "\u202e", "\ud800" if False else "\uffff", "a/b", "A/B:C", "x" * 300 + "/y"])
TEXT = st.one_of(st.text(max_size=30), NASTY)
NUMBER = st.one_of(st.integers(), st.integers(min_value=2**63 - 2, max_value=2**70), st.floats(allow_nan=False),
                   st.just(10**30))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
ANY_JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                        max_leaves=12)
LAYER = make_layer({"hello.txt": "hello"})
LAYER_URL = "http://layers.test/hello.tar.gz"  # an allowed host: the layer is accepted without being fetched
DIGEST = st.one_of(st.just(LAYER.gzip_digest), st.just(LAYER.tar_digest), TEXT)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


layers = st.lists(st.one_of(
    st.just(LAYER.request()),
    st.fixed_dictionaries({}, optional={
        "location": st.one_of(st.just(str(LAYER.request()["location"])), TEXT, st.just(LAYER_URL),
                              st.builds(lambda s: "data:" + b64(s), TEXT)),
        "gzipDigest": DIGEST, "tarDigest": DIGEST,
        "gzipSize": st.one_of(NUMBER, st.just(len(LAYER.gzip_bytes)), TEXT,
                              st.sampled_from(["99999999999999999999999999", "²", "12", "007"])),
    }),
    ANY_JSON), max_size=3)
container_config = st.one_of(ANY_JSON, st.fixed_dictionaries({}, optional={
    "entrypoint": st.one_of(st.lists(TEXT, max_size=3), ANY_JSON),
    "cmd": st.one_of(st.lists(TEXT, max_size=3), ANY_JSON),
    "env": st.one_of(st.lists(st.one_of(TEXT, st.builds(lambda k, v: f"{k}={v}", TEXT, TEXT)), max_size=3), ANY_JSON),
    "workingDir": st.one_of(TEXT, st.just("/work")), "layers": st.one_of(layers, ANY_JSON),
}))
packages = st.one_of(ANY_JSON, st.fixed_dictionaries({}, optional={
    "type": st.one_of(st.sampled_from(["CONDA", "SPACK"]), TEXT),
    "entries": st.one_of(st.lists(TEXT, max_size=3), ANY_JSON),
    "channels": st.one_of(st.lists(TEXT, max_size=2), ANY_JSON), "envFile": st.one_of(TEXT, st.builds(b64, TEXT)),
    "condaOpts": ANY_JSON, "spackOpts": ANY_JSON,
}))


def request_bodies(image: str) -> st.SearchStrategy[Any]:
    """Container requests: every field of the contract, each with good, bad and absurd values."""
    recipe = st.one_of(TEXT, st.builds(b64, TEXT), st.just(b64("FROM busybox\nRUN true\n")))
    return st.one_of(ANY_JSON, st.fixed_dictionaries({}, optional={
        "containerImage": st.one_of(st.just(image), st.just(image.replace(":latest", "@" + MANIFEST_DIGEST)),
                                    st.just(image.replace("busybox", "missing")), TEXT),
        "containerFile": recipe, "condaFile": recipe, "spackFile": recipe, "packages": packages,
        "containerConfig": container_config,
        "containerPlatform": st.one_of(st.sampled_from(["linux/amd64", "linux/arm64/v8", "arm64", "linux/sparc"]),
                                       TEXT),
        "buildRepository": TEXT, "cacheRepository": TEXT, "freeze": SCALAR, "dryRun": SCALAR, "format": TEXT,
        "timestamp": SCALAR, "fingerprint": SCALAR, "towerAccessToken": SCALAR, "towerRefreshToken": SCALAR,
        "towerEndpoint": SCALAR, "towerWorkspaceId": st.one_of(NUMBER, TEXT), "workflowId": ANY_JSON,
    }))


def encode(body: Any, how: str) -> bytes:
    text = json.dumps(body, ensure_ascii=how == "ascii")  # stdlib: big integers and NaN stay in, as attackers send
    if how == "nested":
        text = "[" * 5000 + text + "]" * 5000
    if how == "truncated":
        text = text[: len(text) // 2]
    return text.encode("utf-8", "surrogatepass")


# --- the campaign ----------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_no_container_request_body_gets_a_5xx(data: st.DataObject, hostile_wave: WaveServer,
                                               scripted: ScriptedRegistry, caplog: pytest.LogCaptureFixture) -> None:
    body = data.draw(request_bodies(scripted.ref()))
    path = data.draw(st.sampled_from(["/container-token", "/v1alpha2/container", "/v1alpha1/inspect"]))
    how = data.draw(st.sampled_from(["utf8", "ascii", "ascii", "nested", "truncated"]))
    payload = encode(body, how)
    headers = {"Content-Type": data.draw(st.sampled_from(["application/json", "text/plain", "x/y; charset=zz"]))}
    encoding = data.draw(st.sampled_from([None, None, "gzip", "deflate", "br", "zstd", "identity", "x-bogus"]))
    if encoding:
        headers["Content-Encoding"] = encoding
        if encoding == "gzip" and data.draw(st.booleans()):
            payload = gzip.compress(payload)
    caplog.clear()  # one capture for all examples: each checks its own lines
    with caplog.at_level(logging.DEBUG):
        status = send(hostile_wave, http("POST", path, headers, payload))
    assert status is not None and status < 500, f"{status} for {payload[:300]!r} with {headers}"
    assert_clean_log(caplog.text)


def v2_paths(token: str) -> st.SearchStrategy[str]:
    tokens = st.one_of(st.just(token), st.just(token[:-1]), st.just(token + "0"), st.text("0123456789abcdef",
                       min_size=1, max_size=70), TEXT)
    names = st.one_of(st.just("library/busybox"), st.just("library/missing"), TEXT)
    refs = st.one_of(st.just("latest"), st.just(MANIFEST_DIGEST), st.just("sha256:" + "a" * 64),
                     st.just("sha512:" + "a" * 128), TEXT)
    blobs = st.one_of(st.just(CONFIG_DIGEST), st.just("sha256:" + "b" * 64), TEXT)
    query = st.one_of(st.just(""), st.builds(lambda n, last: f"?n={quote(n)}&last={quote(last)}", TEXT, TEXT))

    def q(text: str) -> str:
        return quote(text, safe="/:@")

    return st.one_of(
        st.builds(lambda t, n, r: f"/v2/wt/{q(t)}/{q(n)}/manifests/{q(r)}", tokens, names, refs),
        st.builds(lambda t, n, d: f"/v2/wt/{q(t)}/{q(n)}/blobs/{q(d)}", tokens, names, blobs),
        st.builds(lambda t, n, qs: f"/v2/wt/{q(t)}/{q(n)}/tags/list{qs}", tokens, names, query),
        st.builds(lambda p: "/v2/" + q(p), TEXT),
        st.builds(lambda t: f"/container-token/{q(t)}", tokens),
        st.builds(lambda t: f"/v1alpha2/container/{q(t)}/status", tokens),
        st.builds(lambda b, what: f"/v1alpha1/builds/{q(b)}/{what}", TEXT, st.sampled_from(["status", "logs"])),
        st.builds(lambda p, qs: f"/v1alpha2/metrics/{p}{qs}", st.sampled_from(["builds", "pulls", "fusion/pulls"]),
                  st.builds(lambda d, o: f"?date={quote(d)}&org={quote(o)}", TEXT, TEXT)),
        st.builds(lambda k, qs: f"/v1alpha1/metrics/{k}{qs}", st.sampled_from(["builds", "pulls/ip", "pulls/user"]),
                  st.builds(lambda a, b, n: f"?startDate={quote(a)}&endDate={quote(b)}&limit={quote(n)}",
                            TEXT, TEXT, TEXT)),
        st.builds(lambda sv, t: f"/pairing/{q(sv)}/token/{q(t)}", TEXT, TEXT),
        st.builds(lambda t, n, u: f"/v2/wt/{q(t)}/{q(n)}/blobs/uploads/{q(u)}", tokens, names, TEXT),
        st.sampled_from(["/v2/", "/v2", "/service-info", "/health", "/metrics", "/openapi.json", "//", "/%", "/%zz",
                         "/%00"]),
    )


@FUZZ
@given(data=st.data())
def test_no_path_header_or_method_gets_a_5xx(data: st.DataObject, hostile_wave: WaveServer, token: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = data.draw(v2_paths(token))
    method = data.draw(st.sampled_from(["GET", "GET", "HEAD", "DELETE", "POST", "PUT", "PATCH", "OPTIONS", "BREW"]))
    headers: dict[str, str] = {}
    for name in data.draw(st.lists(st.sampled_from(["Range", "Accept", "Authorization", "X-Forwarded-For",
                                                    "If-None-Match", "Cookie", "Content-Type"]), max_size=3)):
        value = data.draw(st.one_of(TEXT, st.sampled_from(["bytes=0-", "bytes=²-", "bytes=99999999999999999999-1",
                                                           f"Basic {ADMIN_BASIC}", "Basic " + "A" * 9000,
                                                           "Bearer x", "application/vnd.oci.image.index.v1+json"])))
        headers[name] = "".join(c for c in value if c not in "\r\n")
    caplog.clear()  # one capture for all examples: each checks its own lines
    with caplog.at_level(logging.DEBUG):
        status = send(hostile_wave, http(method, path, headers))
    assert status is not None and status < 500, f"{status} for {method} {path} {headers}"
    assert_clean_log(caplog.text, token)


@FUZZ
@given(raw=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda junk: b"GET /v2/wt/" + junk + b" HTTP/1.1\r\nHost: x\r\n\r\n", st.binary(max_size=100)),
    st.builds(lambda n: b"GET /" + b"a" * n + b" HTTP/1.1\r\n\r\n", st.integers(8000, 20000)),
    st.builds(lambda m: m + b" / HTTP/1.1\r\n\r\n", st.binary(min_size=1, max_size=20)),
    st.builds(lambda h: b"GET / HTTP/1.1\r\n" + h + b"\r\n\r\n", st.binary(max_size=200)),
))
def test_malformed_bytes_are_refused_without_a_traceback(raw: bytes, hostile_wave: WaveServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()  # one capture for all examples: each checks its own lines
    with caplog.at_level(logging.DEBUG):
        status = send(hostile_wave, raw, half_close=True)
    assert status is None or status < 500, f"{status} for {raw[:200]!r}"
    assert_clean_log(caplog.text)


# --- the cases the campaign found, kept as plain tests ---------------------------------------------


def _layer_at_url(size: object) -> dict[str, object]:
    return {"containerImage": "", "containerConfig": {"layers": [{**LAYER.request(LAYER_URL), "gzipSize": size}]}}


@pytest.mark.parametrize(("headers", "payload", "named"), [
    ({"Content-Encoding": "gzip"}, b'{"containerImage": "x"}', "cannot be read"),
    ({"Content-Encoding": "deflate"}, b"\x00\x01garbage", "cannot be read"),
    ({}, b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ({}, b'{"containerImage": "a/b"' + b"\xff" + b"}", "not valid JSON"),
], ids=["gzip-not-gzip", "deflate-garbage", "deep-nesting", "not-utf8"])
def test_bodies_that_cannot_be_read_are_400(hostile_wave: WaveServer, headers: dict[str, str], payload: bytes,
                                            named: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        response = hostile_wave.request("POST", "/v1alpha2/container", payload, headers=headers)
    assert response.status == 400 and named in str(response.json())
    assert_clean_log(caplog.text)


@pytest.mark.parametrize("size", ["99999999999999999999999999", "²", 10**30, 2**64, -1, "0x10"])
def test_gzip_sizes_out_of_range_or_not_ascii_digits_are_400(hostile_wave: WaveServer, scripted: ScriptedRegistry,
                                                             size: object) -> None:
    body = _layer_at_url(size)
    body["containerImage"] = scripted.ref()
    response = hostile_wave.request("POST", "/v1alpha2/container", json.dumps(body).encode())
    assert response.status == 400, response.body
    assert "gzipSize" in str(response.json())


def test_a_gzip_size_given_as_digits_is_accepted(hostile_wave: WaveServer, scripted: ScriptedRegistry) -> None:
    body = _layer_at_url(str(len(LAYER.gzip_bytes)))
    body["containerImage"] = scripted.ref()
    assert "containerToken" in hostile_wave.submit(body)


def test_a_range_of_non_ascii_digits_is_not_a_5xx(hostile_wave: WaveServer, token: str) -> None:
    path = f"/v2/wt/{token}/library/busybox/blobs/{CONFIG_DIGEST}"
    assert hostile_wave.request("GET", path, headers={"Range": "bytes=0-"}).status in (200, 206)
    assert hostile_wave.request("GET", path, headers={"Range": "bytes=²-"}).status < 500
