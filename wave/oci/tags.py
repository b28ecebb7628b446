"""Tag lists as the distribution spec pages them (``n``, ``last``, ``Link``), under the name the client asked for.

Why here: upstream registries differ (distribution 2.x ignores ``n`` and ``last`` and lists tags unsorted;
others page by default). Paging the upstream's answer again is harmless when upstream paged it already (a page
of a page is itself) and makes wave's answer follow the spec either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

_LINK_RE = re.compile(r"\s*<([^>]*)>(.*)")


class InvalidTagList(ValueError):
    """Upstream's tag list is not the JSON document the spec describes."""


def tag_order(tag: str) -> tuple[str, str]:
    """The spec's lexical order: case-insensitive, ties broken by the exact text so the order is total."""
    return (tag.lower(), tag)


def page_tags(tags: Iterable[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The tags after ``last`` in lexical order, at most ``n`` of them, and whether more follow."""
    ordered = sorted(set(tags), key=tag_order)
    if last is not None:
        after = tag_order(last)
        ordered = [tag for tag in ordered if tag_order(tag) > after]
    if n is None:
        return ordered, False
    return ordered[:n], len(ordered) > n


@dataclass(frozen=True)
class TagPage:
    body: bytes
    link: str | None  # the ``Link`` header (rel="next"), when a next page exists


def tag_page(upstream_body: bytes, upstream_link: str | None, name: str, n: int | None,
             last: str | None) -> TagPage:
    """Wave's answer to ``GET /v2/<name>/tags/list?n=&last=``, from upstream's answer to the same query.

    ``name`` is the repository as the client named it (``wt/<token>/<repository>``): the body's ``name`` and
    the next page's link use it, never upstream's repository."""
    try:
        document: Any = orjson.loads(upstream_body)
    except orjson.JSONDecodeError:
        raise InvalidTagList("the tag list is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidTagList("the tag list is not a JSON object")
    tags = document.get("tags")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise InvalidTagList("the tag list has no list of tags")
    page, more = page_tags(tags, n, last)
    link = None
    if n == 0:
        page, link = [], None  # n=0: an empty list and no Link, whatever upstream said
    elif more:
        assert n is not None and page
        link = f'</v2/{name}/tags/list?{urlencode({"n": n, "last": page[-1]})}>; rel="next"'
    elif upstream_link:
        link = _rewrite_link(upstream_link, name)
    return TagPage(orjson.dumps({"name": name, "tags": page}), link)


def _rewrite_link(link: str, name: str) -> str | None:
    """Upstream's next-page link (absolute or a path) as the same query on wave's path; None if it is not one."""
    match = _LINK_RE.match(link)
    if match is None:
        return None
    target, rest = urlsplit(match.group(1)), match.group(2)
    if not target.path.endswith("/tags/list"):
        return None
    return f"</v2/{name}/tags/list{'?' + target.query if target.query else ''}>{rest}"
