"""Every way a query can name a place reads the book fields it shows there.

A vector query returns only the book fields the query shows at its place
(schema/operations/selections.py). Each query here is one of a few plain queries rewritten the
ways a client can write it: an alias on a field (at every place, one at a time, and on all of
them), a book's fields split between two aliases of the same field, named and inline fragments
(with and without a type condition), arguments as variables, ``@skip``/``@include`` with
literals and variables. Its answer must be the plain query's, read through its aliases, with
no error, on the fast path and on graphql-core's own execution.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import count
from typing import Any

import pytest
from graphql import (
    FragmentDefinitionNode,
    OperationDefinitionNode,
    VariableValues,
    get_variable_values,
    parse,
)
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.schema.execution.schema import build_schema
from lookalike.schema.execution.strawberry_compat import graphql_schema
from lookalike.schema.operations.selections import book_selections
from lookalike.services.books.records import BookFields
from lookalike.services.core.settings import Settings
from tests.conftest import API_KEY, gql

# --- a small model of a selection, rendered as a client writes it ---------------------------


@dataclass(frozen=True)
class Argument:
    name: str
    literal: str  # as written in the document
    value: Any  # as a variable's JSON value
    type: str  # as a variable declares it


@dataclass(frozen=True)
class Field:
    name: str
    below: tuple[Selection, ...] = ()
    arguments: tuple[Argument, ...] = ()
    type: str | None = None  # the type it returns (a fragment's condition)
    alias: str | None = None
    directive: str = ""
    shown: bool = True  # False: its directive leaves it out
    as_variables: bool = False

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass(frozen=True)
class Spread:
    """Its selections in a fragment: named (``...F``) or inline, on ``on`` or on no type."""

    below: tuple[Selection, ...]
    on: str | None
    named: bool
    directive: str = ""
    shown: bool = True


Selection = Field | Spread


def f(name: str, *below: Selection, returns: str | None = None, **arguments: Any) -> Field:
    """A field; arguments as keyword values (strings are written quoted, lists as lists)."""
    kinds = {bool: "Boolean!", int: "Int!", float: "Float!", str: "String!"}
    made = []
    for argument, value in arguments.items():
        if isinstance(value, list):
            made.append(Argument(argument, "[" + ", ".join(f'"{v}"' for v in value) + "]",
                                 value, "[ID!]!"))  # fmt: skip
        elif isinstance(value, str):
            made.append(
                Argument(argument, f'"{value}"', value, "ID!" if argument == "id" else "String!")
            )
        else:
            made.append(Argument(argument, str(value), value, kinds[type(value)]))
    return Field(name, below, tuple(made), returns)


class Document:
    """A query's text with its variables and fragment definitions."""

    def __init__(self) -> None:
        self.variables: dict[str, Any] = {"yes": True, "no": False}
        self.declared: dict[str, str] = {"yes": "Boolean!", "no": "Boolean!"}
        self.fragments: list[str] = []
        self.names = count()

    def write(self, selections: tuple[Selection, ...]) -> str:
        return "{ " + " ".join(self.selection(s) for s in selections) + " }"

    def selection(self, node: Selection) -> str:
        if isinstance(node, Spread):
            inner = self.write(node.below)
            if node.named:
                name = f"F{next(self.names)}"
                self.fragments.append(f"fragment {name} on {node.on} {inner}")
                return f"...{name} {node.directive}"
            on = f" on {node.on}" if node.on else ""
            return f"...{on} {node.directive} {inner}"
        text = f"{node.alias}: {node.name}" if node.alias else node.name
        if node.arguments:
            written = []
            for argument in node.arguments:
                if node.as_variables:
                    variable = f"v{next(self.names)}"
                    self.variables[variable] = argument.value
                    self.declared[variable] = argument.type
                    written.append(f"{argument.name}: ${variable}")
                else:
                    written.append(f"{argument.name}: {argument.literal}")
            text += "(" + ", ".join(written) + ")"
        text += f" {node.directive}" if node.directive else ""
        return text + (" " + self.write(node.below) if node.below else "")

    def query(self, selections: tuple[Selection, ...]) -> tuple[str, dict[str, Any]]:
        body = self.write(selections) + " " + " ".join(self.fragments)
        used = {name for name in self.declared if re.search(rf"\${name}\b", body)}
        declared = ", ".join(f"${name}: {self.declared[name]}" for name in sorted(used))
        operation = f"query Q({declared}) " if used else "query Q "
        return operation + body, {name: self.variables[name] for name in used}


