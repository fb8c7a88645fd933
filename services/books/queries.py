"""The RediSearch queries the catalogue sends for books, and their hits read back as books.

A vector query (KNN) and a keyword query (BM25) RETURN the fields a request shows of each
book (and its vector when a deeper level searches from it, or when the server ranks by it),
so the books found need no read of their own.

Every KNN sends EF_RUNTIME of at least the number of hits it asks for, so the search keeps at
least that many candidates, and at least LOOKALIKE_HNSW_EF_RUNTIME or, unset, what the index's
size asks (``ef_for_books``): HNSW's recall at one EF_RUNTIME falls as its graph grows. A
search whose hits lookalike ranks itself (a pool for diversity or the author cap,
BEST_SCORE's lists, HYBRID's candidates) or whose vector is no book's (AVERAGE_VECTOR's mix
of books) sends more: at least LOOKALIKE_HNSW_EF_CANDIDATES (400) and
4 x its hits: the lowest EF at which HNSW missed no hit that exact search ranks firmly
inside the answer, over random requests on the shipped catalogue (``bench/candidates_ef.py``;
the figures, and what the higher EF costs a KNN, in docs/decisions.md, "Figures that
comments used to quote"). A miss in a pool changes what MMR or a ranking picks, and a mix of
books lies where the graph is thin.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redisvl.query import FilterQuery, VectorQuery
from redisvl.query.filter import FilterExpression

from lookalike.services.books.index import vector_bytes
from lookalike.services.books.records import VECTOR_FIELD, Book, BookFields
from lookalike.services.books.search.keyword import keyword_search
from lookalike.services.core.settings import Settings
from lookalike.services.redis.searches import PreparedSearch, Reply

EF_STEP = 25  # EF_RUNTIME moves in steps: a growing catalogue makes few query shapes
EF_MAX = 4096  # the most Redis accepts for a query, as for the setting

THOROUGH_PER_HIT = 4  # a thorough KNN's EF_RUNTIME is at least this many times its hits
KNN_SHAPES = 256  # KNN query templates kept (BookQueries.knn)


@dataclass(frozen=True, slots=True)
class Match:
    """A book found and its cosine distance to what was searched (0 identical, 2 opposite);
    for BEST_SCORE, 1 - its score."""

    book: Book
    distance: float


@dataclass(frozen=True, slots=True)
class Hit:
    """One book a query returned: its cosine distance (a KNN hit; NaN for a keyword hit) and
    its BM25 score (a keyword hit; 0 for a KNN hit)."""

    book: Book
    distance: float
    score: float


def combined(filters: Sequence[FilterExpression | None]) -> FilterExpression | None:
    parts = [f for f in filters if f is not None]
    if not parts:
        return None
    found = parts[0]
    for part in parts[1:]:
        found = found & part
    return found


def ef_for_books(books_per_shard: int, curve: Sequence[tuple[int, int]]) -> int:
    """EF_RUNTIME for an index of this many books on each shard, from ``curve``'s (books,
    EF_RUNTIME) points (LOOKALIKE_HNSW_EF_CURVE): HNSW's recall at a fixed EF_RUNTIME falls as
    its graph grows, and a shard searches only its own graph. Up to the first point, its EF;
    between two, along the log of the size; past the last, the last segment's slope."""
    (first, first_ef), *_ = curve
    if books_per_shard <= first or len(curve) == 1:
        return first_ef
    for (low, low_ef), (high, high_ef) in itertools.pairwise(curve):
        if books_per_shard <= high or high == curve[-1][0]:
            along = math.log(books_per_shard / low) / math.log(high / low)
            wanted = low_ef + along * (high_ef - low_ef)
            return min(EF_MAX, math.ceil(wanted / EF_STEP) * EF_STEP)
    raise AssertionError("unreachable: the last segment takes every larger size")


class BookQueries:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The index's books per shard, as the catalogue last read them (Catalogue.status):
        # what EF_RUNTIME follows when the setting leaves it to the index.
        self.books_per_shard = 0
        self._prefix = settings.key_prefix + ":"
        self._knn_shapes: OrderedDict[tuple[Any, ...], PreparedSearch] = OrderedDict()

    def as_indexed(self, vector: bytes) -> bytes:
        """A query vector in the index's type (search texts are embedded as FLOAT32)."""
        return vector_bytes(vector, self.settings.vector_type)

    def knn(
        self,
        vector: bytes,
        count: int,
        filters: Sequence[FilterExpression | None],
        fields: BookFields,
        *,
        thorough: bool = False,
    ) -> PreparedSearch:
        """The ``count`` nearest books; ``thorough`` for candidates ranked here or a vector
        that is no book's (a wider EF_RUNTIME, see above). RedisVL builds the query once per
        shape (its count, EF_RUNTIME, fields and filter); each search puts its vector in."""
        indexed = self.as_indexed(vector)
        expression = combined(filters)
        ef = self.ef_runtime(count, thorough=thorough)
        returned = fields.returned()
        shape = (count, ef, tuple(returned), None if expression is None else str(expression))
        template = self._knn_shapes.get(shape)
        if template is not None:
            self._knn_shapes.move_to_end(shape)
            return template.put(indexed)
        query = VectorQuery(
            vector=indexed,
            vector_field_name=VECTOR_FIELD,
            return_fields=returned,
            filter_expression=expression,
            num_results=count,
            ef_runtime=ef,
            dtype=self.settings.vector_type,
        )
        prepared = PreparedSearch.of(query, "vector")
        self._knn_shapes[shape] = prepared
        if len(self._knn_shapes) > KNN_SHAPES:  # filters are the client's: keep a bounded few
            self._knn_shapes.popitem(last=False)
        return prepared

    def plain_ef(self) -> int:
        """EF_RUNTIME of a KNN for a few hits: the setting when it is set, else the index's
        size decides (ef_for_books)."""
        if self.settings.hnsw_ef_runtime is not None:
            return self.settings.hnsw_ef_runtime
        return ef_for_books(self.books_per_shard, self.settings.hnsw_ef_curve)

    def ef_runtime(self, count: int, *, thorough: bool) -> int:
        found = max(self.plain_ef(), count)
        if thorough:
            found = max(found, self.settings.hnsw_ef_candidates, THOROUGH_PER_HIT * count)
        return found

    def keyword(
        self,
        text: str,
        count: int,
        filters: Sequence[FilterExpression | None],
        fields: BookFields,
    ) -> FilterQuery | None:
        """BM25 over title, author and description; None when the text has no word to search
        (only stopwords and punctuation)."""
        return keyword_search(text, filters, count, fields.returned())

    def book_id(self, key: str) -> str:
        return key.removeprefix(self._prefix)

    def book(self, key: str, values: Mapping[bytes, Any], fields: BookFields) -> Book:
        return Book(self.book_id(key), fields, values)

    def hits(self, reply: Reply, fields: BookFields) -> list[Hit]:
        """The hits as books: the query RETURNed each book's fields (and vector when asked)."""
        found = []
        for (key, values), score in zip(reply.hits, reply.scores, strict=True):
            given = values.get(b"vector_distance")
            # FLOAT16 rounding puts an identical vector at about -0.00005: that is 0
            distance = max(0.0, float(given)) if given is not None else math.nan
            found.append(Hit(self.book(key, values, fields), distance, score))
        return found

    def matches(self, reply: Reply, fields: BookFields) -> list[Match]:
        return [Match(hit.book, hit.distance) for hit in self.hits(reply, fields)]
