"""``wave request|build|status|logs|inspect``: the client commands, their options and their output.

Every command prints what a script needs on stdout (``wave request`` only the image name, so that
``podman run "$(wave request …)"`` works) and everything for people on stderr; ``-o json|yaml`` prints the
whole answer instead. A failure is one line ``wave: …`` and a non-zero exit code (see ``wave.client.http``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from wave.client.http import (
    DEFAULT_SERVER,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    ClientError,
    WaveApi,
)
from wave.client.layers import LayerError, layer_from
from wave.config import parse_duration

DEFAULT_AWAIT = "15m"
POLL_FIRST, POLL_MAX = 0.5, 5.0  # seconds between status polls while awaiting a build
QUIET_PROGRESS = 30.0  # without a terminal, repeat the progress line this often (CI logs stay short)
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*=.*", re.DOTALL)
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

Command = Callable[[argparse.Namespace], int]

REQUEST_EXAMPLES = """\
examples:
  wave request 127.0.0.1:5000/library/busybox:latest --env GREETING=hello
  podman run --rm "$(wave request alpine:3.20 --layer ./scripts --cmd 'sh /run.sh')"
  wave request ubuntu:24.04 --platform linux/arm64 -o json
"""
BUILD_EXAMPLES = """\
examples:
  wave build -f Dockerfile --await
  wave build --conda-package samtools=1.20 --conda-package bwa --await 30m
  wave build --conda-file environment.yml --freeze --build-repo registry.example.com/me/tools --await
  wave build --spack-package fastqc --platform linux/arm64
"""
STATUS_EXAMPLES = """\
examples:
  wave status 3f0c9a1b2c4d                # a container token: PENDING, BUILDING or DONE
  wave status 5e49881e6ad74121_1 -o json  # a build id
"""
INSPECT_EXAMPLES = """\
examples:
  wave inspect 127.0.0.1:5000/library/busybox:latest
  wave inspect 127.0.0.1:5000/library/busybox:multi-oci -o yaml   # an index: its entries
