"""The executor's plans answer exactly as graphql-core's own path does.

Leaves that Strawberry serves by reading an attribute are completed without a ResolveInfo or
a resolver call (schema/execution/executor.py), and resolvers are called directly, their
arguments converted once per place (schema/execution/resolver_calls.py). A tiny schema holds
every kind of leaf, resolvers with self, parent, info, input and enum arguments, and every way
one can go wrong; the same documents run through Strawberry's standard executor and through
lookalike's, and the answers (data, error messages, paths) must be the same.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Generator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import strawberry
from strawberry.dataloader import DataLoader

from lookalike.schema.execution.executor import planned
from lookalike.schema.execution.plans import OperationPlans
from lookalike.schema.execution.resolver_calls import DirectResolver, ResolverCalls
from lookalike.schema.execution.strawberry_compat import graphql_schema
from lookalike.services.core.metrics import REGISTRY


def _planned(query: type) -> strawberry.Schema:
    """A schema run by lookalike's executor, its resolvers called directly, as in the app."""
    executor = planned(10**9)
    schema = strawberry.Schema(query=query, execution_context_class=executor)
    executor.calls = ResolverCalls.installed(schema)
    return schema


@strawberry.enum
class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class Record:
    """A services-style object with slots: a field never set is an AttributeError."""

    __slots__ = (
        "count", "friend", "id", "missing", "name", "rating", "shade", "strict", "text_count",
    )  # fmt: skip
    friend: Record | None
    id: int | str
    name: str

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)


@strawberry.input
class Decoration:
    prefix: str = ""
    shade: Shade | None = None


@strawberry.type
class Item:
    id: strawberry.ID
    name: str
    count: int | None
    rating: float | None
    shade: Shade | None
    strict: int  # non-null
    text_count: int | None  # holds text: the Int scalar refuses it
    missing: str | None  # never set on some records
    friend: Item | None  # a plain object field

    @strawberry.field
    def shout(self, times: int = 1) -> str:  # a resolver with arguments: not a plain leaf
        return self.name.upper() * times

    @strawberry.field
    def decorated(
        self,
        parent: strawberry.Parent[Record],
        info: strawberry.Info,
        style: Decoration | None = None,
        ids: list[strawberry.ID] | None = None,
    ) -> str:
        """Parent, Info, an input type, an enum inside it and a list of IDs, converted."""
        assert isinstance(style, Decoration | None)
        assert isinstance(ids, list | None)
        shade = style.shade.value if style and style.shade else "-"
        prefix = style.prefix if style else ""
        return f"{prefix}{parent.name}:{shade}:{','.join(ids or [])}:{info.path.key}"


ITEMS = [
    Record(id=1, name="a", count=3, rating=4.5, shade=Shade.DARK, strict=1, text_count=2),
    Record(id="2", name="b", count=None, rating=None, shade=None, strict=None, text_count="x"),
    Record(id=3, name="c", count=True, rating=2, shade=Shade.LIGHT, strict=7, text_count=None),
]
for item, friend in zip(ITEMS, (ITEMS[2], None, ITEMS[1]), strict=True):  # 1's strict is null
    item.friend = friend


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS  # type: ignore[return-value]

    @strawberry.field
    def first(self) -> Item | None:
        return ITEMS[0]  # type: ignore[return-value]

    @strawberry.field
    def echo(self, source: str, times: int = 1) -> str:
        """An argument named as graphql-core calls a resolver's first parameter."""
        return source * times

    @strawberry.field
    def pick(
        self,
        info: strawberry.Info,
        ids: list[strawberry.ID],
        style: Decoration | None = None,
        shade: Shade | None = None,
    ) -> list[Item]:
        """A root field called directly: an Info, a list of IDs, an input type, an enum."""
        assert info.path.key in ("pick", "p1", "p2")
        assert isinstance(style, Decoration | None)
        assert isinstance(shade, Shade | None)
        if style is not None and style.shade is Shade.DARK and shade is Shade.LIGHT:
            raise ValueError("a dark style in a light shade")
        wanted = {str(i) for i in ids}
        return [r for r in ITEMS if str(r.id) in wanted]  # type: ignore[misc]


