"""Tag lists paged as the distribution spec says, under the client's name (wave.oci.tags)."""

from __future__ import annotations

import orjson
import pytest

from wave.oci.tags import InvalidTagList, page_tags, tag_page

NAME = "wt/abc/library/busybox"
UPSTREAM = orjson.dumps({"name": "library/busybox", "tags": ["oci", "latest", "Multi", "multi-oci", "1.0"]})


def _page(body: bytes = UPSTREAM, link: str | None = None, n: int | None = None,
          last: str | None = None) -> tuple[dict[str, object], str | None]:
    page = tag_page(body, link, NAME, n, last)
    return orjson.loads(page.body), page.link


def test_the_name_is_the_clients_and_the_tags_are_in_lexical_order() -> None:
    body, link = _page()
    assert body == {"name": NAME, "tags": ["1.0", "latest", "Multi", "multi-oci", "oci"]}  # case-insensitive
    assert link is None


def test_n_limits_and_links_to_the_next_page_which_starts_after_last() -> None:
    body, link = _page(n=2)
    assert body["tags"] == ["1.0", "latest"]
    assert link == f'</v2/{NAME}/tags/list?n=2&last=latest>; rel="next"'
    body, link = _page(n=2, last="latest")
    assert body["tags"] == ["Multi", "multi-oci"] and link is not None
    body, link = _page(n=2, last="multi-oci")
    assert body["tags"] == ["oci"] and link is None  # the last page has no next


def test_last_alone_lists_everything_after_it() -> None:
    assert _page(last="Multi")[0]["tags"] == ["multi-oci", "oci"]


def test_n_zero_is_an_empty_list_without_a_link() -> None:
    assert _page(n=0, link='</v2/library/busybox/tags/list?n=0>; rel="next"') == ({"name": NAME, "tags": []}, None)


def test_n_equal_to_the_count_has_no_next_page() -> None:
    assert _page(n=5)[1] is None


@pytest.mark.parametrize("link", ['</v2/library/busybox/tags/list?last=b&n=2>; rel="next"',
                                  '<https://registry.example/v2/library/busybox/tags/list?last=b&n=2>; rel="next"'])
def test_an_upstream_page_keeps_its_next_link_on_waves_path(link: str) -> None:
    body = orjson.dumps({"name": "library/busybox", "tags": ["a", "b"]})
    assert _page(body, link, n=2)[1] == f'</v2/{NAME}/tags/list?last=b&n=2>; rel="next"'


def test_a_link_that_is_not_a_tag_list_is_dropped() -> None:
    assert _page(link='</v2/elsewhere>; rel="next"')[1] is None


def test_null_tags_are_an_empty_list() -> None:
    assert _page(orjson.dumps({"name": "x", "tags": None}))[0]["tags"] == []


@pytest.mark.parametrize("body", [b"not json", b"[]", orjson.dumps({"tags": "latest"}), orjson.dumps({"tags": [1]})])
def test_a_broken_upstream_list_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidTagList):
        tag_page(body, None, NAME, None, None)


def test_page_tags_of_a_page_is_the_same_page() -> None:
    page, more = page_tags(["c", "a", "b"], 2, None)
    assert (page, more) == (["a", "b"], True)
    assert page_tags(page, 2, None) == (["a", "b"], False)
