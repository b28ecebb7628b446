"""Render the build templates in ``templates/`` from data.

Templates are plain files so a reader sees the Dockerfile or Singularity definition a request produces, not
code that prints one. Placeholders are ``{{name}}`` (``$`` is left alone: Dockerfiles use it for their own
variables); a line holding only a placeholder whose value is empty disappears, so optional steps leave no
blank lines behind. A missing or unused value is a programming error and raises.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


@cache
def load_template(name: str) -> str:
    return resources.files("wave.builds").joinpath("templates", name).read_text(encoding="utf-8")


def render_text(template: str, values: dict[str, str]) -> str:
    used = set(_PLACEHOLDER.findall(template))
    missing, unused = used - values.keys(), values.keys() - used
    if missing or unused:
        raise KeyError(f"template values missing {sorted(missing)} / unused {sorted(unused)}")
    lines = []
    for line in template.splitlines():
        only = _PLACEHOLDER.fullmatch(line.strip())
        if only and not values[only[1]]:
            continue
        lines.append(_PLACEHOLDER.sub(lambda m: values[m[1]], line))
    return "\n".join(lines) + "\n"


def render(name: str, **values: str) -> str:
    """The template ``templates/<name>`` with its placeholders replaced."""
    return render_text(load_template(name), values)
