"""Usage metrics endpoints (both families of the contract), behind basic auth.

Handlers only parse the query (a bad value is a 400 naming the parameter), call :class:`UsageMetrics` and
render the contract's shapes: ``{"count": N}`` or ``{"result": {<ip or e-mail>: N}}``. Parameters the
contract does not list are ignored (its own examples pass ``success`` to a pulls endpoint).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from typing import cast

from aiohttp import web

from wave import keys
from wave.api.auth import requires_account
from wave.errors import BadRequest
from wave.metrics import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    CounterKind,
    Dimension,
    RecordKind,
    UsageMetrics,
    Window,
    valid_org,
)
from wave.responses import json_response

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FLAGS = {"builds": "success", "pulls": "fusion"}  # the v1alpha1 filter of each kind

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_date(query: Mapping[str, str], name: str) -> date | None:
    value = query.get(name)
    if value is None:
        return None
    if _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise BadRequest(f"{name} must be a date as yyyy-mm-dd, not {value[:40]!r}")


def parse_flag(query: Mapping[str, str], name: str) -> bool | None:
    value = query.get(name)
    if value is None:
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"{name} must be true or false, not {value[:40]!r}")


def parse_limit(query: Mapping[str, str]) -> int:
    value = query.get("limit")
    if value is None:
        return DEFAULT_LIMIT
    if value.isascii() and value.isdigit() and int(value) <= MAX_LIMIT:
        return int(value)
    raise BadRequest(f"limit must be an integer from 0 to {MAX_LIMIT}, not {value[:40]!r}")


def parse_org(query: Mapping[str, str]) -> str | None:
    value = query.get("org")
    if value is None:
        return None
    org = value.strip().lower()
    if not valid_org(org):
        raise BadRequest(f"org must be the domain of an e-mail address (e.g. seqera.io), not {value[:40]!r}")
    return org


def _usage(request: web.Request) -> UsageMetrics:
    return request.app[keys.EVENTS]


def _counter(kind: CounterKind) -> Handler:
    @requires_account
    async def handler(request: web.Request) -> web.Response:
        day, org = parse_date(request.query, "date"), parse_org(request.query)
        if day is None and org is None:
            raise BadRequest("give at least one of date (yyyy-mm-dd) and org")
        return json_response({"count": await _usage(request).counter(kind, day, org)})

    return handler


@requires_account
async def records(request: web.Request) -> web.Response:
    """``/v1alpha1/metrics/{builds,pulls}[/{ip,user}]``."""
    kind = cast(RecordKind, request.match_info["kind"])  # the route admits only these values
    by = cast(Dimension | None, request.match_info.get("by"))
    query = request.query
    window = Window(parse_date(query, "startDate"), parse_date(query, "endDate"))
    flag = parse_flag(query, _FLAGS[kind])
    limit = parse_limit(query)
    usage = _usage(request)
    if by is None:
        return json_response({"count": await usage.total(kind, window, flag)})
    return json_response({"result": await usage.grouped(kind, by, window, flag, limit)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1alpha2/metrics/builds", _counter("builds")),
        web.get("/v1alpha2/metrics/pulls", _counter("pulls")),
        web.get("/v1alpha2/metrics/fusion/pulls", _counter("fusion")),
        web.get("/v1alpha1/metrics/{kind:builds|pulls}", records),
        web.get("/v1alpha1/metrics/{kind:builds|pulls}/{by:ip|user}", records),
    ]
