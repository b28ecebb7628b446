"""Real upstream registries for tests: CNCF distribution (Debian `docker-registry`) on 127.0.0.1.

Why: wave is a proxy; its behaviour against Docker Hub-like upstreams (open, basic auth, Bearer token
auth) is only trustworthy when tested against a real registry, not a mock. Modelled on the lab's
start-registry.sh, reimplemented in Python so the tests own the processes' lifetimes (no pid files,
no leaks, a free port per registry).
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LAB_DIR = Path(__file__).resolve().parent / "lab"
TOKEN_SERVER = LAB_DIR / "token-server.py"
TOKEN_SERVICE = "wave-lab-registry"
TOKEN_ISSUER = "wave-lab-issuer"
START_TIMEOUT = 15.0  # seconds a registry or token server may take to answer
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL

Kind = Literal["open", "basic", "bearer"]


class RegistryStartError(RuntimeError):
    """A registry or token server did not come up; the message carries its log tail."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it; small race until it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpResponse:
    """What a plain HTTP request returned (headers lower-cased; repeated headers joined with ', ')."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def http_request(
    method: str,
    url: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    *,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> HttpResponse:
    """One plain-http request that never raises on 4xx/5xx (tests assert on statuses, urllib raises)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"plain http URL expected: {url}")
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        conn.putrequest(method, path)
        items = headers.items() if isinstance(headers, Mapping) else (headers or [])
        for k, v in items:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        hdrs: dict[str, str] = {}
        for k, v in resp.getheaders():
            key = k.lower()
            hdrs[key] = f"{hdrs[key]}, {v}" if key in hdrs else v
        return HttpResponse(resp.status, hdrs, data)
    finally:
        conn.close()


def basic_auth(username: str, password: str) -> str:
    """Value of an `Authorization: Basic ...` header."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class ManagedProcess:
    """A child process with its log file; killed for sure by stop()."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path) -> None:
        self.name = name
        self.log = log
        # The child dies with us even if pytest is SIGKILLed (PR_SET_PDEATHSIG). Only from the main
        # thread: the signal fires when the *thread* that forked exits, which would kill it early.
        if shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
            argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
        with log.open("ab") as out:  # the child keeps its own copy of the fd
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.popen.wait()


def _wait_http(proc: ManagedProcess, url: str, ok: set[int], deadline: float) -> None:
    """Poll url until it answers one of the ok statuses; fail fast if the process died."""
    last = "no answer"
    while True:
        if not proc.alive():
            raise RegistryStartError(
                f"{proc.name} exited with {proc.popen.returncode} before answering {url}:\n{proc.tail()}"
            )
        try:
            status = http_request("GET", url, timeout=1.0).status
            if status in ok:
                return
            last = f"HTTP {status}"
        except OSError as e:  # refused until it listens
            last = repr(e)
        if time.monotonic() > deadline:
            raise RegistryStartError(
                f"{proc.name} did not answer {url} within {START_TIMEOUT:.0f}s ({last}):\n{proc.tail()}"
            )
        time.sleep(0.05)


@dataclass
class Registry:
    """A running registry. `host` is what image references start with; stop() ends every process."""

    host: str
    url: str
    kind: Kind = "open"
    username: str | None = None
    password: str | None = None
    workdir: Path | None = None
    realm: str | None = None  # bearer: token endpoint, e.g. http://127.0.0.1:PORT/token
    service: str | None = None  # bearer: the `service` the token server is asked for
    _procs: list[ManagedProcess] = field(default_factory=list, repr=False)

    @property
    def creds(self) -> str | None:
        """`user:password` for skopeo --creds / --dest-creds, or None for an open registry."""
        if self.username is None or self.password is None:
            return None
        return f"{self.username}:{self.password}"

    def ref(self, name: str) -> str:
        """Full reference, e.g. ref("library/busybox:latest") -> 127.0.0.1:PORT/library/busybox:latest."""
        return f"{self.host}/{name}"

    def token(self, scope: str | Sequence[str], *, creds: bool = False) -> str:
        """A Bearer token from the token server (anonymous unless creds=True)."""
        if self.kind != "bearer" or not self.realm:
            raise ValueError(f"{self.kind} registry has no token server")
        scopes = [scope] if isinstance(scope, str) else list(scope)
        query = urllib.parse.urlencode([("service", self.service or ""), *(("scope", s) for s in scopes)])
        headers = {}
        if creds and self.username is not None and self.password is not None:
            headers["Authorization"] = basic_auth(self.username, self.password)
        resp = http_request("GET", f"{self.realm}?{query}", headers)
        if resp.status != 200:
            raise RuntimeError(f"token server answered {resp.status}: {resp.body[:200]!r}")
        data = resp.json()
        assert isinstance(data, dict)
        return str(data["token"])

    def auth_header(self, scope: str | Sequence[str] = ()) -> dict[str, str]:
        """Authorization header with full access for this registry (empty when open)."""
        if self.kind == "basic" and self.username is not None and self.password is not None:
            return {"Authorization": basic_auth(self.username, self.password)}
        if self.kind == "bearer":
            return {"Authorization": "Bearer " + self.token(scope, creds=True)}
        return {}

    def log_tail(self, lines: int = 25) -> str:
        """Last log lines of every process, for assertion messages."""
        return "\n".join(f"--- {p.name} ({p.log})\n{p.tail(lines)}" for p in self._procs)

    def stop(self) -> None:
        """Terminate (then kill after STOP_TIMEOUT) every process; idempotent."""
        while self._procs:
            self._procs.pop().stop()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _yaml_str(value: str | Path) -> str:
    """A YAML-safe scalar (JSON strings are YAML)."""
    return json.dumps(str(value))


