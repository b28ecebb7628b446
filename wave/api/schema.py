"""The control API's JSON -> request model adapter: what the surface adds to :func:`wave.model.decode_submit`.

Real clients send fields the contract does not list (``dryRun``, ``workflowId``, ``nameStrategy``, …): those
are accepted, and the ones wave does not act on are logged at debug, so no client breaks on them.
"""

from __future__ import annotations

import logging

import msgspec

from wave.model import SURFACE_FIELDS, SubmitRequest, decode_submit

__all__ = ["SubmitRequest", "parse_submit"]

log = logging.getLogger("wave.api")

_MODEL_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(SubmitRequest)) - set(SURFACE_FIELDS)


def parse_submit(body: object, *, v2: bool, max_inline: int, client_ip: str | None = None) -> SubmitRequest:
    """Validate a ``POST /container-token`` (v1) or ``POST /v1alpha2/container`` (v2) body."""
    if isinstance(body, dict):
        for name in sorted(set(body) - _MODEL_FIELDS):
            log.debug("ignoring request field %s", name)
    return decode_submit(body, v2=v2, max_inline=max_inline, client_ip=client_ip)