"""


# --- options shared by the commands -------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("WAVE_SERVER") or DEFAULT_SERVER,
                        help=f"the wave service (default: $WAVE_SERVER, else {DEFAULT_SERVER})")
    parser.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text",
                        help="text (default: what a script needs), or the whole answer as json or yaml")


def _platform_credentials(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Seqera Platform credentials (for private registries known to Platform)")
    group.add_argument("--tower-token", default=os.environ.get("TOWER_ACCESS_TOKEN"),
                       help="access token (default: $TOWER_ACCESS_TOKEN)")
    group.add_argument("--tower-endpoint", default=os.environ.get("TOWER_API_ENDPOINT"),
                       help="Platform API URL (default: $TOWER_API_ENDPOINT, else wave's default)")
    group.add_argument("--tower-workspace-id", default=os.environ.get("TOWER_WORKSPACE_ID"),
                       help="workspace id (default: $TOWER_WORKSPACE_ID, else the personal workspace)")


def _tower_fields(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.tower_token:
        body["towerAccessToken"] = args.tower_token
    if args.tower_endpoint:
        body["towerEndpoint"] = args.tower_endpoint
    if args.tower_workspace_id:
        text = str(args.tower_workspace_id).strip()
        if not text.isdigit():
            raise ClientError(f"--tower-workspace-id (TOWER_WORKSPACE_ID) must be a number, not {text!r}", EXIT_USAGE)
        body["towerWorkspaceId"] = int(text)
    return body


def _words(option: str, value: str | None) -> list[str] | None:
    """``--cmd 'sh -c "echo hi"'`` (shell words) or ``--cmd '["sh","-c","echo hi"]'`` (a JSON array)."""
    if value is None:
        return None
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            raise ClientError(f"{option} {value!r}: a JSON array must hold strings only", EXIT_USAGE)
        return parsed
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ClientError(f"{option} {value!r}: {exc}", EXIT_USAGE) from None


def _read_text(option: str, path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ClientError(f"{option} {path}: {exc.strerror}", EXIT_USAGE) from None
    except UnicodeDecodeError:
        raise ClientError(f"{option} {path}: not a UTF-8 text file", EXIT_USAGE) from None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _emit(args: argparse.Namespace, answer: Any, text: Callable[[], str], out: TextIO = sys.stdout) -> None:
    if args.output == "json":
        out.write(json.dumps(answer, indent=2) + "\n")
    elif args.output == "yaml":
        import yaml  # only when asked for: most runs never need it

        out.write(yaml.safe_dump(answer, sort_keys=False, allow_unicode=True))
    else:
        shown = text()
        if shown:
            out.write(shown + "\n")


def _fields(answer: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {json.dumps(value) if not isinstance(value, str) else value}"
                     for key, value in answer.items())


# --- wave request ---------------------------------------------------------------------------------------


def _container_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for item in args.env:
        if not _ENV_RE.fullmatch(item):
            raise ClientError(f"--env {item!r} must be KEY=value", EXIT_USAGE)
    if args.env:
        config["env"] = list(args.env)
    entrypoint, cmd = _words("--entrypoint", args.entrypoint), _words("--cmd", args.cmd)
    if entrypoint is not None:
        config["entrypoint"] = entrypoint
    if cmd is not None:
        config["cmd"] = cmd
    if args.workdir:
        config["workingDir"] = args.workdir
    layers = []
    for item in args.layer:
        try:
            layers.append(layer_from(item).to_json())
        except LayerError as exc:
            raise ClientError(str(exc), EXIT_USAGE) from None
    if layers:
        config["layers"] = layers
    return config


def request(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"containerImage": args.image}
    config = _container_config(args)
    if config:
        body["containerConfig"] = config
    if args.platform:
        body["containerPlatform"] = args.platform
    _freeze_fields(args, body)
    body.update(_tower_fields(args))
    answer = WaveApi(args.server).post("/v1alpha2/container", body)
    if args.freeze and args.wait is not None:
        return _await(args, answer)
    _emit(args, answer, lambda: str(answer.get("targetImage", "")))
    return EXIT_OK


def _freeze_fields(args: argparse.Namespace, body: dict[str, Any]) -> None:
    if args.freeze:
        body["freeze"] = True
    if args.build_repo:
        body["buildRepository"] = args.build_repo
    if getattr(args, "cache_repo", None):
        body["cacheRepository"] = args.cache_repo


# --- wave build -----------------------------------------------------------------------------------------


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    if args.containerfile:
        return {"containerFile": _b64(_read_text("-f", args.containerfile))}
    if args.conda_package or args.conda_file:
        packages: dict[str, Any] = {"type": "CONDA"}
        if args.conda_package:
            packages["entries"] = list(args.conda_package)
        else:
            packages["envFile"] = _b64(_read_text("--conda-file", args.conda_file))
        if args.channel:
            packages["channels"] = [c for item in args.channel for c in item.split(",") if c]
        return {"packages": packages}
    if args.spack_package or args.spack_file:
        spack: dict[str, Any] = {"type": "SPACK"}
        if args.spack_package:
            spack["entries"] = list(args.spack_package)
        else:
            spack["envFile"] = _b64(_read_text("--spack-file", args.spack_file))
        return {"packages": spack}
    raise ClientError("say what to build: -f Dockerfile, --conda-package, --conda-file, --spack-package or "
                      "--spack-file", EXIT_USAGE)


def build(args: argparse.Namespace) -> int:
    body = _recipe(args)
    if args.platform:
        body["containerPlatform"] = args.platform
    if args.format != "docker":
        body["format"] = args.format
    _freeze_fields(args, body)
    body.update(_tower_fields(args))
    answer = WaveApi(args.server).post("/v1alpha2/container", body)
    if args.wait is None:
        _emit(args, answer, lambda: str(answer.get("targetImage", "")))
        return EXIT_OK
    return _await(args, answer)


def _await(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    """Poll the build until it completes; stdout gets the image only when it succeeded."""
    try:
        limit = parse_duration(args.wait)
    except ValueError as exc:
        raise ClientError(f"--await {exc}", EXIT_USAGE) from None
    api = WaveApi(args.server)
    build_id = answer.get("buildId")
    target = str(answer.get("targetImage", ""))
    if not build_id:  # nothing to wait for: the image exists (cached) or needs no build
        _emit(args, answer, lambda: target)
        return EXIT_OK
    progress = _Progress(str(build_id), sys.stderr)
    deadline = time.monotonic() + limit
    pause = POLL_FIRST
    while True:
        status = api.get(f"/v1alpha1/builds/{build_id}/status")
        if status.get("status") == "COMPLETED":
            break
        progress.show("building" if status.get("status") == "PENDING" else str(status.get("status")))
        if time.monotonic() + pause > deadline:
            progress.done()
            raise ClientError(f"build {build_id} is still running after {args.wait}; follow it with "
                              f"`wave status {build_id}`", EXIT_TIMEOUT)
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX)
    progress.done()
    full = {**answer, "buildStatus": status}
    if not status.get("succeeded"):
        reason = status.get("reason") or "the build did not complete successfully"
        if args.output != "text":
            _emit(args, full, lambda: "")
        reason = re.sub(r";? ?log: /v1alpha1/builds/\S+/logs$", "", str(reason))
        raise ClientError(f"build {build_id} failed: {reason} (log: wave logs {build_id})",
                          EXIT_FAILED)
    duration = status.get("duration")
    seconds = f" in {duration:.0f}s" if isinstance(duration, int | float) else ""
    sys.stderr.write(f"wave: build {build_id} succeeded{seconds}\n")
    _emit(args, full, lambda: target)
    return EXIT_OK


class _Progress:
    """One progress line on stderr: rewritten in place on a terminal, repeated now and then in a CI log."""

    def __init__(self, build_id: str, out: TextIO) -> None:
        self._id, self._out = build_id, out
        self._tty = out.isatty()
        self._start = time.monotonic()
        self._last_state, self._last_print = "", 0.0

    def show(self, state: str) -> None:
        elapsed = time.monotonic() - self._start
        line = f"wave: build {self._id} {state.lower()}, {elapsed:.0f}s"
        if self._tty:
            self._out.write("\r" + line + "\033[K")
            self._out.flush()
        elif state != self._last_state or elapsed - self._last_print >= QUIET_PROGRESS:
            self._out.write(line + "\n")
            self._out.flush()
            self._last_print = elapsed
        self._last_state = state

    def done(self) -> None:
        if self._tty and self._last_state:
            self._out.write("\n")
            self._out.flush()


# --- wave status, logs, inspect ---------------------------------------------------------------------------


def _checked_id(value: str, what: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ClientError(f"{value!r} is not a {what}", EXIT_USAGE)
    return value


def status(args: argparse.Namespace) -> int:
    ident = _checked_id(args.id, "container token or build id")
    api = WaveApi(args.server)
    if "_" in ident:  # build ids are <container id>_<n>; tokens are lowercase hex
        answer = api.get(f"/v1alpha1/builds/{ident}/status")
    else:
        answer = api.get(f"/v1alpha2/container/{ident}/status")
    _emit(args, answer, lambda: _fields(answer))
    failed = answer.get("succeeded") is False
    return EXIT_FAILED if failed else EXIT_OK


def logs(args: argparse.Namespace) -> int:
    build_id = _checked_id(args.build_id, "build id")
    sys.stdout.write(WaveApi(args.server).text(f"/v1alpha1/builds/{build_id}/logs"))
    return EXIT_OK


def inspect(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"containerImage": args.image}
    if args.platform:
        body["containerPlatform"] = args.platform
    body.update(_tower_fields(args))
    answer = WaveApi(args.server).post("/v1alpha1/inspect", body)
    _emit(args, answer, lambda: json.dumps(answer, indent=2))
    return EXIT_OK


# --- registration -------------------------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Add the client commands to ``wave``'s sub-command parser (``argparse._SubParsersAction``)."""
    formatter = argparse.RawDescriptionHelpFormatter

    p = commands.add_parser("request", help="ask for a container: an image, maybe with env, commands and layers",
                            description="Ask wave for an existing image, augmented on the fly; print the name "
                                        "to pull.", epilog=REQUEST_EXAMPLES, formatter_class=formatter)
    p.add_argument("image", help="the source image, e.g. docker.io/library/alpine:3.20")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set an environment variable")
    p.add_argument("--entrypoint", help="replace the entrypoint (shell words, or a JSON array)")
    p.add_argument("--cmd", help="replace the command (shell words, or a JSON array)")
    p.add_argument("--workdir", help="the working directory (an absolute path)")
    p.add_argument("--layer", action="append", default=[], metavar="DIR|FILE.tar.gz",
                   help="add a layer: a directory (its content goes to /) or a .tar.gz; repeatable")
    p.add_argument("--platform", help="the platform to augment in a multi-platform image (default linux/amd64)")
    p.add_argument("--freeze", action="store_true", help="push the result to --build-repo instead of a token")
    p.add_argument("--build-repo", help="repository for --freeze (default: the service's WAVE_BUILD_REPO)")
    p.add_argument("--await", dest="wait", nargs="?", const=DEFAULT_AWAIT, metavar="TIMEOUT",
                   help=f"with --freeze: wait for the push (default {DEFAULT_AWAIT})")
    _common(p)
    _platform_credentials(p)
    p.set_defaults(run=request)

    p = commands.add_parser("build", help="build a container from a Dockerfile, conda or spack packages",
                            description="Ask wave to build an image; print the name to pull.",
                            epilog=BUILD_EXAMPLES, formatter_class=formatter)
    recipe = p.add_mutually_exclusive_group(required=True)
    recipe.add_argument("-f", "--containerfile", metavar="DOCKERFILE", help="a Dockerfile")
    recipe.add_argument("--conda-package", action="append", metavar="PACKAGE", help="a conda package; repeatable")
    recipe.add_argument("--conda-file", metavar="FILE", help="a conda environment file")
    recipe.add_argument("--spack-package", action="append", metavar="PACKAGE", help="a spack package; repeatable")
    recipe.add_argument("--spack-file", metavar="FILE", help="a spack.yaml")
    p.add_argument("--channel", action="append", metavar="CHANNEL",
                   help="conda channel(s), comma-separated or repeated (default: the service's)")
    p.add_argument("--platform", help="linux/amd64 (default) or linux/arm64")
    p.add_argument("--format", choices=("docker", "sif"), default="docker",
                   help="docker (default) or sif, a Singularity image (needs the kubernetes launcher and --freeze)")
    p.add_argument("--freeze", action="store_true", help="push the image to --build-repo and return its real name")
    p.add_argument("--build-repo", help="where the image is pushed (default: the service's WAVE_BUILD_REPO)")
    p.add_argument("--cache-repo", help="repository for build layer caches (default: the service's WAVE_CACHE_REPO)")
    p.add_argument("--await", dest="wait", nargs="?", const=DEFAULT_AWAIT, metavar="TIMEOUT",
                   help=f"wait for the build (default {DEFAULT_AWAIT}: 90s, 15m, 1h); exit 1 with its reason "
                        "if it fails, 4 if it is still running")
    _common(p)
    _platform_credentials(p)
    p.set_defaults(run=build)

    p = commands.add_parser("status", help="status of a container request or build",
                            epilog=STATUS_EXAMPLES, formatter_class=formatter)
    p.add_argument("id", metavar="TOKEN|BUILD_ID")
    _common(p)
    p.set_defaults(run=status)

    p = commands.add_parser("logs", help="the log of a build")
    p.add_argument("build_id", metavar="BUILD_ID")
    _common(p)
    p.set_defaults(run=logs)

    p = commands.add_parser("inspect", help="an image's manifest and config (or its index), as wave sees it",
                            epilog=INSPECT_EXAMPLES, formatter_class=formatter)
    p.add_argument("image")
    p.add_argument("--platform", help="for an index: also show this platform's manifest and config")
    _common(p)
    _platform_credentials(p)
    p.set_defaults(run=inspect)


def run(args: argparse.Namespace) -> int:
    """Run the chosen command; a ClientError becomes one line on stderr and its exit code."""
    command: Command = args.run
    try:
        return command(args)
    except ClientError as exc:
        sys.stderr.write(f"wave: {exc.message}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("wave: interrupted\n")
        return 130


__all__ = ["EXIT_FAILED", "add_commands", "run"]