def _write_config(workdir: Path, port: int, auth: list[str], loglevel: str = "warn") -> Path:
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log:",
        f"  level: {loglevel}",
        "  accesslog: {disabled: true}",
        "storage:",
        f"  filesystem: {{rootdirectory: {_yaml_str(storage)}}}",
        "  delete: {enabled: true}",
        "  cache: {blobdescriptor: inmemory}",
        "  maintenance: {uploadpurging: {enabled: false}}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: wave-lab-{port}",
        "  headers: {X-Content-Type-Options: [nosniff]}",
        *auth,
    ]
    conf = workdir / "config.yml"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _htpasswd(workdir: Path, username: str, password: str) -> Path:
    """bcrypt htpasswd file (distribution only accepts bcrypt)."""
    if not shutil.which("htpasswd"):
        raise RegistryStartError("htpasswd not found (apt-get install apache2-utils)")
    out = subprocess.run(
        ["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True
    ).stdout
    path = workdir / "htpasswd"
    path.write_text(out.strip() + "\n")
    return path


def _start_token_server(workdir: Path, username: str, password: str, procs: list[ManagedProcess]) -> str:
    """Start the lab's token server; returns its realm URL once it issues tokens."""
    tokdir = workdir / "token"
    tokdir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + START_TIMEOUT
    for attempt in range(3):
        port = free_port()
        argv = [
            sys.executable,
            str(TOKEN_SERVER),
            "--port",
            str(port),
            "--dir",
            str(tokdir),
            "--issuer",
            TOKEN_ISSUER,
            "--user",
            username,
            "--password",
            password,
        ]
        proc = ManagedProcess("token-server", argv, workdir / "token-server.log", workdir)
        procs.append(proc)
        realm = f"http://127.0.0.1:{port}/token"
        try:
            _wait_http(proc, f"{realm}?service={TOKEN_SERVICE}", {200}, deadline)
            return realm
        except RegistryStartError:
            if attempt < 2 and not proc.alive() and "address already in use" in proc.tail().lower():
                procs.remove(proc)
                proc.stop()
                continue  # lost the free_port race
            raise
    raise AssertionError("unreachable")


def start_registry(
    workdir: Path,
    kind: Kind = "open",
    username: str | None = None,
    password: str | None = None,
    *,
    loglevel: str = "warn",
) -> Registry:
    """Start `docker-registry serve` (plus a token server for kind="bearer") and wait until it answers.

    All state (config, storage, htpasswd, keys, logs) lives under workdir. Waits by polling GET /v2/
    (200 or 401) up to START_TIMEOUT; on failure every started process is stopped and the error carries
    the log tail.
    """
    if kind not in ("open", "basic", "bearer"):
        raise ValueError(f"unknown registry kind {kind!r}")
    if kind != "open" and (not username or not password):
        raise ValueError(f"a {kind} registry needs username and password")
    if not shutil.which("docker-registry"):
        raise RegistryStartError("docker-registry not found (apt-get install docker-registry)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[ManagedProcess] = []
    try:
        auth: list[str] = []
        realm: str | None = None
        if kind == "basic":
            assert username and password
            ht = _htpasswd(workdir, username, password)
            auth = ["auth:", f"  htpasswd: {{realm: wave-lab, path: {_yaml_str(ht)}}}"]
        elif kind == "bearer":
            assert username and password
            realm = _start_token_server(workdir, username, password, procs)
            auth = [
                "auth:",
                "  token:",
                f"    realm: {_yaml_str(realm)}",
                f"    service: {TOKEN_SERVICE}",
                f"    issuer: {TOKEN_ISSUER}",
                f"    rootcertbundle: {_yaml_str(workdir / 'token' / 'cert.pem')}",
            ]
        deadline = time.monotonic() + START_TIMEOUT
        for attempt in range(3):
            port = free_port()
            conf = _write_config(workdir, port, auth, loglevel)
            proc = ManagedProcess(
                "docker-registry", ["docker-registry", "serve", str(conf)], workdir / "registry.log", workdir
            )
            procs.append(proc)
            try:
                _wait_http(proc, f"http://127.0.0.1:{port}/v2/", {200, 401}, deadline)
                break
            except RegistryStartError:
                if attempt < 2 and not proc.alive() and "address already in use" in proc.tail().lower():
                    procs.remove(proc)
                    proc.stop()
                    continue  # lost the free_port race
                raise
        return Registry(
            host=f"127.0.0.1:{port}",
            url=f"http://127.0.0.1:{port}",
            kind=kind,
            username=username if kind != "open" else None,
            password=password if kind != "open" else None,
            workdir=workdir,
            realm=realm,
            service=TOKEN_SERVICE if kind == "bearer" else None,
            _procs=procs,
        )
    except BaseException:
        for p in reversed(procs):
            p.stop()
        raise
