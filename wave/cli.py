"""``wave serve``: start the service. Nothing else lives here."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from wave import __version__
from wave.app import create_app
from wave.config import ConfigError, load_settings
from wave.errors import Unavailable
from wave.logs import AccessLogger, setup_logging

log = logging.getLogger("wave")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wave", description="wave container provisioning service")
    parser.add_argument("--version", action="version", version=f"wave {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, WAVE_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default 9090, WAVE_PORT)")
    serve.add_argument("--config", help="TOML configuration file (WAVE_CONFIG)")
    args = parser.parse_args(argv)

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
