"""Refuse an operation whose size is out of proportion before any resolver runs.

The limits, all settings but the nesting (graphql-core's own bound), all QUERY_TOO_COMPLEX
with the measured figure and the limit in ``extensions``:

- **length** and **tokens** of the document, checked while it is parsed (documents.py);
- **nesting**, **depth**, **aliases** and **fields** (``ShapeLimits``), which depend on the document
  alone: checked once per distinct document (``Schema.run`` keeps the verdict), before
  graphql-core validates it. Validation compares every two fields that answer under one name
  (OverlappingFieldsCanBeMerged), so a selection set repeating ``title`` a thousand times
  costs it a million comparisons before it gives up with "Validation aborted."; the field
  limits bound that work and refuse such a document in a walk of its selections.
  Introspection has its own depth limit: GraphiQL's and graphql-js's standard introspection
  query nests ``ofType`` 15 levels deep, more than any real query needs, so it is measured
  apart from the rest of the operation;
- **cost** (cost.py), which depends on argument values, so the executor (execution.py) works
  it out as the operation starts, from the values graphql-core has just coerced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DefinitionNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
OPERATION, FRAGMENT = "the operation", "a fragment no operation spreads"
ROOTS = (OPERATION, FRAGMENT)


def too_complex(message: str, node: Any = None, **figures: int) -> GraphQLError:
    return GraphQLError(message, nodes=node, extensions={"code": TOO_COMPLEX, **figures})


Fragments = Mapping[str, FragmentDefinitionNode]


# --- nesting: measured first, without recursion -------------------------------------------

# graphql-core's validation gives up ("Validation aborted.") on a document whose selection
# sets, fragments included, nest deeper than this (its guard against the interpreter's
# recursion limit, the same figure as its parser's nesting limit); a chain of fragments that
# only spread the next one reaches it without a single field. The walks below recurse once
# or twice a level: measured first, the nesting bounds their stack too.
MAX_NESTING = 200


def _levels(selections: SelectionSetNode) -> tuple[int, list[tuple[str, int]]]:
    """How many levels a selection set nests in itself, and the fragments it spreads, each
    with the level it is spread at."""
    deepest = 0
    spreads: list[tuple[str, int]] = []
    pending = [(selections, 1)]
    while pending:
        selections, level = pending.pop()
        deepest = max(deepest, level)
        for selection in selections.selections:
            if isinstance(selection, FragmentSpreadNode):
                spreads.append((selection.name.value, level))
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                pending.append((selection.selection_set, level + 1))
    return deepest, spreads


def _nesting(definitions: Sequence[DefinitionNode], fragments: Fragments) -> tuple[int, Any]:
    """The deepest nesting of the document's definitions, as graphql-core's validation counts
    it (a fragment's selection set is a level below its spread), and the definition. A spread
    closing a cycle adds nothing: validation reports cycles."""
    levels = {name: _levels(fragment.selection_set) for name, fragment in fragments.items()}
    known: dict[str, int] = {}

    def nesting(own: int, spreads: list[tuple[str, int]]) -> int:
        return max([own, *(level + known.get(name, 0) for name, level in spreads)])

    for root in levels:  # each fragment's nesting, spreads first, without recursion
        path, on_path = [(root, iter(levels[root][1]))], {root}
        while path:
            name, spreads = path[-1]
            for spread, _ in spreads:
                if spread in levels and spread not in known and spread not in on_path:
                    path.append((spread, iter(levels[spread][1])))
                    on_path.add(spread)
                    break
            else:
                path.pop()
                on_path.discard(name)
                known[name] = nesting(*levels[name])
    deepest, where = 0, None
    for definition in definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            found = nesting(*_levels(definition.selection_set))
            if found > deepest:
                deepest, where = found, definition
    return deepest, where


# --- depth and aliases ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """How deep a selection set goes (ordinary fields, introspection fields) and how many
    aliases it holds, fragments expanded as often as they are spread."""

    depth: int = 0
    introspection: int = 0
    aliases: int = 0


class _Shapes:
    """Shapes of selection sets, each fragment's computed once: a document whose fragments
    spread each other twice over, twenty times, costs twenty fragment walks, not a million."""

    def __init__(self, fragments: Fragments) -> None:
        self.fragments = fragments
        self.known: dict[str, Shape] = {}
        self.visiting: set[str] = set()

    def of(self, selections: SelectionSetNode, introspecting: bool = False) -> Shape:
        depth = introspection = aliases = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                aliases += selection.alias is not None
                name = selection.name.value
                inside = introspecting or (name.startswith("__") and name != "__typename")
                below = (
                    self.of(selection.selection_set, inside)
                    if selection.selection_set is not None
                    else Shape()
                )
                aliases += below.aliases
                if inside:  # everything under an introspection field counts as introspection
                    introspection = max(introspection, 1 + below.introspection)
                else:
                    depth = max(depth, 1 + below.depth)
                    introspection = max(introspection, below.introspection)
            else:
                below = self.inner(selection, introspecting)
                depth = max(depth, below.depth)
                introspection = max(introspection, below.introspection)
                aliases += below.aliases
        return Shape(depth, introspection, aliases)

    def inner(self, selection: Any, introspecting: bool) -> Shape:
        if isinstance(selection, InlineFragmentNode):
            return self.of(selection.selection_set, introspecting)
        name = selection.name.value
        key = f"{name}/{introspecting}"
        fragment = self.fragments.get(name)
        if fragment is None or name in self.visiting:
            return Shape()  # unknown fragment or a cycle: graphql-core's own rules say so
        if key not in self.known:
            self.visiting.add(name)
            self.known[key] = self.of(fragment.selection_set, introspecting)
            self.visiting.discard(name)
        return self.known[key]


# --- fields: as the executor collects them ---------------------------------------------------


class _TooMany(Exception):
    def __init__(self, error: GraphQLError) -> None:
        self.error = error


class _Fields:
    """The field selections of a document counted as graphql-core's executor collects them
    (and validation compares them): a selection set's fields with those of its inline
    fragments and of each fragment it spreads, a fragment once however often it is spread
    there; fields answering under one name merged, their selection sets collected together.
    So a fragment spread twice over, twenty times, is its fields once, and two ``similar``
    fields of sixty titles each make a selection set of a hundred and twenty.

    The walk stops at the first selection set over the limit, or as the total passes it:
    its work grows with the limits and the document's length, never with the expansion.
    """

    def __init__(self, fragments: Fragments, max_fields: int, max_selection: int) -> None:
        self.fragments = fragments
        self.max_fields, self.max_selection = max_fields, max_selection
        self.total = 0
        self.reached: set[str] = set()

    def walk(self, sets: list[tuple[SelectionSetNode, frozenset[str]]], place: str) -> None:
        """Count one selection set and the sets below it. ``sets``: the selection sets of
        the fields merged into it, each with the fragments it lies inside, so that a cycle of
        fragments (validation's to report) ends here."""
        below: dict[str, list[tuple[SelectionSetNode, frozenset[str]]]] = {}
        count = 0
        spread: set[str] = set()
        pending = [
            (s, within)
            for selections, within in reversed(sets)
            for s in selections.selections[::-1]
        ]
        while pending:
            selection, within = pending.pop()
            if isinstance(selection, FieldNode):
                count += 1
                if selection.selection_set is not None:
                    name = (selection.alias or selection.name).value
                    below.setdefault(name, []).append((selection.selection_set, within))
                continue
            if isinstance(selection, InlineFragmentNode):
                inner = selection.selection_set.selections
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in spread or name in within:
                    continue  # unknown, already collected here, or a cycle
                spread.add(name)
                inner = fragment.selection_set.selections
                within = within | {name}
            else:
                continue
            pending.extend((s, within) for s in reversed(inner))
        self.reached |= spread
        if count > self.max_selection:
            raise _TooMany(
                too_complex(
                    f"the selection set of {place} holds {count:,} fields (repeats and "
                    f"fragments included); the limit is {self.max_selection:,}",
                    sets[0][0],
                    selectionFields=count,
                    maxSelectionFields=self.max_selection,
                )
            )
        self.total += count
        if self.total > self.max_fields:
            raise _TooMany(
                too_complex(
                    f"the document selects more than {self.max_fields:,} fields, fragments "
                    f"expanded; the limit is {self.max_fields:,}",
                    fields=self.total,
                    maxFields=self.max_fields,
                )
            )
        for name, sets_below in below.items():
            self.walk(sets_below, name if place in ROOTS else f"{place}.{name}")


@dataclass(frozen=True, slots=True)
class ShapeLimits:
    """The limits a document's shape must keep: checked before graphql-core validates it,
    in walks whose work the limits bound."""

    max_depth: int
    max_aliases: int
    max_introspection_depth: int
    max_fields: int
    max_selection_fields: int

    def refusal(self, document: DocumentNode) -> GraphQLError | None:
        """The first limit the document passes, or None. Every operation counts, and every
        fragment no operation spreads: validation looks at each of them."""
        definitions = document.definitions
        fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
        nesting, deepest = _nesting(definitions, fragments)
        if nesting > MAX_NESTING:
            return too_complex(
                f"the document's selection sets and fragments nest {nesting} levels deep; "
                f"the limit is {MAX_NESTING}",
                deepest,
                nesting=nesting,
                maxNesting=MAX_NESTING,
            )
        shapes = _Shapes(fragments)
        fields = _Fields(fragments, self.max_fields, self.max_selection_fields)
        try:
            for operation in definitions:
                if isinstance(operation, OperationDefinitionNode):
                    error = self._shape(shapes.of(operation.selection_set), operation)
                    if error is not None:
                        return error
                    fields.walk([(operation.selection_set, frozenset())], OPERATION)
            for name, fragment in fragments.items():
                if name not in fields.reached:
                    error = self._shape(shapes.of(fragment.selection_set), fragment)
                    if error is not None:
                        return error
                    fields.walk([(fragment.selection_set, frozenset({name}))], FRAGMENT)
        except _TooMany as refused:
            return refused.error
        return None

    def _shape(self, shape: Shape, definition: Any) -> GraphQLError | None:
        if shape.depth > self.max_depth:
            return too_complex(
                f"the query is {shape.depth} levels deep; the limit is {self.max_depth}",
                definition,
                depth=shape.depth,
                maxDepth=self.max_depth,
            )
        if shape.introspection > self.max_introspection_depth:
            return too_complex(
                f"the introspection query is {shape.introspection} levels deep; the limit "
                f"is {self.max_introspection_depth}",
                definition,
                depth=shape.introspection,
                maxDepth=self.max_introspection_depth,
            )
        if shape.aliases > self.max_aliases:
            return too_complex(
                f"the query uses {shape.aliases} aliases; the limit is {self.max_aliases}",
                definition,
                aliases=shape.aliases,
                maxAliases=self.max_aliases,
            )
        return None
