"""The architecture, checked: wave's modules import only downward through the layers, and no import circle.

Every import counts, ``TYPE_CHECKING`` and function-level ones included: a type-only import that points up
still ties a low module to a high one for every reader and every tool. The layers are the README's
architecture section; a module that does not fit one yet fails here until it is placed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wave"

# Top to bottom. A module may import its own layer and those below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("wave.__main__", "wave.cli", "wave.client")),
    ("web", ("wave.app", "wave.edge", "wave.ops", "wave.logs")),
    ("surfaces", ("wave.api", "wave.proxy.handlers", "wave.proxy.routes", "wave.proxy.streaming", "wave.responses")),
    ("keys", ("wave.keys",)),
    ("services", ("wave.containers", "wave.builds", "wave.metrics", "wave.limits", "wave.identity",
                  "wave.locations", "wave.proxy")),
    ("clients", ("wave.registry", "wave.store", "wave.storage", "wave.tokens", "wave.prometheus",
                 "wave.platform", "wave.http")),
    ("ground", ("wave.config", "wave.errors", "wave.model", "wave.addresses", "wave.redact", "wave.bounded",
                "wave.units", "wave.oci", "wave")),
]
WEB_LAYERS = {"entry points", "web", "surfaces", "keys"}  # only these may import aiohttp.web or wave.keys

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The most specific prefix decides: ``wave.proxy.handlers`` is a surface though ``wave.proxy`` is a service.
    ``wave`` itself names only the package's ``__init__``: a new module must be placed explicitly."""
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            inside = module == prefix or (prefix != "wave" and module.startswith(prefix + "."))
            if inside and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: place it in tests/test_layers.py and the README")
    return best


def rank(layer: str) -> int:
    return [name for name, _ in LAYERS].index(layer)


def imports_of(path: Path, package: str | None = None) -> Iterator[str]:
    """Every module this file imports, wherever the import stands; ``from wave import keys`` is ``wave.keys``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"


def wave_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def internal_imports() -> dict[str, set[str]]:
    """module -> the wave modules it imports (names that are attributes, not modules, are dropped)."""
    modules = wave_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {target for target in imports_of(path) if target in modules and target != name}
    return graph


def test_every_module_has_a_layer() -> None:
    for module in wave_modules():
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, targets in internal_imports().items():
        for target in sorted(targets):
            if target == "wave":
                continue
            if rank(layer_of(target)) < rank(layer_of(module)):
                wrong.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_only_the_web_layers_use_aiohttp_web_and_app_keys() -> None:
    wrong = []
    for module, path in wave_modules().items():
        if layer_of(module) in WEB_LAYERS:
            continue
        for target in imports_of(path):
            if target in ("aiohttp.web", "wave.keys") or target.startswith(("aiohttp.web.", "aiohttp.web_")):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "aiohttp.web and wave.keys belong to the surfaces and the web layer:\n" + "\n".join(wrong)


def test_no_import_circle() -> None:
    graph = {m: {t for t in ts if t != "wave"} for m, ts in internal_imports().items()}
    circles = strongly_connected(graph)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(sorted(c)) for c in circles)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components of more than one module (a circle), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [{"a", "b"}]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [{"a", "b", "c"}]),
])
def test_circle_finder_finds_circles(graph: dict[str, set[str]], expected: list[set[str]]) -> None:
    assert strongly_connected(graph) == expected


def test_type_checking_and_relative_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from wave.keys import SETTINGS\n"
                      "def f():\n    from .streaming import send\n")
    found = set(imports_of(source, package="wave.proxy"))
    assert {"wave.keys", "wave.proxy.streaming"} <= found
