"""Refuse an operation whose size is out of proportion before any resolver runs.

The limits, all settings, all QUERY_TOO_COMPLEX with the measured figure and the limit in
``extensions``:

- **length** and **tokens** of the document, checked while it is parsed (documents.py);
- **depth** and **aliases**, graphql-core validation rules here: they depend on the document
  alone, so they run once per distinct document (``Schema.run`` keeps the verdict).
  Introspection has its own depth limit: GraphiQL's and graphql-js's standard introspection
  query nests ``ofType`` 15 levels deep, more than any real query needs, so it is measured
  apart from the rest of the operation;
- **cost** (cost.py), which depends on argument values, so the executor (execution.py) works
  it out as the operation starts, from the values graphql-core has just coerced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

TOO_COMPLEX = "QUERY_TOO_COMPLEX"


def too_complex(message: str, node: Any = None, **figures: int) -> GraphQLError:
    return GraphQLError(message, nodes=node, extensions={"code": TOO_COMPLEX, **figures})


# --- depth and aliases: validation rules -------------------------------------------------------


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

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
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
                inner = self.inner(selection, introspecting)
                depth = max(depth, inner.depth)
                introspection = max(introspection, inner.introspection)
                aliases += inner.aliases
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


def limit_rules(
    *, max_depth: int, max_aliases: int, max_introspection_depth: int
) -> tuple[type[ValidationRule], ...]:
    """The depth and alias limits as a graphql-core validation rule (made once per schema)."""

    def check(shape: Shape, operation: OperationDefinitionNode) -> GraphQLError | None:
        if shape.depth > max_depth:
            return too_complex(
                f"the query is {shape.depth} levels deep; the limit is {max_depth}",
                operation,
                depth=shape.depth,
                maxDepth=max_depth,
            )
        if shape.introspection > max_introspection_depth:
            return too_complex(
                f"the introspection query is {shape.introspection} levels deep; the limit "
                f"is {max_introspection_depth}",
                operation,
                depth=shape.introspection,
                maxDepth=max_introspection_depth,
            )
        if shape.aliases > max_aliases:
            return too_complex(
                f"the query uses {shape.aliases} aliases; the limit is {max_aliases}",
                operation,
                aliases=shape.aliases,
                maxAliases=max_aliases,
            )
        return None

    class OperationLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            definitions = context.document.definitions
            fragments = {
                d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)
            }
            shapes = _Shapes(fragments)
            for operation in definitions:
                if isinstance(operation, OperationDefinitionNode):
                    error = check(shapes.of(operation.selection_set), operation)
                    if error is not None:
                        context.report_error(error)

    return (OperationLimits,)
