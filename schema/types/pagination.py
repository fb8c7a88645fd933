"""Relay connections, one generic shape for every list that pages with cursors.

Strawberry names a specialised generic after its argument: ``Connection[Book]`` is
``BookConnection`` in the schema, with ``BookEdge`` edges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry

Node = TypeVar("Node")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[Node]):
    cursor: str
    node: Node


@strawberry.type
class Connection(Generic[Node]):
    edges: list[Edge[Node]]
    page_info: PageInfo
    total_count: int

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
