"""The code's layout keeps its promises: folders by domain, imports one way, no cycles.

Read from the source files (every import, those under ``TYPE_CHECKING`` and inside functions
too), so a new module that imports upwards or closes a cycle fails here, not in review.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import ROOT

LAYERS = ("schema", "resolvers", "services")  # each may import only the ones after it
MOST_MODULES_IN_A_FOLDER = 10


def modules() -> dict[str, Path]:
    """Every module of the three layers by dotted name (``services.books.catalogue``)."""
    found: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def imported(path: Path) -> Iterator[str]:
    """The project's modules ``path`` imports, as dotted names without ``lookalike.``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("lookalike."):
                dotted = name.removeprefix("lookalike.")
                if dotted in MODULES:
                    yield dotted


GRAPH = {name: set(imported(path)) - {name} for name, path in MODULES.items()}


def domain(module: str) -> str:
    """The folder a module belongs to for the one-way rule: a layer's sub-package (its own
    sub-packages included, as ``services.books.search`` in ``services.books``), or the
    layer itself for the modules directly in it (the app, the command line)."""
    parts = module.split(".")
    package = ".".join(parts[:2])
    if len(parts) >= 2 and (ROOT / parts[0] / parts[1]).is_dir():
        return package
    return parts[0]


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` if it has any (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_layout_is_read_whole() -> None:
    """The checks below see the code: the three layers and their sub-packages."""
    assert {"schema.app", "schema.cli", "services.books.catalogue", "resolvers.loaders"} <= set(
        MODULES
    )
    assert sum(len(imports) for imports in GRAPH.values()) > 200


def test_layers_import_only_downwards() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if LAYERS.index(target.split(".")[0]) < LAYERS.index(module.split(".")[0])
    ]
    assert upward == []


def test_services_know_nothing_of_graphql_or_http() -> None:
    for module, path in MODULES.items():
        if not module.startswith("services"):
            continue
        roots: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots.add(node.module.split(".")[0])
        assert not roots & {"strawberry", "starlette", "graphql", "uvicorn"}, module


def test_modules_import_each_other_without_cycles() -> None:
    assert cycle(GRAPH) is None


def test_folders_import_each_other_without_cycles() -> None:
    """Folders form a one-way graph too: ``services.redis`` never reaches back into
    ``services.books``, ``schema.limits`` never into ``schema.execution``."""
    folders: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        for target in targets:
            if domain(target) != domain(module):
                folders[domain(module)].add(domain(target))
    assert cycle(folders) is None, cycle(folders)


@pytest.mark.parametrize("layer", LAYERS)
def test_no_folder_holds_more_than_ten_modules(layer: str) -> None:
    for folder in [ROOT / layer, *(p for p in (ROOT / layer).rglob("*") if p.is_dir())]:
        direct = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(direct) <= MOST_MODULES_IN_A_FOLDER, (folder, len(direct))


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check above can fail: a graph with a cycle is reported."""
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
