"""The course's way of asking for a book's neighbours: read its vector, one KNN query.

Two places the baselines run it, both in the same Redis as the server:

- ``COURSE``: the catalogue as the course stores it, one JSON document per book with its
  embedding as a JSON array, under a JSON index (bench/json_layout.py writes it once, under
  the prefix and index ``course``). Reading a vector is ``JSON.GET $.embedding``: what the
  course's notebook does, and what lookalike did before its lean layout.
- ``LOOKALIKE``: lookalike's own books, one Hash each with its vector as a blob. Reading a
  vector is an HGET of the blob: the same loop on the layout the server reads.

Both send the server's EF_RUNTIME with each KNN, so both do the same HNSW work and find the
same books. Shared by the nested script in bench/books.py and the hand-written endpoint in
bench/baseline_app.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from redis.commands.search.query import Query

from bench.json_layout import write_json_catalogue
from lookalike.services.books.loading.shipped import read_shipped

COURSE_NAME = "course"


@dataclass(frozen=True)
class Layout:
    name: str  # shown in the bench's output
    index: str
    prefix: str
    json: bool  # the course's JSON documents, or lookalike's hashes

    def vector(self, stored: Any) -> bytes:
        """The KNN parameter from what the read returned."""
        if self.json:
            return np.asarray(stored[0], dtype=np.float32).tobytes()
        assert isinstance(stored, bytes), "the book has no vector"
        return stored

    def key(self, book_id: str) -> str:
        return f"{self.prefix}:{book_id}"


COURSE = Layout("the course's JSON layout", COURSE_NAME, COURSE_NAME, json=True)


def lookalike_layout(index: str, prefix: str) -> Layout:
    return Layout("lookalike's Hash layout", index, prefix, json=False)


def ensure_course_layout(r: redis.Redis) -> None:
    """Write the course's layout once (about a second); later runs reuse it."""
    if r.exists(COURSE.key("9")):
        return
    write_json_catalogue(r, COURSE_NAME, read_shipped())
    while int(r.ft(COURSE_NAME).info()["num_docs"]) < 1486:  # type: ignore[no-untyped-call]
        time.sleep(0.05)


def shared_books(r: redis.Redis, ours: Layout) -> tuple[list[str], int]:
    """What the course's layout and ``ours`` can both be asked with the same answer: the ids
    of the books both hold with the same description and a vector, in id order; and how many
    books of ours the course's layout (the shipped catalogue) lacks or holds with another
    description. A book added with ``books load --source`` is only in ours: asking the
    course's side for it failed (its baseline answered 500)."""
    ids = sorted(
        (key.decode().split(":", 1)[1] for key in r.scan_iter(f"{COURSE.prefix}:*", count=1000)),
        key=int,
    )
    pipe = r.pipeline(transaction=False)
    for book_id in ids:
        pipe.json().get(COURSE.key(book_id), "$.description")
        pipe.hget(ours.key(book_id), "description")
        pipe.hexists(ours.key(book_id), "embedding")
    replies = pipe.execute()
    alike, shared = 0, []
    for n, book_id in enumerate(ids):
        theirs, mine, embedded = replies[3 * n : 3 * n + 3]
        if theirs and (mine or b"").decode() == theirs[0]:
            alike += 1
            if embedded:
                shared.append(book_id)
    ours_total = int(r.ft(ours.index).info()["num_docs"])  # type: ignore[no-untyped-call]
    return shared, ours_total - alike


def read_vector(r: redis.Redis, layout: Layout, book_id: str) -> bytes:
    """The course reads a book's vector before each KNN: one round trip."""
    if layout.json:
        return layout.vector(r.json().get(layout.key(book_id), "$.embedding"))
    return layout.vector(r.hget(layout.key(book_id), "embedding"))


def read_title(r: redis.Redis, layout: Layout, book_id: str) -> str:
    if layout.json:
        return str(r.json().get(layout.key(book_id), "$.title"))
    title = r.hget(layout.key(book_id), "title")
    return title.decode() if isinstance(title, bytes) else str(title)


def knn_with_titles(k: int, ef_runtime: int) -> Query:
    """k + 1 nearest (the book finds itself first), titles and distances returned."""
    ef = max(ef_runtime, k + 1)
    return (
        Query(f"*=>[KNN {k + 1} @embedding $vec EF_RUNTIME {ef} AS distance]")
        .sort_by("distance")
        .return_fields("title", "distance")
        .paging(0, k + 1)
        .dialect(2)
    )
