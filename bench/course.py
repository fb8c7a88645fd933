"""The course's way of asking for a book's neighbours: read its vector, one KNN query.

Shared by the two baselines (the nested script in bench/books.py and the hand-written
endpoint in bench/baseline_app.py), so both do exactly what the course's notebook does.
"""

from __future__ import annotations

from typing import Any

from redis.commands.search.query import Query


def vector_of(stored: Any) -> bytes:
    """``HGET key embedding`` gives the blob the index reads, which is what KNN takes (the
    course read ``$.embedding`` of a JSON document and converted the numbers)."""
    assert isinstance(stored, bytes), "the book has no vector"
    return stored


def knn_with_titles(k: int) -> Query:
    """k + 1 nearest (the book finds itself first), titles and distances returned."""
    return (
        Query(f"*=>[KNN {k + 1} @embedding $vec AS distance]")
        .sort_by("distance")
        .return_fields("title", "distance")
        .paging(0, k + 1)
        .dialect(2)
    )
