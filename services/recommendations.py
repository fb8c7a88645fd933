"""Recommendations from books a reader liked and disliked, with Qdrant's two strategies.

Qdrant's recommend API (documentation, "Explore the data": Recommendation API; the code in
``lib/segment/src/vector_storage/query/reco_query.rs``) defines them, and lookalike follows
it, with cosine similarity s(a, b) = 1 - cosine distance:

- **AVERAGE_VECTOR**: one query vector, ``avg(liked)`` when nothing is disliked, else
  ``avg(liked) + (avg(liked) - avg(disliked))``; then an ordinary nearest-neighbour search
  (Redis normalises the query, as Qdrant does for a cosine collection). The distance reported
  is the cosine distance to that query vector.
- **BEST_SCORE**: each candidate c is compared with every example;
  ``p = max s(c, liked)``, ``n = max s(c, disliked)`` (minus infinity with none), and
  ``score = sigmoid(p) if p > n else -sigmoid(n)`` with Qdrant's scaled fast sigmoid
  ``sigmoid(x) = 0.5 * (1 + x / (1 + |x|))``. So a book nearer a liked book than any disliked
  one ranks by its best similarity to a liked book (scores in (0, 1)), above every book nearer
  a disliked one, which rank by their distance from it (scores in (-1, 0)). Qdrant's first
  version negated the square of ``n``, which stopped inverting the order once similarities are
  negative; Qdrant changed it to the sigmoid (qdrant pull request 2904). The distance
  reported is ``1 - score``: 0.25 to 0.75 for the first kind, 1.25 to 1.75 for the second.

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

from lookalike.services.vector_math import Matrix, unit_rows

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


def scaled_fast_sigmoid(x: npt.ArrayLike) -> Scores:
    """Qdrant's sigmoid: monotone, 0.5 at 0, in (0, 1)."""
    values = np.asarray(x, dtype=np.float64)
    found: Scores = 0.5 * (1.0 + values / (1.0 + np.abs(values)))
    return found


def best_scores(candidates: Matrix, liked: npt.ArrayLike, disliked: npt.ArrayLike) -> Scores:
    """Qdrant's BEST_SCORE of each candidate row (unit rows; examples normalised here)."""
    return _best_scores(candidates @ unit_rows(liked).T, candidates, unit_rows(disliked))


def _best_scores(to_liked: Matrix, candidates: Matrix, disliked: Matrix) -> Scores:
    positive = to_liked.max(axis=1)
    if not np.size(disliked):
        return scaled_fast_sigmoid(positive)
    negative = (candidates @ disliked.T).max(axis=1)
    found: Scores = np.where(
        positive > negative, scaled_fast_sigmoid(positive), -scaled_fast_sigmoid(negative)
    )
    return found


def best_score_list_size(needed: int, disliked: int) -> int:
    """How many books to search around each liked book for the first ``needed`` by
    BEST_SCORE. Without dislikes ``needed`` is always enough (``best_score_ranking``); with
    them, books near a dislike drop out, and twice as many make a second search rare
    (measured over 600 random requests with 1 to 3 dislikes: 3 of 600 needed it, against
    52 of 600 with lists of ``needed``)."""
    return needed if not disliked else 2 * needed


@dataclass(frozen=True, slots=True)
class NeighbourList:
    """What one nearest-neighbour search around a liked book found: how many it asked for,
    and the candidate rows of the books that came back."""

    asked: int
    rows: tuple[int, ...]

    @property
    def complete(self) -> bool:
        """Fewer came back than were asked: every book the filter lets through is in it."""
        return len(self.rows) < self.asked


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

    Let T be, over the lists that came back full, the lowest similarity of a listed book to
    the list's liked book, and then the highest of those. A book missing from every list is
    no nearer any liked book than T, so its score is at most sigmoid(T) (a score from the
    disliked side is negative, and sigmoid is positive). If the ``needed``-th candidate
    scores at least sigmoid(T), nothing outside can displace it (at most tie it). With
    nothing disliked that always holds: the list that reaches T holds ``needed`` books at
    least as similar as T. If any list came back short, it holds every book the filter lets
    through, so the candidates are all there is. (Similarities are computed here, from the
    vectors, for the scores and for T alike.)
    """
    to_liked = candidates @ unit_rows(liked).T
    scores = _best_scores(to_liked, candidates, unit_rows(disliked))
    order = sorted(range(len(scores)), key=lambda row: (-scores[row], row))
    if any(found.complete for found in lists):
        return BestScoreRanking(order, scores, certain=True)
    floor = max(float(to_liked[list(found.rows), n].min()) for n, found in enumerate(lists))
    bound = float(scaled_fast_sigmoid(floor))
    certain = len(order) >= needed and float(scores[order[needed - 1]]) >= bound
    return BestScoreRanking(order, scores, certain=certain)
