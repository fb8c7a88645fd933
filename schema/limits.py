"""Refuse an operation whose size is out of proportion before any resolver runs.

Four limits, all settings, all QUERY_TOO_COMPLEX with the measured figure and the limit in
``extensions``:

- **tokens**, counted by the parser, which stops at the limit (documents.py);
- **depth** and **aliases**, graphql-core validation rules: they depend on the document alone,
  so they run once per distinct document (Strawberry's ValidationCache keeps the verdict).
  Introspection has its own depth limit: GraphiQL's and graphql-js's standard introspection
  query nests ``ofType`` 15 levels deep, more than any real query needs, so it is measured
  apart from the rest of the operation;
- **cost**, the items the operation can return plus the searches it runs, list sizes
  multiplied down the tree. It depends on argument values, so it is computed when the
  operation is about to execute, from the values graphql-core has just coerced for it:
  literals, variables sent, the operation's variable defaults and the fields' own defaults
  alike, inside fragments, skipping what ``@skip``/``@include`` leave out. Nothing has
  touched Redis yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_argument_values,
    get_directive_values,
    get_named_type,
)
from graphql.execution import ExecutionResult, VariableValues
from graphql.pyutils import AwaitableOrValue
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

TOO_COMPLEX = "QUERY_TOO_COMPLEX"


def too_complex(message: str, node: Any = None, **figures: int) -> GraphQLError:
    return GraphQLError(message, nodes=node, extensions={"code": TOO_COMPLEX, **figures})


# --- cost -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Work:
    """What one field costs per parent: the items it returns and the searches it runs."""

    items: int
    searches: int = 1


def _sized(argument: str, searches: int = 1) -> Callable[[Mapping[str, Any]], Work]:
    return lambda args: Work(items=max(int(args.get(argument) or 0), 0), searches=searches)


def _one(args: Mapping[str, Any]) -> Work:
    return Work(items=1, searches=0)  # a read by key, batched with its siblings


# "Type.field" -> its work, from the arguments it will run with. Fields not listed cost nothing
# and pass their parent's multiplier down (edges, node, book of a match...).
FIELD_WORK: dict[str, Callable[[Mapping[str, Any]], Work]] = {
    "Query.book": _one,
    "Query.books": _sized("first"),
    "Query.searchBooks": _sized("k"),
    "Query.genres": lambda args: Work(items=300, searches=300),  # a count per genre
    "Query.person": _one,
    "Query.people": _sized("first"),
    "Book.similar": _sized("k"),
    "Book.withinRadius": _sized("first"),
    "Mutation.identifyFace": _sized("k"),
    "Mutation.enrollFace": _one,
    "Mutation.deletePerson": _one,
}


class _Costing:
    """Walks the operation as execution will: fields grouped by response key (a field asked
    twice runs once), each fragment once per selection set, ``@skip``/``@include`` obeyed,
    with the argument values graphql-core coerced."""

    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.fragments = fragments
        self.variables = variables

    def included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and include.get("if") is False)

    def collect(
        self,
        selections: SelectionSetNode,
        fields: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> dict[str, list[FieldNode]]:
        for selection in selections.selections:
            if isinstance(selection, FieldNode) and self.included(selection):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode) and self.included(selection):
                self.collect(selection.selection_set, fields, visited)
            elif isinstance(selection, FragmentSpreadNode) and self.included(selection):
                name = selection.name.value
                if name not in visited:
                    visited.add(name)
                    self.collect(self.fragments[name].selection_set, fields, visited)
        return fields

    def cost(
        self, selections: list[SelectionSetNode], parent: GraphQLObjectType, multiplier: int
    ) -> int:
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in selections:
            self.collect(selection_set, fields, visited)
        return sum(self.field_cost(nodes, parent, multiplier) for nodes in fields.values())

    def field_cost(self, nodes: list[FieldNode], parent: GraphQLObjectType, multiplier: int) -> int:
        name = nodes[0].name.value
        definition = parent.fields.get(name)
        if definition is None:  # __typename and introspection: no Redis work
            return 0
        work_of = FIELD_WORK.get(f"{parent.name}.{name}")
        total, below = 0, multiplier
        if work_of is not None:
            work = work_of(get_argument_values(definition, nodes[0], self.variables))
            total = multiplier * (work.items + work.searches)
            below = multiplier * work.items
        child = get_named_type(definition.type)
        inner = [node.selection_set for node in nodes if node.selection_set is not None]
        if inner and isinstance(child, GraphQLObjectType) and below:
            total += self.cost(inner, child, below)
        return total


def operation_cost(
    operation: OperationDefinitionNode,
    root: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: VariableValues,
) -> int:
    return _Costing(fragments, variables).cost([operation.selection_set], root, 1)


def cost_limited(max_cost: int) -> type[StrawberryGraphQLCoreExecutionContext]:
    """An executor that refuses, before it runs a resolver, an operation over ``max_cost``."""

    class CostLimitedExecutor(StrawberryGraphQLCoreExecutionContext):
        def execute_operation(
            self, serially: bool | None = None
        ) -> AwaitableOrValue[ExecutionResult]:
            root = self.schema.get_root_type(self.operation.operation)
            if root is not None:
                fragments = {n: f.definition for n, f in self.fragments.items()}
                cost = operation_cost(self.operation, root, fragments, self.variable_values)
                if cost > max_cost:
                    error = too_complex(
                        f"the query could return or search {cost:,} items; the limit is "
                        f"{max_cost:,}",
                        self.operation,
                        cost=cost,
                        maxCost=max_cost,
                    )
                    return ExecutionResult(data=None, errors=[error])
            return super().execute_operation(serially)  # type: ignore[return-value]

    return CostLimitedExecutor


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
    """The depth and alias limits as a graphql-core validation rule (made once per schema, so
    that the validation cache recognises it from request to request)."""

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
