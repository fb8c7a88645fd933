"""Recommendations from books a reader liked and disliked, with Qdrant's two strategies.

Qdrant's recommend API (documentation, "Explore the data": Recommendation API; the code in
``lib/segment/src/vector_storage/query/reco_query.rs``) defines them, and lookalike follows
it, with cosine similarity s(a, b) = 1 - cosine distance:

- **AVERAGE_VECTOR**: one query vector, ``avg(liked)`` when nothing is disliked, else
  ``avg(liked) + (avg(liked) - avg(disliked))``; then an ordinary nearest-neighbour search
  (Redis normalises the query, as Qdrant does for a cosine collection). The distance reported
  is the cosine distance to that query vector.
- **BEST_SCORE**, as Qdrant's documentation wrote it from 1.6 ("Best score strategy"):
  each candidate c is compared with every example; ``p = max s(c, liked)``,
  ``n = max s(c, disliked)`` (minus infinity with none), and
  ``score = p if p > n else -(n * n)``. A book nearer a liked book than any disliked one
  ranks by its best similarity to a liked book, above every book nearer a disliked one,
  which gets a negative score: the nearer that book, the lower (for n >= 0; squaring ranks
  a book whose best disliked similarity is negative as if it were positive, which is why
  Qdrant's code moved to a sigmoid of both branches in pull request 2904, and its
  documentation followed in 2025). The distance reported is ``1 - score``: 0 for a book
  identical to a liked one, 1 to 2 for a book nearer a disliked one.

Redis cannot rank by BEST_SCORE, so the candidates come from a nearest-neighbour search around
each liked book and are scored here exactly. That is exact only if no book outside those
lists could score higher: ``best_score_ranking`` proves it (or says the lists must be longer).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lookalike.services.embeddings.vector_math import Matrix, unit_rows

MAX_LIKED = 50
MAX_DISLIKED = 50
MAX_EXCLUDED = 500

Scores = npt.NDArray[np.float64]


class RecommendStrategy(enum.Enum):
    AVERAGE_VECTOR = "AVERAGE_VECTOR"
    BEST_SCORE = "BEST_SCORE"


def average_vector_query(liked: npt.ArrayLike, disliked: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Qdrant's AVERAGE_VECTOR query: ``avg(liked)``, or ``2 avg(liked) - avg(disliked)``.

    Qdrant averages the stored vectors; for a cosine collection it stores them normalised, so
    the examples are normalised here first. The result is not unit length (Redis's cosine
    distance normalises it)."""
    positive = unit_rows(liked).mean(axis=0)
    negative_rows = unit_rows(disliked) if np.size(disliked) else None
    query = positive if negative_rows is None else positive + (positive - negative_rows.mean(0))
    found: npt.NDArray[np.float32] = query.astype(np.float32)
    return found


def best_scores(candidates: Matrix, liked: npt.ArrayLike, disliked: npt.ArrayLike) -> Scores:
    """Qdrant's BEST_SCORE of each candidate row (unit rows; examples normalised here)."""
    return _best_scores(candidates @ unit_rows(liked).T, candidates, unit_rows(disliked))


def _best_scores(to_liked: Matrix, candidates: Matrix, disliked: Matrix) -> Scores:
    positive: Scores = to_liked.max(axis=1)
    if not np.size(disliked):
        return positive
    negative = (candidates @ disliked.T).max(axis=1)
    found: Scores = np.where(positive > negative, positive, -(negative * negative))
    return found


def best_score_list_size(needed: int, disliked: int) -> int:
    """How many books to search around each liked book for the first ``needed`` by
    BEST_SCORE. Without dislikes ``needed`` is always enough (``best_score_ranking``); with
    them, books near a dislike drop out, and twice as many make a second search rare
    (measured over random requests with dislikes: docs/decisions.md, "Figures that comments
    used to quote")."""
    return needed if not disliked else 2 * needed


@dataclass(frozen=True, slots=True)
class NeighbourList:
    """What one nearest-neighbour search around a liked book found: the candidate rows of the
    books that came back (those left out dropped), and whether fewer came back than were
    asked, so that every book the filter lets through is in it."""

    rows: tuple[int, ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class BestScoreRanking:
    order: list[int]  # candidate rows, best first (ties: the earlier row first)
    scores: Scores  # per candidate row
    certain: bool  # no book outside the candidates can be in the first ``needed``


def best_score_ranking(
    candidates: Matrix,
    liked: npt.ArrayLike,
    disliked: npt.ArrayLike,
    lists: Sequence[NeighbourList],
    needed: int,
) -> BestScoreRanking:
    """The candidates (distinct books from the searches around each liked book, one list per
    liked book, in the same order) by BEST_SCORE, and whether their first ``needed`` are the
    catalogue's first ``needed``.

    Let T be, over the lists, the lowest similarity of a listed book to the list's liked book,
    and then the highest of those. A book missing from every list is no nearer any liked book
    than T, so its score is at most T when it is nearer a liked book than a disliked one, and
    at most 0 otherwise (``-(n * n)``): at most T without dislikes, max(T, 0) with them. If the
    ``needed``-th candidate scores at least that, nothing outside can displace it (at most tie
    it). With nothing disliked that always holds: the list that reaches T holds ``needed``
    books at least as similar as T. If any list came back short, it holds every book the
    filter lets through, so the candidates are all there is. (Similarities are computed here,
    from the vectors, for the scores and for T alike.)
    """
    to_liked = candidates @ unit_rows(liked).T
    scores = _best_scores(to_liked, candidates, unit_rows(disliked))
    order: list[int] = np.argsort(-scores, kind="stable").tolist()  # ties: the earlier row
    if any(found.complete for found in lists):
        return BestScoreRanking(order, scores, certain=True)
    floor = max(float(to_liked[list(found.rows), n].min()) for n, found in enumerate(lists))
    bound = max(floor, 0.0) if np.size(disliked) else floor
    certain = len(order) >= needed and float(scores[order[needed - 1]]) >= bound
    return BestScoreRanking(order, scores, certain=certain)
