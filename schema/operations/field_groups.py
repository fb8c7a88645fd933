"""A selection set's fields as execution runs them: grouped by response key.

graphql-core runs a field asked twice under one response key once (their sub-selections
merged), opens each fragment once per selection set, and leaves out what ``@skip``/
``@include`` exclude. Walks that must measure what execution will do (the cost, the fields a
query shows of a book) group fields the same way, so a document whose fragments spread each
other twice over is measured in the time execution would take, not exponentially.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    VariableValues,
    get_directive_values,
)

Included = Callable[[FieldNode | FragmentSpreadNode | InlineFragmentNode], bool]


def everything(node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
    return True


def obeying(variables: VariableValues) -> Included:
    """What ``@skip``/``@include`` let run, with these values of the variables."""

    def included(node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, variables)
        return not (include is not None and include.get("if") is False)

    return included


def grouped_fields(
    selection_sets: Iterable[SelectionSetNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    included: Included = everything,
) -> dict[str, list[FieldNode]]:
    """Response key -> the field nodes that answer it, in document order."""
    fields: dict[str, list[FieldNode]] = {}
    visited: set[str] = set()

    def collect(selections: SelectionSetNode) -> None:
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                if included(selection):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if included(selection):
                    collect(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in visited and name in fragments and included(selection):
                    visited.add(name)
                    collect(fragments[name].selection_set)

    for selection_set in selection_sets:
        collect(selection_set)
    return fields


def sub_selections(nodes: Iterable[FieldNode]) -> list[SelectionSetNode]:
    """The merged sub-selection of a group of field nodes."""
    return [node.selection_set for node in nodes if node.selection_set is not None]
