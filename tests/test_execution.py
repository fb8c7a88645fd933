"""The executor's plain-leaf path answers exactly as graphql-core's own path does.

Leaves that Strawberry serves by reading an attribute are completed without a ResolveInfo or
a resolver call (schema/execution.py). A tiny schema holds every kind of leaf and every way
one can go wrong; the same documents run through Strawberry's standard executor and through
lookalike's, and the answers (data, error messages, paths) must be the same.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest
import strawberry

from lookalike.schema.execution import planned


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

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)


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


STANDARD = strawberry.Schema(query=Query)
PLANNED = strawberry.Schema(query=Query, execution_context_class=planned(10**9))

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
]


def _answer(result: Any) -> tuple[Any, list[tuple[str, Any]]]:
    errors = [(e.message, e.path) for e in result.errors or []]
    return result.data, sorted(errors, key=str)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_plain_leaves_answer_as_graphql_core_does(document: str) -> None:
    variables = {"s": True}
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
