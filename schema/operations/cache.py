"""What the executor works out once per operation (its costs, the book fields each place
shows, the plans that complete its values), kept by the operation's identity, and by the
values of the variables that work depends on.

Documents are parsed once and kept (``documents``), so a document sent again runs the very
same operation object, and its identity is the cheapest key there is. An entry holds its
operation, so that the id is not another's while the entry lives. It is bounded like the
parse cache, and by the same figures: an operation's locations keep its whole document
alive, and once the parse cache has let a document go, its operation never comes back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from graphql import (
    DirectiveNode,
    FragmentDefinitionNode,
    Node,
    OperationDefinitionNode,
    VariableNode,
    Visitor,
    visit,
)

from lookalike.schema.operations.documents import CACHE_ENTRIES, CACHE_TEXT

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    operation: OperationDefinitionNode
    chars: int  # its document's text
    value: T


class OperationCache(Generic[T]):
    """At most ``size`` operations, their documents at most ``budget`` characters in all."""

    def __init__(self, size: int = CACHE_ENTRIES, budget: int = CACHE_TEXT) -> None:
        self.size, self.budget = size, budget
        self._entries: OrderedDict[int, _Entry[T]] = OrderedDict()
        self._chars = 0

    def get(self, operation: OperationDefinitionNode, make: Callable[[], T]) -> T:
        """What was kept for this operation, or what ``make`` works out for it now."""
        key = id(operation)
        entry = self._entries.get(key)
        if entry is not None and entry.operation is operation:
            self._entries.move_to_end(key)
            return entry.value
        if entry is not None:  # another operation had this id: it is gone
            self._forget(key)
        chars = len(operation.loc.source.body) if operation.loc else 0
        entry = self._entries[key] = _Entry(operation, chars, make())
        self._chars += chars
        while len(self._entries) > 1 and (
            len(self._entries) > self.size or self._chars > self.budget
        ):
            self._forget(next(iter(self._entries)))
        return entry.value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._chars = 0

    @property
    def chars(self) -> int:
        """The characters of the documents the kept operations hold alive."""
        return self._chars

    def _forget(self, key: int) -> None:
        self._chars -= self._entries.pop(key).chars


Fragments = Mapping[str, FragmentDefinitionNode]
Inputs = Callable[[OperationDefinitionNode, Fragments], frozenset[str]]


@dataclass(frozen=True, slots=True)
class _ByValues(Generic[T]):
    inputs: tuple[str, ...]  # the variables the work depends on, sorted
    by_values: OrderedDict[Hashable, T]


class ValuesCache(Generic[T]):
    """What is worked out for an operation run with given values of the variables ``inputs``
    names (found once per operation): kept like OperationCache, ``per_operation`` sets of
    values each. A variable sent as null and one not sent are different values (only the
    first is refused where an argument is non-null)."""

    def __init__(
        self,
        inputs: Inputs,
        size: int = CACHE_ENTRIES,
        budget: int = CACHE_TEXT,
        per_operation: int = 64,
    ) -> None:
        self.inputs = inputs
        self.operations: OperationCache[_ByValues[T]] = OperationCache(size, budget)
        self.per_operation = per_operation

    def get(
        self,
        operation: OperationDefinitionNode,
        fragments: Fragments,
        variables: Mapping[str, Any],
        make: Callable[[], T],
    ) -> T:
        kept = self.operations.get(
            operation,
            lambda: _ByValues(tuple(sorted(self.inputs(operation, fragments))), OrderedDict()),
        )
        values = frozen(tuple((name, variables[name]) for name in kept.inputs if name in variables))
        if values is None:  # a value that cannot be a key: worked out every time
            return make()
        if values in kept.by_values:
            kept.by_values.move_to_end(values)
            return kept.by_values[values]
        found = kept.by_values[values] = make()
        if len(kept.by_values) > self.per_operation:
            kept.by_values.popitem(last=False)
        return found

    def clear(self) -> None:
        self.operations.clear()


def frozen(value: Any) -> Hashable | None:
    """A hashable stand-in for coerced variable values (None: something that has none)."""
    if isinstance(value, Mapping):
        items = [(k, frozen(v)) for k, v in value.items()]
        if any(v is None and value[k] is not None for k, v in items):
            return None
        return ("{", tuple(items))
    if isinstance(value, list | tuple):
        kept = [frozen(v) for v in value]
        if any(f is None and v is not None for f, v in zip(kept, value, strict=True)):
            return None
        return ("[", tuple(kept))
    if value is None or isinstance(value, str | int | float | bool | Enum):
        return ("=", type(value).__name__, value)
    return None


def variables_in(node: Node) -> set[str]:
    names: set[str] = set()

    class Names(Visitor):
        def enter_variable(self, variable: VariableNode, *_: Any) -> None:
            names.add(variable.name.value)

    visit(node, Names())
    return names


def directive_variables(operation: OperationDefinitionNode, fragments: Fragments) -> frozenset[str]:
    """The variables ``@skip``/``@include`` read: they decide which fields run."""
    found: set[str] = set()

    class Directives(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            found.update(variables_in(node))

    for node in (operation, *fragments.values()):
        visit(node, Directives())
    return frozenset(found)
