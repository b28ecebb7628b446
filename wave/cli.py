"""The ``wave`` command: ``wave serve`` runs the service; the client commands talk to one (wave.client)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from wave import __version__
from wave.client import commands as client_commands

if TYPE_CHECKING:
    import asyncio

    from wave.config import Settings

log = logging.getLogger("wave")
STOP_TIMEOUT = 15.0  # seconds workers get to finish after SIGTERM before they are killed

EXAMPLES = """\
examples:
  wave serve                                     # the service on http://127.0.0.1:9090
  wave request 127.0.0.1:5000/library/busybox:latest --env GREETING=hello
  podman run --rm "$(wave request alpine:3.20 --layer ./scripts --cmd 'sh /run.sh')"
  wave build -f Dockerfile --await
  wave inspect 127.0.0.1:5000/library/busybox:multi-oci

The client commands reach the service at --server (default $WAVE_SERVER, else http://localhost:9090).
Exit codes: 0 done, 1 wave refused the request or the build failed, 2 wrong usage, 3 wave unreachable,
4 --await timed out. `wave COMMAND --help` tells more.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wave", description="wave container provisioning service and its client",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wave {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, WAVE_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default 9090, WAVE_PORT)")
    serve.add_argument("--config", help="TOML configuration file (WAVE_CONFIG)")
    serve.add_argument("--workers", type=int, help="processes serving the port (default 1, WAVE_WORKERS)")
    serve.set_defaults(run=None)
    client_commands.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        return client_commands.run(args)
    return serve(args, argv)


def serve(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    # The server's modules are imported only here: the client commands start fast and need none of them.
    from wave.config import ConfigError, load_settings
    from wave.logs import setup_logging

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers))
                 if v is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"wave: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format, settings.worker)
    if settings.workers > 1 and not settings.worker:
        return _supervise(settings, sys.argv[1:] if argv is None else argv)
    return _serve(settings)


def _new_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    if settings.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise SystemExit("wave: WAVE_EVENT_LOOP=uvloop needs uvloop: pip install 'wave[uvloop]'") from None
        return uvloop.new_event_loop()
    import asyncio

    return asyncio.new_event_loop()


def _serve(settings: Settings) -> int:
    from aiohttp import web

    from wave.app import create_app
    from wave.errors import Unavailable

    log.debug("settings: %s", settings.redacted())
    log.info("wave %s starting on http://%s:%d (public URL %s, state %s, store %s, %s loop%s)", __version__,
             settings.host, settings.port, settings.public_url, settings.state_dir,
             "redis" if settings.redis_url else "embedded", settings.event_loop,
             f", worker {settings.worker} of {settings.workers}" if settings.worker else "")
    try:
        web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None,
                    access_log=None,  # the edge writes request lines (wave.logs.AccessLines)
                    reuse_port=settings.workers > 1, loop=_new_loop(settings))
    except Unavailable as exc:
        print(f"wave: cannot start: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wave: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _supervise(settings: Settings, argv: list[str]) -> int:
    """Run ``settings.workers`` copies of this command, each told its number (``WAVE_WORKER``) and binding the
    port with SO_REUSEPORT, so the kernel spreads connections over them. They share the state store (the
    embedded SQLite file, or Redis) as replicas do. SIGTERM and SIGINT are passed on; when one worker exits,
    the others are stopped and its exit status is wave's."""
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("wave %s: starting %d workers on http://%s:%d", __version__, settings.workers, settings.host,
             settings.port)
    for number in range(1, settings.workers + 1):
        env = {**os.environ, "WAVE_WORKER": str(number), "WAVE_WORKERS": str(settings.workers)}
        children.append(subprocess.Popen([sys.executable, "-m", "wave", *argv], env=env))
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()  # a signal handler runs meanwhile; the wait goes on (PEP 475)
        except ChildProcessError:
            return status
        child = next((c for c in children if c.pid == pid), None)
        if child is None:
            continue
        child.returncode = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            log.error("worker %s exited with %s: stopping the others", pid, child.returncode)
            status = child.returncode or 1
            stop(signal.SIGTERM, None)
        _wait_all([c for c in children if c is not child])
        return status


def _wait_all(children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
