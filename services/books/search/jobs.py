"""Searches whose answer is picked here from Redis's candidates, in one round or two.

Each kind of search is a job: it says what queries it needs this round, reads their replies,
and either has its answer or asks for another round with more candidates. The catalogue
runs every job of a batch together, one pipeline a round, so a level of a hundred fields
costs one round trip, and a second only when some field needs it:

- ``NearestJob``: the nearest books to a vector (``similar``, SEMANTIC search,
  AVERAGE_VECTOR). With ``diversity`` or ``maxPerAuthor`` it fetches a pool of
  max(50, 5k) nearest and picks k from it (MMR, the author cap).
- ``KeywordJob``: BM25 over title, author and description (KEYWORD).
- ``HybridJob``: the nearest and the best by BM25 together, ranked by ``hybrid_ranking``
  (HYBRID).
- ``BestScoreJob``: nearest-neighbour lists around each liked book, ranked by Qdrant's
  BEST_SCORE, widened when the ranking cannot yet prove itself exact.

A second round happens when the author cap leaves fewer than k books in a pool that was not
everything the filter lets through, or when BEST_SCORE cannot prove that no book outside
its lists ranks higher; it searches four times as many candidates (``wider``). There is no
third: after two rounds the cap returns what it found (fewer than k), and BEST_SCORE the best
of its candidates (exact in every case the tests try; see README).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from lookalike.services.books.filters import BookFilter
from lookalike.services.books.queries import BookQueries, Hit, Match
from lookalike.services.books.records import Book, BookFields
from lookalike.services.books.search.diversity import Diversity, pick, wider
from lookalike.services.books.search.hybrid import Candidate, rank_hybrid
from lookalike.services.books.search.keyword import keyword_query
from lookalike.services.books.search.leave_out import LeaveOut
from lookalike.services.books.search.recommendations import (
    NeighbourList,
    best_score_list_size,
    best_score_ranking,
)
from lookalike.services.embeddings.vector_math import from_blobs
from lookalike.services.redis.searches import Reply, Search

MAX_ROUNDS = 2
HYBRID_CANDIDATES = 50  # the nearest and the best by BM25, each, at least
RANKING = BookFields(frozenset({"title", "author"}))  # what HYBRID's match reads
NOTHING = BookFields(frozenset())


def picking(choice: Diversity) -> BookFields:
    """What picking reads of each candidate: authors for the cap, vectors for MMR."""
    if not choice.changes_order:
        return NOTHING
    names = frozenset({"author"}) if choice.max_per_author is not None else frozenset()
    return BookFields(names, vector=choice.diversity > 0)


def hybrid_candidates(pool: int) -> int:
    """How many nearest and how many best by BM25 HYBRID ranks, for a pool of ``pool``."""
    return max(HYBRID_CANDIDATES, pool)


def choose(
    books: Sequence[Book],
    distances: Sequence[float],
    relevance: Callable[[], npt.ArrayLike],
    k: int,
    choice: Diversity,
    complete: bool,
) -> tuple[list[Match], bool]:
    """k of the candidates (most relevant first) by MMR and the author cap; and whether the
    cap left fewer than k in a pool that may not hold every candidate. ``relevance`` is
    worked out only when a choice needs it (most searches keep the order they found)."""
    if not choice.changes_order:
        return [Match(b, d) for b, d in zip(books[:k], distances[:k], strict=True)], False
    vectors = from_blobs([b.vector for b in books]) if choice.diversity > 0 else np.zeros((0, 0))
    capped = choice.max_per_author is not None
    authors = [b.author if capped else "" for b in books]
    picks = pick(relevance(), vectors, authors, k, choice, pool_is_everything=complete)
    return [Match(books[r], distances[r]) for r in picks.rows], picks.short


class SearchJob(ABC):
    """One field's search: ``queries`` for this round, ``take`` their replies, until done."""

    def __init__(self, k: int, facets: BookFilter, leave_out: frozenset[str], choice: Diversity):
        self.k = k
        self.facets = facets
        self.leave_out = leave_out
        self.choice = choice
        self.rounds = 0
        self.answer: list[Match] = []
        self.done = facets.matches_nothing()

    @abstractmethod
    def queries(self, queries: BookQueries) -> list[Search]: ...

    @abstractmethod
    def take(self, queries: BookQueries, replies: Sequence[Reply]) -> None: ...

    def finish(self, answer: list[Match], again: bool) -> bool:
        """Keep the answer, or say another round is wanted (when one is left)."""
        self.rounds += 1
        if again and self.rounds < MAX_ROUNDS:
            return True
        self.answer, self.done = answer, True
        return False

    def _kept(self, hits: list[Hit], plan: LeaveOut) -> list[Hit]:
        return [hits[n] for n in plan.keep([hit.book.id for hit in hits])]


