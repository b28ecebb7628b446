"""Configuration, in one place.

Settings are read once at start-up (defaults < TOML file < ``WAVE_*`` environment variables) into a
frozen object that the whole application shares. Defaults work on a laptop; production sets variables.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the setting."""


# --- parsers: each turns the text of a variable (or a TOML value) into a typed value -------------------


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``2d``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90, 90s, 15m, 12h, 2d)")
        seconds = float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from ``1048576``, ``512k``, ``10m`` or ``1g`` (binary multiples)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)i?b?\s*", str(value).lower())
        if not match:
            raise ValueError(f"not a size: {value!r} (use e.g. 10m, 512k)")
        size = int(match[1]) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match[2]]
    if size <= 0:
        raise ValueError(f"size must be positive: {value!r}")
    return size


@dataclass(frozen=True)
class Rate:
    """A limit per caller: ``count`` per ``period`` seconds, shown as configured (``250/1h``)."""

    count: int
    period: float
    text: str


def parse_rate(value: Any) -> Rate | None:
    """``N/period`` (``250/1h``, ``25/1d``, ``1000/1m``, ``10/30s``; ``h``, ``day`` and ``min`` alone mean one),
    or ``off`` (also ``""``, ``0``) for no limit."""
    if value is None or isinstance(value, Rate):
        return value
    text = str(value).strip().lower()
    if text in {"", "off", "none", "0", "false", "no"}:
        return None
    match = re.fullmatch(r"([0-9]+)\s*/\s*([0-9]*(?:\.[0-9]+)?)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?", text)
    if not match:
        raise ValueError(f"not a rate: {value!r} (use N/period such as 250/1h or 25/1d, or off)")
    unit = {"s": "s", "sec": "s", "second": "s", "m": "m", "min": "m", "minute": "m", "h": "h", "hour": "h",
            "d": "d", "day": "d"}[match[3]]
    count, period = int(match[1]), parse_duration(f"{match[2] or '1'}{unit}")
    if count <= 0:
        raise ValueError(f"a rate needs a positive count: {value!r} (or off)")
    return Rate(count, period, f"{count}/{match[2] or '1'}{unit}")


def parse_int(value: Any) -> int:
    return int(value)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_list(value: Any) -> tuple[str, ...]:
    """A comma-separated string or a TOML array."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def parse_mapping(value: Any) -> Mapping[str, str]:
    """``key=value,key2=value2`` or a TOML table."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in parse_list(value):
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {item!r}")
        out[key.strip()] = val.strip()
    return out


def parse_credentials(value: Any) -> Mapping[str, tuple[str, str]]:
    """Registry credentials: ``host=user:password,host2=user:password`` or a TOML table of
    ``{host = {username, password}}``. Passwords may contain ``:`` but not ``,`` in the variable form."""
    if isinstance(value, Mapping):
        out: dict[str, tuple[str, str]] = {}
        for host, creds in value.items():
            if isinstance(creds, Mapping):
                out[str(host)] = (str(creds.get("username", "")), str(creds.get("password", "")))
            else:
                user, sep, password = str(creds).partition(":")
                if not sep or not user:
                    raise ValueError(f"credentials for {host!r} must be user:password")
                out[str(host)] = (user, password)
        return out
    out = {}
    for host, creds in parse_mapping(value).items():
        user, sep, password = creds.partition(":")
        if not sep or not user:
            raise ValueError(f"credentials for {host!r} must be user:password")
        out[host] = (user, password)
    return out


def parse_networks(value: Any) -> tuple[str, ...]:
    """Hosts or CIDR networks; networks are validated here so a typo fails at start-up."""
    items = parse_list(value)
    for item in items:
        if "/" in item:
            ipaddress.ip_network(item, strict=False)
    return items


def parse_trusted_hosts(value: Any) -> tuple[str, ...]:
    """``WAVE_TRUSTED_HOSTS``: ``host``, ``host:port`` or CIDR entries, or ``none``; each is parsed here so a
    typo fails at start-up naming the setting."""
    from wave.addresses import NONE, parse_trust_entry  # the policy owns the syntax (imported late: no cycle)

    items = parse_list(value)
    for item in items:
        if item.lower() != NONE:
            parse_trust_entry(item)
    return items