def shown(selections: tuple[Selection, ...]) -> Iterator[Field]:
    """The fields execution runs, fragments opened, those directives leave out left out."""
    for node in selections:
        if not node.shown:
            continue
        if isinstance(node, Spread):
            yield from shown(node.below)
        else:
            yield node


def plain(selections: tuple[Selection, ...]) -> tuple[Field, ...]:
    """The same selections without aliases, fragments or directives: one field a name,
    what each name shows merged."""
    merged: dict[str, Field] = {}
    for node in shown(selections):
        known = merged.get(node.name)
        if known is not None:
            assert known.arguments == node.arguments, "a shape this model cannot merge"
            below = known.below + node.below
        else:
            below = node.below
        merged[node.name] = Field(node.name, below, node.arguments, node.type)
    return tuple(replace(field, below=plain(field.below)) for field in merged.values())


def seen_through(data: Any, selections: tuple[Selection, ...]) -> Any:
    """The plain query's answer as the rewritten query shows it (its keys, its fields)."""
    if data is None:
        return None
    if isinstance(data, list):
        return [seen_through(item, selections) for item in data]
    answer: dict[str, Any] = {}
    for node in shown(selections):
        below = answer.get(node.key)
        inner = seen_through(data[node.name], node.below) if node.below else data[node.name]
        answer[node.key] = _merged(below, inner) if below is not None else inner
    return answer


def _merged(one: Any, other: Any) -> Any:
    if isinstance(one, list):
        return [_merged(a, b) for a, b in zip(one, other, strict=True)]
    if isinstance(one, dict):
        return {**one, **{k: _merged(one[k], v) if k in one else v for k, v in other.items()}}
    return other


# --- the plain queries, and the ways of rewriting them ---------------------------------------

BOOK_SHOWN = (f("title"), f("author"), f("yearPublished"))


def matches(*below: Selection, k: int = 2) -> Field:
    return f("similar", f("distance"), f("book", *below, returns="Book"), returns="BookMatch", k=k)


SHAPES: dict[str, tuple[Selection, ...]] = {
    "book": (f("book", *BOOK_SHOWN, returns="Book", id="9"),),
    "similar": (f("book", f("title"), matches(*BOOK_SHOWN), returns="Book", id="9"),),
    "deep": (
        f(
            "book",
            matches(f("id"), f("title"), matches(f("author"), matches(*BOOK_SHOWN))),
            returns="Book",
            id="9",
        ),
    ),
    "withinRadius": (
        f(
            "book",
            f(
                "withinRadius",
                f("totalCount"),
                f(
                    "matches",
                    f("distance"),
                    f("book", *BOOK_SHOWN, returns="Book"),
                    returns="BookMatch",
                ),
                returns="RadiusResult",
                r=0.6,
                first=3,
            ),
            returns="Book",
            id="9",
        ),
    ),
    "searchBooks": (
        f(
            "searchBooks",
            f("distance"),
            f("book", *BOOK_SHOWN, returns="Book"),
            returns="BookMatch",
            text="a haunted house",
            k=3,
        ),
    ),
    "recommend": (
        f(
            "recommend",
            f("distance"),
            f("book", *BOOK_SHOWN, returns="Book"),
            returns="BookMatch",
            liked=["9", "316"],
            k=3,
        ),
    ),
    "books": (
        f(
            "books",
            f(
                "edges",
                f("cursor"),
                f("node", f("title"), matches(f("author")), returns="Book"),
                returns="BookEdge",
            ),
            returns="BookConnection",
            first=3,
        ),
    ),
}

Rewrite = Callable[[tuple[Selection, ...]], tuple[Selection, ...]]


