"""The course's way of asking for a book's neighbours: read its vector, one KNN query.

Shared by the two baselines (the nested script in bench/books.py and the hand-written
endpoint in bench/baseline_app.py), so both do exactly what the course's notebook does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import redis
from redis.commands.search.query import Query


def read_vector(r: redis.Redis, prefix: str, book_id: str) -> bytes:
    """The course reads a book's vector before each KNN: one round trip."""
    return vector_of(r.json().get(f"{prefix}:{book_id}", "$.embedding"))


def read_title(r: redis.Redis, prefix: str, book_id: str) -> str:
    return str(r.json().get(f"{prefix}:{book_id}", "$.title"))


def vector_of(document_embedding: Any) -> bytes:
    """``JSON.GET key $.embedding`` gives ``[[floats]]``: the FLOAT32 blob KNN takes."""
    return np.asarray(document_embedding[0], dtype=np.float32).tobytes()


def knn_with_titles(k: int) -> Query:
    """k + 1 nearest (the book finds itself first), titles and distances returned."""
    return (
        Query(f"*=>[KNN {k + 1} @embedding $vec AS distance]")
        .sort_by("distance")
        .return_fields("title", "distance")
        .paging(0, k + 1)
        .dialect(2)
    )