STANDARD = strawberry.Schema(query=Query)
PLANNED = _planned(Query)

DOCUMENTS = [
    "{ items { id name count rating shade } }",
    "{ items { strict } }",  # a null in a non-null field nulls the item's parent
    "{ items { textCount } }",  # a value the scalar refuses
    "{ items { missing } }",  # an attribute never set
    "{ items { __typename id a: name b: name shout(times: 2) } }",
    "{ first { ...F } } fragment F on Item { id rating shade }",
    "query($s: Boolean!) { items { id name @include(if: $s) count @skip(if: $s) } }",
    "{ items { name friend { name friend { id shade } } } }",
    "{ items { name friend { strict friend { name } } } }",  # a null deep inside a plain tree
    # resolvers called directly: literal arguments converted once, variables once a request
    '{ items { decorated d: decorated(style: {prefix: "x", shade: DARK}, ids: [1, "2"]) } }',
    "query($p: String!) { first { decorated(style: {prefix: $p}) friend { decorated } } }",
    "query($d: Decoration) { items { decorated(style: $d) } }",
    '{ items { decorated(ids: ["1"]) shout(times: -1) } }',
    # the root's resolvers, called directly too: arguments converted at each call
    '{ pick(ids: [1, "3"], style: {prefix: "p", shade: DARK}) { id decorated } }',
    "query($d: Decoration) { p1: pick(ids: [2], style: $d) { name } p2: pick(ids: []) { id } }",
    "{ pick(ids: [1], style: {shade: DARK}, shade: LIGHT) { id } first { id } }",  # raises
    "{ pick(ids: [1], shade: DARK) { id } }",
    '{ echo(source: "s", times: 2) e: echo(source: "t") }',
]


def _answer(result: Any) -> tuple[Any, list[tuple[str, Any]]]:
    errors = [(e.message, e.path) for e in result.errors or []]
    return result.data, sorted(errors, key=str)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_plain_leaves_answer_as_graphql_core_does(document: str) -> None:
    variables = {"s": True, "p": ">", "d": {"prefix": "v", "shade": "LIGHT"}}
    standard = STANDARD.execute_sync(document, variable_values=variables)
    planned_answer = PLANNED.execute_sync(document, variable_values=variables)
    assert _answer(planned_answer) == _answer(standard)


def test_the_answers_compared_hold_values_nulls_and_errors() -> None:
    """The documents above do exercise what they claim: real values, nulls and errors."""
    answer = PLANNED.execute_sync(DOCUMENTS[0])
    assert answer.data == {
        "items": [
            {"id": "1", "name": "a", "count": 3, "rating": 4.5, "shade": "DARK"},
            {"id": "2", "name": "b", "count": None, "rating": None, "shade": None},
            {"id": "3", "name": "c", "count": 1, "rating": 2.0, "shade": "LIGHT"},
        ]
    }
    for document in DOCUMENTS[1:4]:
        assert (PLANNED.execute_sync(document)).errors, document


# Fields with resolvers inside a planned value: called for a whole level, awaited together.


@dataclass
class Loads:
    batches: list[list[tuple[int, int]]] = field(default_factory=list)
    calls: int = 0  # resolver calls


def _children(node_id: int, k: int) -> list[Tree] | ValueError:
    if (node_id, k) == (21, 2):  # one key whose load fails
        return ValueError(f"no children for {node_id}")
    return [Tree(id=node_id * 10 + n, name=f"n{node_id * 10 + n}") for n in range(1, k + 1)]