def each_field(
    selections: tuple[Selection, ...], change: Callable[[Field], Field]
) -> tuple[Selection, ...]:
    """Every field (at any depth) changed by ``change``, from the leaves up."""
    done: list[Selection] = []
    for node in selections:
        if isinstance(node, Spread):
            done.append(replace(node, below=each_field(node.below, change)))
        else:
            done.append(change(replace(node, below=each_field(node.below, change))))
    return tuple(done)


def places(selections: tuple[Selection, ...]) -> int:
    return sum(1 + places(n.below) for n in selections if isinstance(n, Field))


def alias_at(place: int) -> Rewrite:
    """Only the field at this place (in document order) aliased."""

    def rewrite(selections: tuple[Selection, ...]) -> tuple[Selection, ...]:
        numbers = count()

        def walk(nodes: tuple[Selection, ...]) -> tuple[Selection, ...]:
            done: list[Selection] = []
            for node in nodes:
                assert isinstance(node, Field)
                n = next(numbers)
                below = walk(node.below)
                done.append(replace(node, below=below, alias=f"at{n}" if n == place else None))
            return tuple(done)

        return walk(selections)

    return rewrite


def alias_everything(selections: tuple[Selection, ...]) -> tuple[Selection, ...]:
    return each_field(selections, lambda node: replace(node, alias=f"my{node.name.capitalize()}"))


def split_objects(selections: tuple[Selection, ...]) -> tuple[Selection, ...]:
    """A field with a selection asked twice under two aliases, its fields shared out
    (``a: book { title } b: book { author }``); aliases inside too."""

    def split(node: Field) -> list[Selection]:
        if len(node.below) < 2:
            return [node]
        half = len(node.below) // 2
        return [
            replace(node, alias=f"first{node.name.capitalize()}", below=node.below[:half]),
            replace(node, alias=f"rest{node.name.capitalize()}", below=node.below[half:]),
        ]

    def walk(nodes: tuple[Selection, ...], top: bool) -> tuple[Selection, ...]:
        done: list[Selection] = []
        for node in nodes:
            assert isinstance(node, Field)
            node = replace(node, below=walk(node.below, False))
            done.extend([node] if top else split(node))
        return tuple(done)

    return walk(selections, True)


def split_same_key(selections: tuple[Selection, ...]) -> tuple[Selection, ...]:
    """The same field twice under one key (an alias), its fields shared out: execution
    merges them."""

    def walk(nodes: tuple[Selection, ...]) -> tuple[Selection, ...]:
        done: list[Selection] = []
        for node in nodes:
            assert isinstance(node, Field)
            node = replace(node, below=walk(node.below), alias=f"same{node.name.capitalize()}")
            if len(node.below) >= 2:
                half = len(node.below) // 2
                done += [
                    replace(node, below=node.below[:half]),
                    replace(node, below=node.below[half:]),
                ]
            else:
                done.append(node)
        return tuple(done)

    return walk(selections)


def in_fragments(named: bool, condition: bool) -> Rewrite:
    """Every selection set inside a fragment (its fields aliased)."""

    def change(node: Field) -> Field:
        if not node.below:
            return replace(node, alias=f"in{node.name.capitalize()}")
        on = node.type if (named or condition) else None
        assert on is not None or not (named or condition)
        return replace(node, alias=f"in{node.name.capitalize()}",
                       below=(Spread(node.below, on, named),))  # fmt: skip

    return lambda selections: each_field(selections, change)


def with_variables(selections: tuple[Selection, ...]) -> tuple[Selection, ...]:
    return each_field(
        selections, lambda node: replace(node, as_variables=True, alias=f"v{node.name}")
    )


