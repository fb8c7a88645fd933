"""Refuse a query whose size is out of proportion before any resolver runs.

Four limits, all settings, all QUERY_TOO_COMPLEX with the measured figure and the limit in
``extensions``: tokens (counted by the parser, which stops at the limit, so a huge document is
never fully parsed), cost, depth and aliases (checked on the parsed document).

Cost is the number of items a query can return, list sizes multiplied down the tree:
``books(first: 20) { similar(k: 5) { book { similar(k: 5) } } }`` costs 20 + 100 + 500.
``similar(k: 100)`` nested four deep would cost a hundred million books; it is refused in
validation with QUERY_TOO_COMPLEX, the computed cost and the limit, touching no Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

# GraphQL field name -> (argument that sizes the list or None, the size when not given)
LIST_SIZES: dict[str, tuple[str | None, int]] = {
    "books": ("first", 20),
    "people": ("first", 20),
    "similar": ("k", 5),
    "withinRadius": ("first", 10),
    "searchBooks": ("k", 10),
    "identifyFace": ("k", 3),
    "genres": (None, 300),
}


TOKENS_EXCEEDED = "Document contains more than"  # graphql-core's parse error for max_tokens


def token_limit_error(error: GraphQLError, max_tokens: int) -> GraphQLError | None:
    """The parser's 'too many tokens' error as a QUERY_TOO_COMPLEX one."""
    if TOKENS_EXCEEDED not in error.message:
        return None
    return GraphQLError(
        f"the document has more than {max_tokens:,} tokens; the limit is {max_tokens:,}",
        extensions={"code": "QUERY_TOO_COMPLEX", "maxTokens": max_tokens},
    )


class QueryLimits(SchemaExtension):
    def __init__(self, *, max_cost: int, max_depth: int, max_aliases: int, max_tokens: int):
        self.max_cost = max_cost
        self.max_depth = max_depth
        self.max_aliases = max_aliases
        self.max_tokens = max_tokens

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.max_tokens
        yield

    def on_validate(self) -> Iterator[None]:
        """Before Strawberry's own validation step, which is skipped once errors are set:
        the document is validated first (by ValidationCache, or here), so that its
        arguments mean what they say, then costed."""
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            context.pre_execution_errors = validate_document(
                context.schema._schema, document, context.validation_rules
            )
        if document is not None and not context.pre_execution_errors:
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            variables = context.variables or {}
            for definition in document.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    walk = _Walk(fragments, variables)
                    cost = walk.cost(definition.selection_set, 1, 1)
                    error = self._check(cost, walk, definition)
                    if error is not None:
                        context.pre_execution_errors = [error]
                        break
        yield

    def _check(self, cost: int, walk: _Walk, node: OperationDefinitionNode) -> GraphQLError | None:
        """Cost first: it says how much was asked for, which depth alone does not."""
        if cost > self.max_cost:
            message = f"the query could return {cost:,} items; the limit is {self.max_cost:,}"
            limits = {"cost": cost, "maxCost": self.max_cost}
        elif walk.depth > self.max_depth:
            message = f"the query is {walk.depth} levels deep; the limit is {self.max_depth}"
            limits = {"depth": walk.depth, "maxDepth": self.max_depth}
        elif walk.aliases > self.max_aliases:
            message = f"the query uses {walk.aliases} aliases; the limit is {self.max_aliases}"
            limits = {"aliases": walk.aliases, "maxAliases": self.max_aliases}
        else:
            return None
        return GraphQLError(
            message, nodes=[node], extensions={"code": "QUERY_TOO_COMPLEX", **limits}
        )


class _Walk:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]):
        self.fragments = fragments
        self.variables = variables
        self.depth = 0
        self.aliases = 0
        self._seen: set[str] = set()

    def cost(self, selections: SelectionSetNode | None, multiplier: int, depth: int) -> int:
        if selections is None:
            return 0
        self.depth = max(self.depth, depth)
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                self.aliases += selection.alias is not None
                size = self._size(selection)  # 0 for a field that is not a list
                total += multiplier * size
                total += self.cost(selection.selection_set, multiplier * max(size, 1), depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                total += self.cost(selection.selection_set, multiplier, depth)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in self._seen:
                    self._seen.add(selection.name.value)  # cycles are a validation error anyway
                    total += self.cost(fragment.selection_set, multiplier, depth)
                    self._seen.discard(selection.name.value)
        return total

    def _size(self, field: FieldNode) -> int:
        if field.name.value not in LIST_SIZES:
            return 0
        argument, default = LIST_SIZES[field.name.value]
        for given in field.arguments or ():
            if given.name.value == argument:
                value = (
                    self.variables.get(given.value.name.value)
                    if isinstance(given.value, VariableNode)
                    else value_from_ast_untyped(given.value)
                )
                return max(int(value), 0) if isinstance(value, int) else default
        return default
