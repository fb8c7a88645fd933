"""A library's undocumented parts are used in one ``*_compat.py`` module per library, nowhere
else (docs/decisions.md, "Library internals, fenced").

Read from the source files (every import, those under ``TYPE_CHECKING`` and inside functions
too). To fence another library, add a row to ``FENCED``: the internal module prefixes and the
files allowed to import them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import ROOT

SCANNED = ("schema", "resolvers", "services", "bench", "tests")

# internal module prefix -> the files (relative to the repository) that may import it
FENCED: dict[str, frozenset[str]] = {
    # uvicorn's protocol classes, server state and cycle: documented is uvicorn.Config/run
    "uvicorn.protocols": frozenset(
        {
            "schema/http/uvicorn_compat.py",
            "bench/http_reads.py",  # measures uvicorn's own protocol against ours, in process
        }
    ),
    "uvicorn.server": frozenset({"bench/http_reads.py"}),
    # the parser uvicorn feeds; the test uses httptools' own parser as the oracle of framing
    "httptools": frozenset(
        {"schema/http/uvicorn_compat.py", "tests/schema/http/test_connections.py"}
    ),
    # redis-py's connections, their pools' internals and reply parsers
    "redis.asyncio.connection": frozenset({"services/redis/redis_compat.py"}),
    "redis.connection": frozenset({"services/redis/redis_compat.py"}),
    "redis._parsers": frozenset({"services/redis/redis_compat.py"}),
    # graphql-core's executor and utilities: documented is the top level (``from graphql
    # import ...``), which exports what the project needs of them but ``Path``
    "graphql.execution": frozenset({"schema/execution/graphql_compat.py"}),
    "graphql.pyutils": frozenset({"schema/execution/graphql_compat.py"}),
    # Strawberry's execution context, schema converter and configuration, argument
    # conversion and field types: documented is the top level (strawberry.type, Schema, Info)
    "strawberry.schema": frozenset({"schema/execution/strawberry_compat.py"}),
    "strawberry.types": frozenset({"schema/execution/strawberry_compat.py"}),
    "strawberry.execution": frozenset({"schema/execution/strawberry_compat.py"}),
    # limits' Redis bridge (its Lua scripts): documented are the strategies and storages
    "limits.aio.storage.redis": frozenset({"services/limits/limits_compat.py"}),
    # typer's parameter classes: documented is typer.Typer, Option, Argument, Exit
    "typer.core": frozenset({"schema/typer_compat.py"}),
}
COMPAT_MODULES = {
    "schema/http/uvicorn_compat.py": "uvicorn.protocols",
    "services/redis/redis_compat.py": "redis.asyncio.connection",
    "schema/execution/graphql_compat.py": "graphql.pyutils",
    "schema/execution/strawberry_compat.py": "strawberry.schema",
    "services/limits/limits_compat.py": "limits.aio.storage.redis",
    "schema/typer_compat.py": "typer.core",
}


def imports(path: Path) -> Iterator[str]:
    return imports_in(path.read_text(encoding="utf-8"))


def imports_in(source: str) -> Iterator[str]:
    """Every module ``source`` imports, by dotted name (``from a import b`` gives ``a`` and
    ``a.b``: ``b`` may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def fenced(module: str) -> str | None:
    """The ``FENCED`` prefix ``module`` falls under, if any."""
    for prefix in FENCED:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


def sources() -> dict[str, Path]:
    return {
        path.relative_to(ROOT).as_posix(): path
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


def test_library_internals_are_imported_only_in_their_compat_modules() -> None:
    outside = sorted(
        f"{name} imports {module}"
        for name, path in sources().items()
        for module in set(imports(path))
        if (prefix := fenced(module)) is not None and name not in FENCED[prefix]
    )
    assert outside == []


@pytest.mark.parametrize(("compat", "prefix"), sorted(COMPAT_MODULES.items()))
def test_each_compat_module_uses_what_it_fences(compat: str, prefix: str) -> None:
    """The scan sees the compat modules' imports: a fence that matched nothing would pass
    whatever the code did."""
    assert compat.endswith("_compat.py")
    assert any(fenced(module) == prefix for module in imports(ROOT / compat))


def test_the_fence_finds_an_import_of_an_internal() -> None:
    """The check can fail: each way of naming an internal module is found."""
    written = [
        "import uvicorn.protocols.http.httptools_impl",
        "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol",
        "from redis.asyncio import connection",
        "from redis._parsers import _AsyncHiredisParser",
        "from graphql.execution import VariableValues",
        "from graphql.pyutils import Path",
        "from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext",
        "import strawberry.types.arguments",
        "from strawberry.execution.is_awaitable import optimized_is_awaitable",
    ]
    for source in written:
        assert any(fenced(name) is not None for name in imports_in(source)), source
    inside = "def f():\n    if True:\n        from redis.connection import Connection\n"
    assert any(fenced(name) is not None for name in imports_in(inside))
    assert fenced("redis.asyncio") is None  # the documented entry points stay free
    assert fenced("uvicorn") is None
    assert fenced("graphql") is None
    assert fenced("graphql.execute") is None  # ``from graphql import execute``
    assert fenced("strawberry") is None
    assert fenced("strawberry.Schema") is None