def directives(variables: bool) -> Rewrite:
    """Every field kept by ``@include``/``@skip`` and aliased; beside each selection set, a
    field and a fragment they leave out (a description no place shows)."""
    keep = (
        ("@include(if: $yes)", "@skip(if: $no)")
        if variables
        else ("@include(if: true)", "@skip(if: false)")
    )
    drop = (
        ("@skip(if: $yes)", "@include(if: $no)")
        if variables
        else ("@skip(if: true)", "@include(if: false)")
    )
    numbers = count()

    def change(node: Field) -> Field:
        n = next(numbers)
        node = replace(node, directive=keep[n % 2], alias=f"kept{node.name.capitalize()}")
        if node.type == "Book":
            left_out = (
                Field("description", alias="dropped", directive=drop[n % 2], shown=False),
                Spread((f("editions"),), None, False, directive=drop[(n + 1) % 2], shown=False),
            )
            node = replace(node, below=node.below + left_out)
        return node

    return lambda selections: each_field(selections, change)


REWRITES: dict[str, Rewrite] = {
    "alias-everything": alias_everything,
    "split-objects": split_objects,
    "same-key-twice": split_same_key,
    "named-fragments": in_fragments(named=True, condition=True),
    "inline-fragments-on-type": in_fragments(named=False, condition=True),
    "inline-fragments": in_fragments(named=False, condition=False),
    "variables": with_variables,
    "directives": directives(variables=False),
    "directive-variables": directives(variables=True),
}


def cases() -> Iterator[Any]:
    for shape, selections in SHAPES.items():
        for place in range(places(selections)):
            yield pytest.param(shape, alias_at(place), id=f"{shape}-alias-at-{place}")
        for name, rewrite in REWRITES.items():
            yield pytest.param(shape, rewrite, id=f"{shape}-{name}")


# --- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library_path(settings: Settings) -> Iterator[TestClient]:
    """The session's deployment with LOOKALIKE_FAST_PATH=false."""
    plain_settings = settings.model_copy(update={"fast_path": False})
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(plain_settings), headers=headers) as client:
        yield client


def answers(client: TestClient, selections: tuple[Selection, ...]) -> tuple[Any, Any]:
    """The rewritten query's data, and the plain query's seen through the rewrite."""
    text, variables = Document().query(selections)
    body = gql(client, text, **variables)
    assert "errors" not in body, (text, body["errors"])
    plain_text, plain_variables = Document().query(plain(selections))
    expected = gql(client, plain_text, **plain_variables)
    assert "errors" not in expected, (plain_text, expected["errors"])
    return body["data"], seen_through(expected["data"], selections)


@pytest.mark.parametrize(("shape", "rewrite"), list(cases()))
def test_a_rewritten_query_answers_what_the_plain_query_answers(
    api: TestClient, library_path: TestClient, shape: str, rewrite: Rewrite
) -> None:
    selections = rewrite(SHAPES[shape])
    for client in (api, library_path):
        got, expected = answers(client, selections)
        assert got == expected
        assert _leaves(got), got  # something was found and compared


def _leaves(data: Any) -> int:
    """How many values (not lists, objects or nulls) an answer holds."""
    if isinstance(data, list):
        return sum(_leaves(item) for item in data)
    if isinstance(data, dict):
        return sum(_leaves(value) for value in data.values())
    return int(data is not None)


# --- what is fetched: the round trips, the fields read ------------------------------------

NESTED = """query($first: Int!) { books(first: $first) { edges { node { title
  similar(k: 5) { distance book { title similar(k: 5) { distance book { title } } } } } } } }"""
# the same, aliased at every level, its books' fields split between two aliases
NESTED_ALIASED = """query($first: Int!) { page: books(first: $first) { e: edges { n: node {
  t: title near: similar(k: 5) { d: distance hit: book { t: title }
    again: book { nearer: similar(k: 5) { d: distance b: book { t: title } } } } } } } }"""


def round_trips(api: TestClient, query: str, **variables: object) -> int:
    body = gql(api, query, **variables)
    assert "errors" not in body, body["errors"]
    count_: int = body["extensions"]["cost"]["redisRoundTrips"]
    return count_


