"""Conda environments: the ``conda.yml`` a build installs, and the tool names its tag shows."""

from __future__ import annotations

import re
from typing import Any

import yaml

_VERSION_SPLIT = re.compile(r"[=<>!~ ]+")


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False, allow_unicode=True)


def _load(text: str) -> dict[str, Any]:
    """The file's top-level mapping; {} for anything else (not YAML, a list, a scalar): reading it only names
    the tools in a tag, and the builder reports what is wrong with a bad file."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return document if isinstance(document, dict) else {}


def _scalars(items: Any) -> list[str]:
    return [str(i) for i in items if isinstance(i, str | int | float) and not isinstance(i, bool)] if isinstance(
        items, list) else []


def conda_yaml(entries: tuple[str, ...], channels: tuple[str, ...]) -> str:
    """A conda environment file from package entries; ``pip:<name>`` entries go in a ``pip:`` sub-list
    (and ``pip`` itself becomes a dependency, without which conda cannot install them)."""
    conda = [e for e in entries if not e.startswith("pip:")]
    pip = [e.removeprefix("pip:") for e in entries if e.startswith("pip:")]
    dependencies: list[Any] = list(conda)
    if pip:
        if not any(_name(e) == "pip" for e in conda):
            dependencies.append("pip")
        dependencies.append({"pip": pip})
    document: dict[str, Any] = {"channels": list(channels)} if channels else {}
    document["dependencies"] = dependencies
    return _dump(document)


def with_channels(env_file: str, channels: tuple[str, ...]) -> str:
    """An environment file given by the user, with the request's channels added when it names none. The
    user's text is kept as written (comments and all); the channels go in front of it."""
    text = env_file if env_file.endswith("\n") else env_file + "\n"
    if not channels or "channels" in _load(env_file):
        return text
    return _dump({"channels": list(channels)}) + text


def _name(entry: str) -> str:
    entry = entry.removeprefix("pip:")
    entry = entry.split("::", 1)[-1]
    return _VERSION_SPLIT.split(entry, 1)[0]


def tool_names(conda_file: str) -> list[str]:
    """The environment's ``name``, else one name per dependency (see :func:`entry_tools`)."""
    document = _load(conda_file)
    name = _scalars([document.get("name")])
    if name and name[0]:
        return name
    return entry_tools(_dependencies(document.get("dependencies")))


def _dependencies(items: Any) -> list[str]:
    """The dependency names, a ``- pip: [...]`` item's as ``pip:<name>``."""
    names: list[str] = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            names += ["pip:" + p for p in _scalars(item.get("pip"))]
        else:
            names += _scalars([item])
    return names


def entry_tools(entries: list[str] | tuple[str, ...]) -> list[str]:
    """``<package>[-<version>]`` per entry, channel prefixes and ``pip:`` dropped, URLs skipped, in order
    without duplicates."""
    names: list[str] = []
    for dep in entries:
        if dep.startswith(("http://", "https://")) or dep.endswith(":"):
            continue
        spec = dep.removeprefix("pip:").split("::", 1)[-1]
        parts = [p for p in _VERSION_SPLIT.split(spec) if p]
        if not parts:
            continue
        tool = f"{parts[0]}-{parts[1]}" if len(parts) > 1 else parts[0]
        if tool not in names:
            names.append(tool)
    return names
