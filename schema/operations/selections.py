"""Which of a book's fields a query shows, at each place a book appears, once per document.

A vector query returns the fields of the books it finds (RETURN), so it can return exactly
what the query will show: ``similar { book { title } }`` reads titles, not descriptions,
editions and inventories. The vector comes back too when a deeper field will search from the
book (``similar``, ``withinRadius``), so the next level needs no read of its own: one round
trip per level. The executor works the map out as an operation starts (fields grouped as
execution groups them, every fragment opened once per selection set, so it costs what
execution does) and keeps it per document; a resolver looks up its own position in it.

A resolver fetches the books of every response key below it at once: ``similar`` returns its
matches once, whether the query shows their book as ``book``, as ``hit: book`` or twice
(``a: book { title } b: book { author }``). So each place is kept under the path of response
keys to the field that fetches (its ``info.path``) and the field *names* from there to the
books (``book``; ``matches, book``; ``edges, node``), the fields of every alias of those
names united.
"""

from __future__ import annotations

from collections.abc import Mapping

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableValues,
    get_named_type,
)

from lookalike.schema.operations.cache import ValuesCache, directive_variables
from lookalike.schema.operations.field_groups import (
    Included,
    grouped_fields,
    obeying,
    sub_selections,
)
from lookalike.services.books.records import ALL_FIELDS, BookFields

BOOK_TYPE = "Book"
# The Book type's GraphQL fields that are stored fields, by GraphQL name.
STORED = {
    "title": "title",
    "author": "author",
    "description": "description",
    "genres": "genres",
    "editions": "editions",
    "inventory": "inventory",
    "pages": "pages",
    "yearPublished": "year_published",
    "url": "url",
    "rating": "rating",
    "ratingVotes": "rating_votes",
}
SEARCHES_FROM_BOOK = {"similar", "withinRadius"}  # Book fields that need the book's vector

NO_FIELDS = BookFields(frozenset())
Path = tuple[str, ...]  # response keys from the root, list indices left out
Names = tuple[str, ...]  # field names from a resolver's place down to its books
# the most fields between a resolver and the books it returns (``edges, node``)
MAX_BELOW = 2
BookSelections = Mapping[tuple[Path, Names], BookFields]

_known: ValuesCache[BookSelections] = ValuesCache(directive_variables)


def book_selections(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: VariableValues,
) -> BookSelections:
    """Where each field that returns books fetches them -> the fields the query shows of
    them; those ``@skip``/``@include`` leave out are not read (kept per values of their
    variables)."""

    def find() -> BookSelections:
        found: dict[tuple[Path, Names], BookFields] = {}
        root = schema.get_root_type(operation.operation)
        if root is not None:
            walk = _Walk(fragments, obeying(variables), found)
            walk([operation.selection_set], root, (), ())
        return found

    return _known.get(operation, fragments, variables.coerced, find)


class _Walk:
    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        included: Included,
        found: dict[tuple[Path, Names], BookFields],
    ) -> None:
        self.fragments, self.included, self.found = fragments, included, found

    def __call__(
        self,
        selections: list[SelectionSetNode],
        parent: GraphQLObjectType,
        path: Path,
        names: Names,
    ) -> None:
        for key, nodes in self.fields(selections).items():
            name = nodes[0].name.value
            definition = parent.fields.get(name)
            if definition is None:
                continue
            child = get_named_type(definition.type)
            inner = sub_selections(nodes)
            if not inner or not isinstance(child, GraphQLObjectType):
                continue
            here, here_names = (*path, key), (*names, name)
            if child.name == BOOK_TYPE:
                shown = _shown(self.fields(inner))
                # under every place a resolver above may fetch these books from
                for below in range(min(MAX_BELOW, len(here)) + 1):
                    place = (here[: len(here) - below], here_names[len(here_names) - below :])
                    known = self.found.get(place)
                    self.found[place] = shown if known is None else known | shown
            self(inner, child, here, here_names)

    def fields(self, selections: list[SelectionSetNode]) -> dict[str, list[FieldNode]]:
        return grouped_fields(selections, self.fragments, self.included)


def _shown(groups: Mapping[str, list[FieldNode]]) -> BookFields:
    names = {STORED[n[0].name.value] for n in groups.values() if n[0].name.value in STORED}
    vector = any(n[0].name.value in SEARCHES_FROM_BOOK for n in groups.values())
    return BookFields(frozenset(names), vector)


def book_fields(info: strawberry.Info, *below: str) -> BookFields:
    """The Book fields shown under this field, ``below`` naming the fields in between
    (``("book",)`` for a list of matches, ``("edges", "node")`` for a connection; at most
    MAX_BELOW), whatever the query's aliases for them: none when
    the query does not select the book there (``recommend { distance }`` reads no book's
    description); every field only when the operation's selections were not worked out."""
    selections: BookSelections | None = getattr(info.context, "book_selections", None)
    if selections is None:
        return ALL_FIELDS
    path = tuple(key for key in info.path.as_list() if isinstance(key, str))
    return selections.get((path, below), NO_FIELDS)