@strawberry.type
class Tree:
    id: int
    name: str

    @strawberry.field(graphql_type=list["Tree"])
    def children(self, info: strawberry.Info, k: int = 2) -> Awaitable[list[Tree]]:
        if k < 0:
            raise ValueError("k must not be negative")
        info.context["calls"] += 1
        loader: DataLoader[tuple[int, int], list[Tree]] = info.context["loader"]
        return loader.load((self.id, k))


@strawberry.type
class TreeQuery:
    @strawberry.field
    def roots(self) -> list[Tree]:
        return [Tree(id=n, name=f"n{n}") for n in (1, 2, 3)]

    @strawberry.field
    async def node(self, info: strawberry.Info, id: int) -> Tree | None:
        """A root field that waits on the loader (the root is planned too)."""
        if id < 0:
            raise ValueError("ids are not negative")
        info.context["calls"] += 1
        await info.context["loader"].load((id, 2))  # fails for 21, as children(k: 2) does
        return Tree(id=id, name=f"n{id}")


TREE_STANDARD = strawberry.Schema(query=TreeQuery)
TREE_PLANNED = _planned(TreeQuery)

TREE_DOCUMENTS = [
    "{ roots { id children(k: 2) { name children(k: 3) { id name } } } }",
    "{ roots { a: children(k: 1) { id } b: children(k: 2) { id __typename } } }",
    "{ roots { children { id children { id children { name } } } } }",  # n21 fails, deep
    "{ roots { id children(k: -1) { id } } }",  # a resolver that raises
    "query($k: Int!) { roots { ...F } } fragment F on Tree { children(k: $k) { id } }",
    # root fields that wait on a loader: one batch for the root, then a level
    "{ a: node(id: 1) { id children(k: 3) { name } } b: node(id: 2) { name } __typename }",
    "{ a: node(id: 1) { id } b: node(id: -1) { id } }",  # a root resolver that raises
    "{ a: node(id: 21) { id } b: node(id: 3) { children(k: 1) { id } } }",  # a root load fails
]


async def _run_tree(
    schema: strawberry.Schema, document: str, variables: dict[str, Any] | None = None
) -> tuple[Any, Loads]:
    loads = Loads()
    context: dict[str, Any] = {"calls": 0}

    async def load(keys: list[tuple[int, int]]) -> list[list[Tree] | ValueError]:
        loads.batches.append(list(keys))
        return [_children(node_id, k) for node_id, k in keys]

    context["loader"] = DataLoader(load_fn=load)
    variables = {"k": 2} if variables is None else variables
    result = await schema.execute(document, variable_values=variables, context_value=context)
    loads.calls = context["calls"]
    return result, loads


@pytest.mark.parametrize("document", TREE_DOCUMENTS)
def test_resolvers_in_a_plan_answer_as_graphql_core_does_with_the_same_batches(
    document: str,
) -> None:
    async def both() -> tuple[tuple[Any, Loads], tuple[Any, Loads]]:
        return await _run_tree(TREE_STANDARD, document), await _run_tree(TREE_PLANNED, document)

    (standard, standard_loads), (planned_answer, planned_loads) = anyio.run(both)
    assert _answer(planned_answer) == _answer(standard)
    # the same keys loaded, none twice (a value completed again finds its loads cached) ...
    assert sorted(k for b in planned_loads.batches for k in b) == sorted(
        k for b in standard_loads.batches for k in b
    )
    if not standard.errors:  # ... and, when nothing fails, one batch a level, as graphql-core
        assert planned_loads.batches == standard_loads.batches
        assert planned_loads.calls == standard_loads.calls
    else:  # a failure is planned once, then completed by graphql-core: at most twice the calls
        assert planned_loads.calls <= 2 * standard_loads.calls


def test_the_tree_documents_hold_levels_failures_and_errors() -> None:
    first, loads = anyio.run(_run_tree, TREE_PLANNED, TREE_DOCUMENTS[0])
    assert not first.errors
    assert len(loads.batches) == 2  # two levels of children: two batches
    assert first.data["roots"][0]["children"][1]["children"][2] == {"id": 123, "name": "n123"}
    for document in TREE_DOCUMENTS[2:4]:
        failed, _ = anyio.run(_run_tree, TREE_PLANNED, document)
        assert failed.errors, document


