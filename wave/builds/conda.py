"""Conda environments: the ``conda.yml`` a build installs, and the tool names its tag shows."""

from __future__ import annotations

import re

import wave.builds.yamlish as yamlish

_VERSION_SPLIT = re.compile(r"[=<>!~ ]+")


def conda_yaml(entries: tuple[str, ...], channels: tuple[str, ...]) -> str:
    """A conda environment file from package entries; ``pip:<name>`` entries go in a ``pip:`` sub-list
    (and ``pip`` itself becomes a dependency, without which conda cannot install them)."""
    conda = [e for e in entries if not e.startswith("pip:")]
    pip = [e.removeprefix("pip:") for e in entries if e.startswith("pip:")]
    lines = []
    if channels:
        lines += ["channels:", *(f"- {yamlish.scalar(c)}" for c in channels)]
    lines.append("dependencies:")
    lines += [f"- {yamlish.scalar(e)}" for e in conda]
    if pip:
        if not any(_name(e) == "pip" for e in conda):
            lines.append("- pip")
        lines += ["- pip:", *(f"  - {yamlish.scalar(p)}" for p in pip)]
    return "\n".join(lines) + "\n"


def with_channels(env_file: str, channels: tuple[str, ...]) -> str:
    """An environment file given by the user, with the request's channels added when it names none."""
    if not channels or yamlish.has_top_level_key(env_file, "channels"):
        return env_file if env_file.endswith("\n") else env_file + "\n"
    head = "channels:\n" + "".join(f"- {yamlish.scalar(c)}\n" for c in channels)
    return head + (env_file if env_file.endswith("\n") else env_file + "\n")


def _name(entry: str) -> str:
    entry = entry.removeprefix("pip:")
    entry = entry.split("::", 1)[-1]
    return _VERSION_SPLIT.split(entry, 1)[0]


def tool_names(conda_file: str) -> list[str]:
    """The environment's ``name``, else one name per dependency (see :func:`entry_tools`)."""
    name = yamlish.top_level_value(conda_file, "name")
    if name:
        return [name]
    return entry_tools(yamlish.list_under(conda_file, ("dependencies",)))


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