class NearestJob(SearchJob):
    def __init__(
        self,
        vector: bytes | None,
        k: int,
        facets: BookFilter,
        fields: BookFields,
        leave_out: frozenset[str],
        choice: Diversity,
        *,
        mixed: bool = False,
    ) -> None:
        """``mixed``: the vector is no book's or text's (AVERAGE_VECTOR), so searched
        thoroughly (``book_queries``), as a pool picked from is."""
        super().__init__(k, facets, leave_out, choice)
        self.vector = vector
        self.fields = fields | picking(choice)
        self.pool = choice.pool_size(k)
        self.thorough = mixed or choice.changes_order
        self.done = self.done or vector is None  # a book with no embedding has no neighbours

    def queries(self, queries: BookQueries) -> list[Search]:
        assert self.vector is not None
        self.plan = LeaveOut(self.leave_out, self.pool)
        filters = [self.facets.expression(), self.plan.expression()]
        count = self.plan.num_results
        return [queries.knn(self.vector, count, filters, self.fields, thorough=self.thorough)]

    def take(self, queries: BookQueries, replies: Sequence[Reply]) -> None:
        (reply,) = replies
        hits = queries.hits(reply, self.fields)
        pool = self._kept(hits, self.plan)[: self.pool]
        distances = [hit.distance for hit in pool]
        complete = len(hits) < self.plan.num_results
        answer, short = choose(
            [hit.book for hit in pool],
            distances,
            lambda: 1.0 - np.asarray(distances, dtype=np.float64),
            self.k,
            self.choice,
            complete,
        )
        if self.finish(answer, again=short):
            self.pool = wider(self.pool)


def _distances(hits: Sequence[Hit], query: bytes) -> list[float]:
    """Each hit's cosine distance to the query vector, from the vectors the hits returned (a
    book with no vector: distance 1, similar to nothing); Redis's where a KNN gave it."""
    similarity = from_blobs([hit.book.vector for hit in hits]) @ from_blobs([query])[0]
    return [
        hit.distance if not np.isnan(hit.distance) else max(0.0, 1.0 - float(s))
        for hit, s in zip(hits, similarity, strict=True)
    ]


class KeywordJob(SearchJob):
    """BM25 order; each book's real cosine distance to the text. MMR's relevance is the BM25
    score over the pool's best (1 for the best)."""

    def __init__(
        self,
        text: str,
        vector: bytes,
        k: int,
        facets: BookFilter,
        fields: BookFields,
        leave_out: frozenset[str],
        choice: Diversity,
    ) -> None:
        super().__init__(k, facets, leave_out, choice)
        self.text = text
        self.vector = vector
        self.fields = fields | picking(choice) | BookFields(frozenset(), vector=True)
        self.pool = choice.pool_size(k)
        self.done = self.done or keyword_query(text) is None  # no word to search

    def queries(self, queries: BookQueries) -> list[Search]:
        self.plan = LeaveOut(self.leave_out, self.pool)
        filters = [self.facets.expression(), self.plan.expression()]
        query = queries.keyword(self.text, self.plan.num_results, filters, self.fields)
        assert query is not None
        return [query]

    def take(self, queries: BookQueries, replies: Sequence[Reply]) -> None:
        (reply,) = replies
        hits = queries.hits(reply, self.fields)
        pool = self._kept(hits, self.plan)[: self.pool]

        def relevance() -> npt.NDArray[np.float64]:
            scores = np.asarray([hit.score for hit in pool], dtype=np.float64)
            best = float(scores.max()) if len(scores) else 0.0
            return scores / best if best > 0 else np.zeros_like(scores)

        answer, short = choose(
            [hit.book for hit in pool],
            _distances(pool, queries.as_indexed(self.vector)),
            relevance,
            self.k,
            self.choice,
            len(hits) < self.plan.num_results,
        )
        if self.finish(answer, again=short):
            self.pool = wider(self.pool)