def test_aliased_nested_round_trips_grow_with_depth_never_with_width(api: TestClient) -> None:
    round_trips(api, NESTED_ALIASED, first=20)  # warm the connection pool
    narrow = round_trips(api, NESTED_ALIASED, first=2)
    wide = round_trips(api, NESTED_ALIASED, first=20)
    assert wide == narrow == round_trips(api, NESTED, first=20) == 3
    # and it answers what the plain query answers
    aliased = gql(api, NESTED_ALIASED, first=3)["data"]["page"]["e"]
    plain_ = gql(api, NESTED, first=3)["data"]["books"]["edges"]
    for mine, theirs in zip(aliased, plain_, strict=True):
        assert mine["n"]["t"] == theirs["node"]["title"]
        for near, similar in zip(mine["n"]["near"], theirs["node"]["similar"], strict=True):
            assert near["hit"]["t"] == similar["book"]["title"]
            assert [(m["d"], m["b"]["t"]) for m in near["again"]["nearer"]] == [
                (m["distance"], m["book"]["title"]) for m in similar["book"]["similar"]
            ]


SKIPPING = """query($more: Boolean!, $less: Boolean!) { book(id: "9") { similar(k: 2) {
  book { title description @include(if: $more) ...Extra @skip(if: $less) } } } }
fragment Extra on Book { author ...on Book @include(if: $more) { genres } }"""
SKIPPING_DOCUMENT = parse(SKIPPING)


@pytest.mark.parametrize(
    ("more", "less", "read"),
    [
        (True, False, {"title", "description", "author", "genres"}),
        (False, False, {"title", "author"}),
        (True, True, {"title", "description"}),
        (False, True, {"title"}),
    ],
)
def test_fields_skip_and_include_leave_out_are_not_read(
    settings: Settings, more: bool, less: bool, read: set[str]
) -> None:
    """The vector query reads what the query shows with these values of the variables:
    the same document sent with other values reads other fields."""
    schema = graphql_schema(build_schema(settings))
    document = SKIPPING_DOCUMENT  # one operation for every case: its map is kept per values
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    variables = get_variable_values(
        schema, operation.variable_definitions or (), {"more": more, "less": less}
    )
    assert isinstance(variables, VariableValues)
    selections = book_selections(schema, operation, fragments, variables)
    expected = BookFields(frozenset(read))
    assert selections[("book", "similar"), ("book",)] == expected
    assert selections[("book", "similar", "book"), ()] == expected


def test_one_document_sent_with_other_directive_values_reads_what_each_shows(
    api: TestClient, library_path: TestClient
) -> None:
    """The fields read are kept per values of the directives' variables: a document first
    sent showing less must not answer from a read of less when sent showing more."""
    plain_query = """{ book(id: "9") { similar(k: 2) { book {
        title description author genres } } } }"""
    for client in (api, library_path):
        every = gql(client, plain_query)["data"]["book"]["similar"]
        for more, less in [(False, True), (True, False), (False, False), (True, True)]:
            body = gql(client, SKIPPING, more=more, less=less)
            assert "errors" not in body, body["errors"]
            shown = {"title"} | ({"description"} if more else set())
            shown |= set() if less else {"author"} | ({"genres"} if more else set())
            assert body["data"]["book"]["similar"] == [
                {"book": {k: v for k, v in match["book"].items() if k in shown}} for match in every
            ]


def test_one_field_aliased_with_other_arguments_reads_what_each_alias_shows(
    api: TestClient, library_path: TestClient
) -> None:
    """Two ``similar`` under one book with other arguments are two fetches, each with the
    fields of its own books (the generated shapes merge only equal arguments)."""
    query = """{ book(id: "9") {
        a: similar(k: 2) { hit: book { t: title } }
        b: similar(k: 3, maxPerAuthor: 1) { hit: book { by: author } } } }"""
    for client in (api, library_path):
        body = gql(client, query)
        assert "errors" not in body, body["errors"]
        one = gql(client, '{ book(id: "9") { similar(k: 2) { book { title } } } }')
        two = gql(
            client, '{ book(id: "9") { similar(k: 3, maxPerAuthor: 1) { book { author } } } }'
        )
        assert body["data"]["book"]["a"] == [
            {"hit": {"t": m["book"]["title"]}} for m in one["data"]["book"]["similar"]
        ]
        assert body["data"]["book"]["b"] == [
            {"hit": {"by": m["book"]["author"]}} for m in two["data"]["book"]["similar"]
        ]
        assert len(body["data"]["book"]["b"]) == 3
