"""The package's layering, read from its source: no import cycles, and no import against the layers.

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING`` (a cycle hidden
there is still a cycle in the design). Importing ``streamer.a.b`` also runs ``streamer/a/__init__.py``,
so it counts as an import of the package ``streamer.a`` too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import streamer

PACKAGE = Path(streamer.__file__).parent
MAX_MODULE_LINES = 400  # a module one can read in one sitting (STYLE.md)

# Layers, from the bottom: what each may not import.
PROTOCOL_FORBIDDEN = ("asyncio", "starlette", "uvicorn", "av", "numpy")
BELOW_SESSION = ("streamer.engines", "streamer.audio", "streamer.text")
ABOVE_THEM = ("streamer.session", "streamer.api", "streamer.pool")
API_USERS = ("streamer.api", "streamer.cli", "streamer.server", "streamer.__main__")


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported_names(name: str, path: Path) -> Iterator[str]:
    """Every module name an import statement of ``name`` refers to (absolute, possibly outside streamer)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`


@cache
def imports() -> dict[str, frozenset[str]]:
    """Module -> the streamer modules and packages it imports (itself and its own parents left out)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        targets = set()
        for imported in _imported_names(name, path):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            while imported and imported != "streamer":
                if imported != name and not name.startswith(imported + "."):
                    targets.add(imported)
                imported = imported.rpartition(".")[0]
        graph[name] = frozenset(targets)
    return graph


@cache
def external_imports() -> dict[str, frozenset[str]]:
    """Module -> the top-level names of the libraries it imports."""
    return {
        name: frozenset(
            imported.split(".")[0]
            for imported in _imported_names(name, path)
            if imported and not imported.startswith("streamer")
        )
        for name, path in modules().items()
    }


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..config import Settings\n"
        "def late():\n    from .pipeline import submit\n    import numpy\n"
    )
    names = set(_imported_names("streamer.session.mod", source))
    assert {"streamer.config", "streamer.session.pipeline", "numpy"} <= names
    assert "streamer.config" in imports()["streamer.session.host"]  # a TYPE_CHECKING import
    assert cycles(
        {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    ) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(imports()) == []


@pytest.mark.parametrize("name", sorted(n for n in modules() if within(n, ("streamer.protocol",))))
def test_protocol_is_sans_io(name: str) -> None:
    """protocol/ and everything it imports stay free of event loops, servers, codecs and arrays."""
    graph = imports()
    reached, todo = {name}, [name]
    while todo:
        for target in graph[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    offenders = {
        module: sorted(external_imports()[module] & set(PROTOCOL_FORBIDDEN))
        for module in reached
        if external_imports()[module] & set(PROTOCOL_FORBIDDEN)
    }
    assert offenders == {}


@pytest.mark.parametrize("name", sorted(n for n in modules() if within(n, BELOW_SESSION)))
def test_engines_audio_and_text_import_nothing_above_them(name: str) -> None:
    assert sorted(t for t in imports()[name] if within(t, ABOVE_THEM)) == []


def test_the_api_is_imported_only_from_above() -> None:
    importers = sorted(
        name
        for name, targets in imports().items()
        if not within(name, API_USERS) and any(within(target, ("streamer.api",)) for target in targets)
    )
    assert importers == []


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}
