"""Just enough YAML for conda and spack environment files, without a YAML dependency at run time.

Writing: every scalar wave emits is either plain-safe or JSON-quoted (JSON strings are YAML strings).
Reading: only to name the tools in a tag (``name:``, ``dependencies:`` and ``specs:`` lists, block or flow
style); anything more exotic yields no names, which only costs the tag its readable prefix.
"""

from __future__ import annotations

import json
import re

_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=<>!,*/+@~^%-]*(?:::[A-Za-z0-9_.=<>!,*/+@~^%-]+)?$")
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$")
_ITEM = re.compile(r"^(\s*)-\s*(.*?)\s*$")


def scalar(value: str) -> str:
    """``value`` as a YAML scalar that reads back as exactly that string."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"a package name cannot span lines: {value!r}")
    return value if _PLAIN_SAFE.match(value) else json.dumps(value)


def _unquote(text: str) -> str:
    text = text.split(" #", 1)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _flow_list(text: str) -> list[str]:
    inner = text.strip()[1:-1]
    return [_unquote(item) for item in inner.split(",") if item.strip()]


def top_level_value(text: str, key: str) -> str | None:
    """The scalar of a top-level ``key: value`` line, if any."""
    for line in text.splitlines():
        match = _TOP_KEY.match(line)
        if match and match[1] == key and match[2] and not match[2].startswith(("[", "{", "|", ">")):
            return _unquote(match[2]) or None
    return None


def has_top_level_key(text: str, key: str) -> bool:
    return any((m := _TOP_KEY.match(line)) and m[1] == key for line in text.splitlines())


def list_under(text: str, path: tuple[str, ...]) -> list[str]:
    """Items of the list at ``path`` (e.g. ``("dependencies",)`` or ``("spack", "specs")``); a nested
    ``- pip:`` list contributes its items as ``pip:<item>``."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    depth, parent_indent, i = 0, -1, 0
    while i < len(lines) and depth < len(path):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        key_match = _TOP_KEY.match(line.strip())
        if indent > parent_indent and key_match and key_match[1] == path[depth]:
            depth, parent_indent = depth + 1, indent
            if depth == len(path):
                rest = key_match[2]
                if rest.startswith("["):
                    return _flow_list(rest)
                return _block_items(lines[i + 1:], indent)
        elif indent <= parent_indent:
            return []
        i += 1
    return []


def _block_items(lines: list[str], key_indent: int) -> list[str]:
    items: list[str] = []
    item_indent: int | None = None
    pip = False
    for line in lines:
        indent = len(line) - len(line.lstrip())
        match = _ITEM.match(line)
        if indent < key_indent or (indent == key_indent and not match):
            break
        if not match:
            continue
        if item_indent is None:
            item_indent = indent
        value = match[2]
        if indent == item_indent:
            pip = value.rstrip(":").strip() == "pip" and value.endswith(":")
            if not pip and value:
                items.append(_unquote(value))
        elif indent > item_indent and pip:
            items.append("pip:" + _unquote(value))
    return items
