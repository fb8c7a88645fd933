"""Relay connections, one generic shape for every list that pages with cursors.

Strawberry names a specialised generic after its argument: ``Connection[Book]`` is
``BookConnection`` in the schema, with ``BookEdge`` edges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry

Node = TypeVar("Node")

AFTER = (
    "Start after this cursor (an edge's cursor or pageInfo.endCursor); null: from the "
    "first. Only a cursor this API returned is accepted (BAD_USER_INPUT otherwise)."
)


@strawberry.type(description="Where a page sits in the list (Relay's cursor connections).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when more items follow: ask again with after: endCursor."
    )
    has_previous_page: bool = strawberry.field(
        description="True when this page was asked for with a cursor (after)."
    )
    start_cursor: str | None = strawberry.field(
        description="The first edge's cursor; null on an empty page."
    )
    end_cursor: str | None = strawberry.field(
        description="The last edge's cursor, the next page's after; null on an empty page."
    )


@strawberry.type(description="One item of a page and the cursor that names its place.")
class Edge(Generic[Node]):
    cursor: str = strawberry.field(
        description="Opaque: pass it as after to get the items that follow this one. Keyset "
        "paging, so items added meanwhile are neither skipped nor repeated."
    )
    node: Node = strawberry.field(description="The item itself.")


@strawberry.type(description="A page of a list in id order, with the list's total size.")
class Connection(Generic[Node]):
    edges: list[Edge[Node]] = strawberry.field(description="This page's items, in id order.")
    page_info: PageInfo = strawberry.field(description="Cursors to ask for the next page.")
    total_count: int = strawberry.field(description="Items in the whole list, on every page.")

    @classmethod
    def of(
        cls,
        nodes: Sequence[Node],
        cursor: Callable[[Node], str],
        *,
        total: int,
        has_next: bool,
        after: str | None,
    ) -> Connection[Node]:
        edges = [Edge(cursor=cursor(node), node=node) for node in nodes]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next,
                has_previous_page=after is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            total_count=total,
        )