def parse_digests(value: Any) -> tuple[str, ...]:
    """sha256 hex digests (of secrets that are never configured in clear)."""
    items = tuple(item.lower() for item in parse_list(value))
    for item in items:
        if not re.fullmatch(r"[0-9a-f]{64}", item):
            raise ValueError("each entry must be the sha256 hex of a token (64 hex digits)")
    return items


def parse_accounts(value: Any) -> Mapping[str, str]:
    """``user:<sha256 hex of password>,…``: passwords are never configured in clear text."""
    accounts = {}
    items = value.items() if isinstance(value, Mapping) else (i.partition(":")[::2] for i in parse_list(value))
    for user, digest in items:
        digest = str(digest).lower()
        if not user or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("each account must be user:<sha256 hex of the password>")
        accounts[str(user)] = digest
    return accounts


def setting(default: Any, env: str, parse: Callable[[Any], Any] | None = None, secret: bool = False,
            expected: str = "") -> Any:
    """A field of Settings read from ``env``. ``expected`` is the format shown when a secret's value is wrong
    (the value itself, and the parser's message that may quote it, are never shown)."""
    metadata = {"env": env, "parse": parse, "secret": secret, "expected": expected}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# --- the settings themselves ------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    # service
    host: str = setting("127.0.0.1", "WAVE_HOST")
    port: int = setting(9090, "WAVE_PORT", parse_int)
    server_url: str = setting("", "WAVE_SERVER_URL")  # default: http://localhost:<port>
    state_dir: Path = setting(Path("~/.local/state/wave"), "WAVE_STATE_DIR", Path)
    log_level: str = setting("INFO", "WAVE_LOG_LEVEL")
    log_format: str = setting("text", "WAVE_LOG_FORMAT")  # text | json (one JSON object a line)
    trusted_proxies: tuple[str, ...] = setting((), "WAVE_TRUSTED_PROXIES", parse_networks)
    commit_id: str = setting("unknown", "WAVE_COMMIT_ID")
    # client time budgets (slow-loris): a request head must arrive whole within this of the connection opening
    # (or of the previous answer on a kept-alive connection), a request body within the body timeout
    client_header_timeout: float = setting(20.0, "WAVE_CLIENT_HEADER_TIMEOUT", parse_duration)
    client_body_timeout: float = setting(60.0, "WAVE_CLIENT_BODY_TIMEOUT", parse_duration)

    # tokens
    token_ttl: float = setting(12 * 3600.0, "WAVE_TOKEN_TTL", parse_duration)

    # upstream registries
    registry_credentials: Mapping[str, tuple[str, str]] = setting(
        {}, "WAVE_REGISTRY_CREDENTIALS", parse_credentials, secret=True,
        expected="host=user:password[,host2=user:password] (e.g. docker.io=me:TOKEN,ghcr.io=me:TOKEN)",
    )
    insecure_registries: tuple[str, ...] = setting((), "WAVE_INSECURE_REGISTRIES", parse_list)
    upstream_connect_timeout: float = setting(10.0, "WAVE_UPSTREAM_CONNECT_TIMEOUT", parse_duration)
    upstream_read_timeout: float = setting(60.0, "WAVE_UPSTREAM_READ_TIMEOUT", parse_duration)
    upstream_retries: int = setting(3, "WAVE_UPSTREAM_RETRIES", parse_int)
    # one deadline for an upstream request with all its retries, redirects and token fetches (and the body of
    # a manifest, config or tag list); bodies must keep a minimum rate, checked every window (a streamed blob
    # end to end: whichever side trickles, upstream or client, is cut)
    upstream_deadline: float = setting(60.0, "WAVE_UPSTREAM_DEADLINE", parse_duration)
    upstream_min_rate: int = setting(10 << 10, "WAVE_UPSTREAM_MIN_RATE", parse_size)  # bytes per second
    upstream_rate_window: float = setting(10.0, "WAVE_UPSTREAM_RATE_WINDOW", parse_duration)
    upstream_connections: int = setting(256, "WAVE_UPSTREAM_CONNECTIONS", parse_int)
    upstream_connections_per_host: int = setting(32, "WAVE_UPSTREAM_CONNECTIONS_PER_HOST", parse_int)
    # how long "does not exist" and an upstream 5xx are remembered for a source check
    negative_cache_ttl: float = setting(10.0, "WAVE_NEGATIVE_CACHE_TTL", parse_duration)
    resolve_cache_ttl: float = setting(30.0, "WAVE_RESOLVE_CACHE_TTL", parse_duration)
    trusted_hosts: tuple[str, ...] = setting((), "WAVE_TRUSTED_HOSTS", parse_trusted_hosts)

    # injected layers
    max_inline_layer_size: int = setting(16 << 20, "WAVE_MAX_INLINE_LAYER_SIZE", parse_size)
    # what wave may connect to (or send clients to) although internal; unset: loopback while wave listens on
    # loopback, nothing otherwise. WAVE_LAYER_ALLOWED_HOSTS is the older name (both lists are joined).
    layer_allowed_hosts: tuple[str, ...] = setting((), "WAVE_LAYER_ALLOWED_HOSTS", parse_trusted_hosts)
    max_request_size: int = setting(32 << 20, "WAVE_MAX_REQUEST_SIZE", parse_size)
    # work budgets of one container request: its layers, what its inline layers may inflate to in total, and
    # the threads that verify inline layers (bounded, so verifying cannot take every core from the event loop)
    max_request_layers: int = setting(127, "WAVE_MAX_REQUEST_LAYERS", parse_int)
    max_request_uncompressed: int = setting(256 << 20, "WAVE_MAX_REQUEST_UNCOMPRESSED", parse_size)
    verify_workers: int = setting(max(1, (os.cpu_count() or 2) // 2), "WAVE_VERIFY_WORKERS", parse_int)

    # shared state and object storage
    redis_url: str = setting("", "WAVE_REDIS_URL", secret=True)
    storage_url: str = setting("", "WAVE_STORAGE_URL")  # default: <state_dir>/storage
    s3_endpoint: str = setting("", "WAVE_S3_ENDPOINT")
    s3_region: str = setting("", "WAVE_S3_REGION")

    # blob cache and serving through upstream failures
    blob_cache: str = setting("", "WAVE_BLOB_CACHE")  # off; a directory, or s3://bucket/prefix
    blob_cache_size: int = setting(10 << 30, "WAVE_BLOB_CACHE_SIZE", parse_size)  # cap of a directory cache
    stale_ttl: float = setting(7 * 86400.0, "WAVE_STALE_TTL", parse_duration)  # last good manifest, per repo

    # processes
    event_loop: str = setting("asyncio", "WAVE_EVENT_LOOP")  # asyncio | uvloop (the `uvloop` extra)
    workers: int = setting(1, "WAVE_WORKERS", parse_int)  # processes sharing the port (SO_REUSEPORT)
    worker: str = setting("", "WAVE_WORKER")  # set by `wave serve --workers N` for each of its processes

    # builds
    build_launcher: str = setting("local", "WAVE_BUILD_LAUNCHER")
    build_repo: str = setting("", "WAVE_BUILD_REPO")
    cache_repo: str = setting("", "WAVE_CACHE_REPO")
    build_timeout: float = setting(15 * 60.0, "WAVE_BUILD_TIMEOUT", parse_duration)
    build_workspace: Path = setting(Path(""), "WAVE_BUILD_WORKSPACE", Path)  # default: <state_dir>/builds
    local_builder: str = setting("auto", "WAVE_LOCAL_BUILDER")  # auto | buildah | docker
    build_isolation: str = setting("oci", "WAVE_BUILD_ISOLATION")  # oci (own network and PID namespace) | chroot
    docker_host: str = setting("", "WAVE_DOCKER_HOST")
    conda_image: str = setting("mambaorg/micromamba:1.5.10-noble", "WAVE_CONDA_IMAGE")
    conda_base_packages: str = setting("conda-forge::procps-ng", "WAVE_CONDA_BASE_PACKAGES")
    spack_builder_image: str = setting("spack/ubuntu-jammy:v0.22.2", "WAVE_SPACK_BUILDER_IMAGE")
    spack_runner_image: str = setting("ubuntu:22.04", "WAVE_SPACK_RUNNER_IMAGE")
    singularity_image: str = setting("quay.io/singularity/singularity:v3.11.4-slim", "WAVE_SINGULARITY_IMAGE")

    # kubernetes launcher
    k8s_namespace: str = setting("wave-build", "WAVE_K8S_NAMESPACE")
    k8s_service_account: str = setting("", "WAVE_K8S_SERVICE_ACCOUNT")
    k8s_kubeconfig: str = setting("", "WAVE_K8S_KUBECONFIG")
    k8s_buildkit_image: str = setting("moby/buildkit:v0.14.1-rootless", "WAVE_K8S_BUILDKIT_IMAGE")
    k8s_workspace_claim: str = setting("wave-build-workspace", "WAVE_K8S_WORKSPACE_CLAIM")
    k8s_registry_secret: str = setting("wave-registry-credentials", "WAVE_K8S_REGISTRY_SECRET")
    k8s_node_selectors: Mapping[str, str] = setting({}, "WAVE_K8S_NODE_SELECTORS", parse_mapping)
    k8s_cpu: str = setting("1", "WAVE_K8S_BUILD_CPU")
    k8s_memory: str = setting("2Gi", "WAVE_K8S_BUILD_MEMORY")

    # limits per caller (wave.limits): N/period or off; a pull is a container request or a manifest request
    rate_limit_anon_pulls: Rate | None = setting(None, "WAVE_RATE_LIMIT_ANON_PULLS", parse_rate)
    rate_limit_anon_builds: Rate | None = setting(None, "WAVE_RATE_LIMIT_ANON_BUILDS", parse_rate)
    rate_limit_user_pulls: Rate | None = setting(None, "WAVE_RATE_LIMIT_USER_PULLS", parse_rate)
    rate_limit_user_builds: Rate | None = setting(None, "WAVE_RATE_LIMIT_USER_BUILDS", parse_rate)
    allow_anonymous: bool = setting(True, "WAVE_ALLOW_ANONYMOUS", parse_bool)  # off: a Platform token is required

    # metrics
    metrics_accounts: Mapping[str, str] = setting({}, "WAVE_METRICS_ACCOUNTS", parse_accounts, secret=True,
                                                  expected="user:<sha256 hex of the password>[,user2:…]")
    fusion_hosts: tuple[str, ...] = setting(("fusionfs.seqera.io",), "WAVE_FUSION_HOSTS", parse_list)

    # Seqera Platform: identity, pairing, users' registry credentials
    platform_endpoints: tuple[str, ...] = setting(("https://api.cloud.seqera.io",), "WAVE_PLATFORM_ENDPOINTS",
                                                  parse_list)  # allowed to pair; "*" for any
    platform_timeout: float = setting(20.0, "WAVE_PLATFORM_TIMEOUT", parse_duration)
    secret_key: str = setting("", "WAVE_SECRET_KEY", secret=True)  # seals secrets kept in the store
    # sha256 hex of the license tokens that may pair (empty: any token of an allowed endpoint)
    pairing_tokens: tuple[str, ...] = setting((), "WAVE_PAIRING_TOKENS", parse_digests)
    ecr_endpoint: str = setting("", "WAVE_ECR_ENDPOINT")  # where ECR logins are asked (default: AWS)

    @property
    def public_url(self) -> str:
        return (self.server_url or f"http://localhost:{self.port}").rstrip("/")

    @property
    def public_authority(self) -> str:
        """``host[:port]`` of the public URL: what goes in front of ``/wt/<token>/`` in ``targetImage``."""
        return urlsplit(self.public_url).netloc

    @property
    def trusted_entries(self) -> tuple[str, ...]:
        """``WAVE_TRUSTED_HOSTS`` and its older name ``WAVE_LAYER_ALLOWED_HOSTS``, joined."""
        return (*self.trusted_hosts, *self.layer_allowed_hosts)

    @property
    def storage_location(self) -> str:
        return self.storage_url or str(self.state_dir / "storage")

    @property
    def build_dir(self) -> Path:
        return self.build_workspace if str(self.build_workspace) not in {"", "."} else self.state_dir / "builds"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to log: secrets show only whether they are set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = ("<set>" if value else "<unset>") if f.metadata.get("secret") else value
        return out




def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then the TOML file (``WAVE_CONFIG`` or ``config_file``), then the environment, then
    explicit overrides (the CLI's flags, tests). Raises ConfigError naming the setting at fault."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get("WAVE_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    for f in fields(Settings):
        parse = f.metadata["parse"] or str
        source, raw = None, None
        if f.metadata["env"] in env:
            source, raw = f.metadata["env"], env[f.metadata["env"]]
        elif f.name in file_values:
            source, raw = f"{f.name} in {path}", file_values[f.name]
        if source is None:
            continue
        try:
            values[f.name] = parse(raw)
        except (ValueError, TypeError) as exc:
            shown = "<hidden>" if f.metadata.get("secret") else repr(raw)
            expected = f.metadata.get("expected")
            detail = (f": expected {expected}" if expected else "") if f.metadata.get("secret") else f": {exc}"
            raise ConfigError(f"invalid {source} = {shown}{detail}") from None
    values.update(overrides)
    settings = Settings(**values)
    return _validated(settings)


def _validated(settings: Settings) -> Settings:
    if settings.build_launcher not in {"local", "kubernetes"}:
        raise ConfigError(f"WAVE_BUILD_LAUNCHER must be local or kubernetes, not {settings.build_launcher!r}")
    if settings.log_format not in {"text", "json"}:
        raise ConfigError(f"WAVE_LOG_FORMAT must be text or json, not {settings.log_format!r}")
    if settings.build_isolation not in {"oci", "chroot"}:
        raise ConfigError(f"WAVE_BUILD_ISOLATION must be oci or chroot, not {settings.build_isolation!r}")
    if settings.local_builder not in {"auto", "buildah", "docker"}:
        raise ConfigError(f"WAVE_LOCAL_BUILDER must be auto, buildah or docker, not {settings.local_builder!r}")
    if not 0 < settings.port < 65536:
        raise ConfigError(f"WAVE_PORT must be a TCP port, not {settings.port}")
    url = urlsplit(settings.public_url)
    if url.scheme not in {"http", "https"} or not url.netloc:
        raise ConfigError(f"WAVE_SERVER_URL must be an http(s) URL, not {settings.server_url!r}")
    if settings.redis_url and urlsplit(settings.redis_url).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError("WAVE_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    _check_storage_url(settings.storage_url)
    if settings.blob_cache.startswith("s3://") and not urlsplit(settings.blob_cache).netloc:
        raise ConfigError("WAVE_BLOB_CACHE must name a bucket: s3://bucket[/prefix]")
    if "://" in settings.blob_cache and not settings.blob_cache.startswith("s3://"):
        raise ConfigError(f"WAVE_BLOB_CACHE must be a directory or s3://bucket[/prefix], not {settings.blob_cache!r}")
    if settings.event_loop not in {"asyncio", "uvloop"}:
        raise ConfigError(f"WAVE_EVENT_LOOP must be asyncio or uvloop, not {settings.event_loop!r}")
    if not 1 <= settings.workers <= 256:
        raise ConfigError(f"WAVE_WORKERS must be between 1 and 256, not {settings.workers}")
    return replace(settings, state_dir=settings.state_dir.expanduser())



def _check_storage_url(url: str) -> None:
    """A directory, a local ``file://`` URL or ``s3://bucket[/prefix]``; anything else fails at start-up."""
    if not url or "://" not in url:
        return
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError("WAVE_STORAGE_URL must name a bucket: s3://bucket[/prefix]")
    elif parts.scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise ConfigError(f"WAVE_STORAGE_URL: a file:// URL must be local, not on host {parts.netloc!r}")
    else:
        raise ConfigError(f"WAVE_STORAGE_URL {url!r} is not supported: use s3://bucket[/prefix], file:// "
                          "or a directory")