class Later:
    """An awaitable held in a plain attribute: graphql-core awaits such a value."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __await__(self) -> Generator[None, None, str]:
        yield from ()  # a generator that is done at once
        return self.value


@strawberry.type
class Slow:
    name: str  # holds a Later here

    @strawberry.field
    def tags(self) -> list[str]:
        return [Later("a"), "b"]  # type: ignore[list-item]


@strawberry.type
class SlowQuery:
    @strawberry.field
    def slow(self) -> list[Slow]:
        return [Slow(name=Later("real"))]  # type: ignore[arg-type]


def test_awaitables_in_plain_fields_are_awaited_as_graphql_core_does() -> None:
    document = "{ slow { name tags } }"

    async def both() -> tuple[Any, Any]:
        standard = await strawberry.Schema(query=SlowQuery).execute(document)
        planned_schema = _planned(SlowQuery)
        return standard, await planned_schema.execute(document)

    standard, planned_answer = anyio.run(both)
    assert planned_answer.data == standard.data == {"slow": [{"name": "real", "tags": ["a", "b"]}]}


class Nobody(strawberry.BasePermission):
    message = "nobody may"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Guarded:
    @strawberry.field(permission_classes=[Nobody])
    def secret(self) -> str:
        return "no"


def test_resolvers_are_called_directly_unless_strawberry_must_wrap_them() -> None:
    calls = ResolverCalls.of(PLANNED)
    assert calls is not None
    item = {f.python_name: f for f in Item.__strawberry_definition__.fields}  # type: ignore[attr-defined]
    direct = calls.resolver(item["decorated"])
    assert direct is not None
    assert (direct.parent, direct.info, direct.with_self) == ("parent", "info", True)
    assert calls.resolver(item["name"]) is None  # no resolver: read as an attribute
    guarded = Guarded.__strawberry_definition__.fields[0]  # type: ignore[attr-defined]
    assert calls.resolver(guarded) is None  # a permission class is a field extension
    root = graphql_schema(PLANNED).query_type
    assert root is not None  # graphql-core calls the root's resolvers directly too
    assert isinstance(getattr(root.fields["pick"].resolve, "__self__", None), DirectResolver)
    assert not hasattr(graphql_schema(STANDARD).query_type.fields["pick"].resolve, "__self__")  # type: ignore[union-attr]


def test_the_plans_kept_are_bounded_however_many_operations_clients_send() -> None:
    """Plans are kept per operation and per values of @skip/@include variables; past the
    bound they are let go (and made again when asked), and answers stay right."""
    executor = planned(10**9)
    schema = strawberry.Schema(query=TreeQuery, execution_context_class=executor)
    executor.calls = ResolverCalls.installed(schema)
    executor.plans = OperationPlans(max_plans=60)
    planned_before = _planned_operations()
    for n in range(40):  # each a new operation, and a @skip value of its own
        document = (
            f"query($s: Boolean!) {{ roots {{ id children(k: {n % 3 + 1}) {{ name }} "
            f"more: children @skip(if: $s) {{ id }} n{n}: name }} }}"
        )
        for skip in (True, False):
            planned_answer, _ = anyio.run(_run_tree, schema, document, {"s": skip, "k": 2})
            standard, _ = anyio.run(_run_tree, TREE_STANDARD, document, {"s": skip, "k": 2})
            assert not planned_answer.errors, planned_answer.errors  # the documents run
            assert _answer(planned_answer) == _answer(standard)
        assert executor.plans.plans <= 60
    assert _planned_operations() - planned_before == 80  # every answer was the plans' own


def _planned_operations() -> float:
    return REGISTRY.get_sample_value("lookalike_graphql_planned_operations_total") or 0.0