class HybridJob(SearchJob):
    """The nearest and the best by BM25, ranked by similarity + 0.5 x word match cubed
    (``hybrid_ranking``); each book's real cosine distance to the text. MMR's relevance is
    the hybrid score."""

    def __init__(
        self,
        text: str,
        vector: bytes,
        k: int,
        facets: BookFilter,
        fields: BookFields,
        leave_out: frozenset[str],
        choice: Diversity,
    ) -> None:
        super().__init__(k, facets, leave_out, choice)
        self.text = text
        self.vector = vector
        self.nearest_fields = fields | picking(choice) | RANKING
        self.keyword_fields = self.nearest_fields | BookFields(frozenset(), vector=True)
        self.pool = choice.pool_size(k)
        self.has_words = keyword_query(text) is not None

    def queries(self, queries: BookQueries) -> list[Search]:
        self.plan = LeaveOut(self.leave_out, hybrid_candidates(self.pool))
        count = self.plan.num_results
        filters = [self.facets.expression(), self.plan.expression()]
        found: list[Search] = [
            queries.knn(self.vector, count, filters, self.nearest_fields, thorough=True)
        ]
        if self.has_words:
            keyword = queries.keyword(self.text, count, filters, self.keyword_fields)
            assert keyword is not None
            found.append(keyword)
        return found

    def take(self, queries: BookQueries, replies: Sequence[Reply]) -> None:
        wanted = self.plan.wanted
        nearest_hits = queries.hits(replies[0], self.nearest_fields)
        keyword_hits = queries.hits(replies[1], self.keyword_fields) if self.has_words else []
        nearest = self._kept(nearest_hits, self.plan)[:wanted]
        keyword = self._kept(keyword_hits, self.plan)[:wanted]
        known = {hit.book.id for hit in nearest}
        only_keyword = [hit for hit in keyword if hit.book.id not in known]
        hits = nearest + only_keyword
        distances = _distances(hits, queries.as_indexed(self.vector))
        books = {hit.book.id: hit.book for hit in hits}
        distance = {hit.book.id: d for hit, d in zip(hits, distances, strict=True)}
        ranked = rank_hybrid(
            self.text,
            (
                Candidate(hit.book.id, 1.0 - distance[hit.book.id], hit.book.title, hit.book.author)
                for hit in hits
            ),
        )[: self.pool]
        complete = all(
            len(found) < self.plan.num_results
            for found in (nearest_hits, keyword_hits if self.has_words else [])
        )
        answer, short = choose(
            [books[s.candidate.book_id] for s in ranked],
            [distance[s.candidate.book_id] for s in ranked],
            lambda: np.asarray([s.score for s in ranked], dtype=np.float64),
            self.k,
            self.choice,
            complete,
        )
        if self.finish(answer, again=short):
            self.pool = wider(self.pool)


class BestScoreJob(SearchJob):
    """Qdrant's BEST_SCORE over the nearest books of each liked book: exact when
    ``best_score_ranking`` proves it, else searched again with lists four times as long."""

    def __init__(
        self,
        liked: Sequence[bytes],
        disliked: Sequence[bytes],
        k: int,
        facets: BookFilter,
        fields: BookFields,
        leave_out: frozenset[str],
        choice: Diversity,
    ) -> None:
        super().__init__(k, facets, leave_out, choice)
        self.liked = list(liked)
        self.liked_rows = from_blobs(self.liked)
        self.disliked_rows = from_blobs(list(disliked))
        self.fields = fields | picking(choice) | BookFields(frozenset(), vector=True)
        self.needed = choice.pool_size(k)
        self.size = best_score_list_size(self.needed, len(disliked))
        self.done = self.done or not self.liked
        self.certain = True

    def queries(self, queries: BookQueries) -> list[Search]:
        self.plan = LeaveOut(self.leave_out, self.size)
        filters = [self.facets.expression(), self.plan.expression()]
        count = self.plan.num_results
        return [
            queries.knn(vector, count, filters, self.fields, thorough=True) for vector in self.liked
        ]

    def take(self, queries: BookQueries, replies: Sequence[Reply]) -> None:
        books: dict[str, int] = {}
        candidates: list[Book] = []
        lists = []
        for reply in replies:
            hits = queries.hits(reply, self.fields)
            rows = []
            for hit in self._kept(hits, self.plan)[: self.size]:
                if hit.book.id not in books:
                    books[hit.book.id] = len(candidates)
                    candidates.append(hit.book)
                rows.append(books[hit.book.id])
            lists.append(NeighbourList(tuple(rows), complete=len(hits) < self.plan.num_results))
        ranking = best_score_ranking(
            from_blobs([book.vector for book in candidates]),
            self.liked_rows,
            self.disliked_rows,
            lists,
            self.needed,
        )
        top = ranking.order[: self.needed]
        scores = ranking.scores[top]
        # The pool is everything the filter lets through only when a list came back short
        # and no candidate was cut from the pool.
        everything = any(found.complete for found in lists) and len(top) == len(ranking.order)
        answer, short = choose(
            [candidates[row] for row in top],
            [max(0.0, 1.0 - float(score)) for score in scores],
            lambda: scores,
            self.k,
            self.choice,
            everything,
        )
        self.certain = ranking.certain
        if self.finish(answer, again=short or not ranking.certain):
            if short:  # the cap left too few: pick from a pool four times as large
                self.needed = wider(self.needed)
            self.size = wider(self.size)
