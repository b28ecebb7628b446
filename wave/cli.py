"""The ``wave`` command: ``wave serve`` runs the service; the client commands talk to one (wave.client)."""

from __future__ import annotations

import argparse
import logging
import sys

from wave import __version__
from wave.client import commands as client_commands

log = logging.getLogger("wave")

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
    serve.set_defaults(run=None)
    client_commands.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        return client_commands.run(args)
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    # The server's modules are imported only here: the client commands start fast and need none of them.
    from aiohttp import web

    from wave.app import create_app
    from wave.config import ConfigError, load_settings
    from wave.errors import Unavailable
    from wave.logs import AccessLogger, setup_logging

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"wave: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    log.debug("settings: %s", settings.redacted())
    log.info("wave %s starting on http://%s:%d (public URL %s, state %s, store %s)", __version__,
             settings.host, settings.port, settings.public_url, settings.state_dir,
             "redis" if settings.redis_url else "embedded")
    try:
        web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None,
                    access_log_class=AccessLogger, access_log=logging.getLogger("wave.access"))
    except Unavailable as exc:
        print(f"wave: cannot start: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wave: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
