"""What the executor works out once per operation (its cost inputs and costs, the book fields
each place shows), kept by the operation's identity.

Documents are parsed once and kept (``documents``), so a document sent again runs the very
same operation object, and its identity is the cheapest key there is. An entry holds its
operation, so that the id is not another's while the entry lives. It is bounded like the
parse cache, and by the same figures: an operation's locations keep its whole document
alive, and once the parse cache has let a document go, its operation never comes back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from graphql import OperationDefinitionNode

from lookalike.schema.documents import CACHE_ENTRIES, CACHE_TEXT

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

    @property
    def chars(self) -> int:
        """The characters of the documents the kept operations hold alive."""
        return self._chars

    def _forget(self, key: int) -> None:
        self._chars -= self._entries.pop(key).chars
