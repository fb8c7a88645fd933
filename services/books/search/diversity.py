"""Diverse answers: maximal marginal relevance (MMR) and a cap on books by one author.

The five nearest books are often one series. MMR (Carbonell and Goldstein, 1998) picks from a
pool of the nearest candidates one at a time, each time the one with the best

    lambda * relevance(c) - (1 - lambda) * max over picked s of similarity(c, s)

with ``lambda = 1 - diversity`` and similarity = 1 - cosine distance. Relevance is the
answer's own score, on the same scale: 1 - distance for a vector search (similar, SEMANTIC,
AVERAGE_VECTOR), the BEST_SCORE score, the hybrid score. The first pick is the most relevant
(the nearest) whatever the diversity; ties go to the earlier candidate. The pool is the
max(50, 5k) nearest candidates after filters and exclusions. ``diversity`` 0 keeps the order as
it is, so the answer is exactly the one without it.

``max_per_author`` passes over a candidate whose author already has that many picks (authors
compared ignoring case), with or without diversity. Without diversity the answer is then the
k nearest books that keep the cap; if the pool cannot supply k, ``Picks.short`` tells the
caller to search again with a wider pool (``wider``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lookalike.services.books.search.leave_out import MAX_RESULTS
from lookalike.services.core.errors import check_range
from lookalike.services.embeddings.vector_math import Matrix

MIN_POOL = 50
POOL_PER_RESULT = 5
MAX_PER_AUTHOR = 100


@dataclass(frozen=True, slots=True)
class Diversity:
    """How an answer is picked from its nearest candidates; the default changes nothing."""

    diversity: float = 0.0
    max_per_author: int | None = None

    def __post_init__(self) -> None:
        check_range("diversity", self.diversity, 0, 1)
        if self.max_per_author is not None:
            check_range("maxPerAuthor", self.max_per_author, 1, MAX_PER_AUTHOR)

    @property
    def changes_order(self) -> bool:
        return self.diversity > 0 or self.max_per_author is not None

    def pool_size(self, k: int) -> int:
        """Candidates to search for k answers: k itself when nothing is re-picked."""
        return pool_size(k, self.changes_order)


NO_DIVERSITY = Diversity()


def pool_size(k: int, picked: bool) -> int:
    """The max(50, 5k) nearest when the answer is picked from them, else k."""
    return max(MIN_POOL, POOL_PER_RESULT * k) if picked else k


def wider(pool: int) -> int:
    """The next pool to try when a cap per author left too few picks (at most what one Redis
    search may return)."""
    return min(pool * 4, MAX_RESULTS)


@dataclass(frozen=True, slots=True)
class Picks:
    rows: list[int]  # candidate rows, in the order picked
    short: bool  # fewer than k picked from a pool that may not hold every candidate


def pick(
    relevance: npt.ArrayLike,
    vectors: Matrix,
    authors: Sequence[str],
    k: int,
    choice: Diversity,
    *,
    pool_is_everything: bool = False,
) -> Picks:
    """k candidates by MMR and the author cap. Candidates come most relevant first; ``vectors``
    are their unit rows (needed only with diversity > 0)."""
    count = len(authors)
    cap = choice.max_per_author
    by_author: Counter[str] = Counter()
    keys = [author.strip().casefold() for author in authors]
    books_of: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        books_of.setdefault(key, []).append(row)
    allowed = np.ones(count, dtype=bool)
    rows: list[int] = []

    def take(row: int) -> None:
        rows.append(row)
        allowed[row] = False
        by_author[keys[row]] += 1
        if cap is not None and by_author[keys[row]] >= cap:
            allowed[books_of[keys[row]]] = False

    if choice.diversity == 0:
        for row in range(count):
            if len(rows) == k:
                break
            if allowed[row]:
                take(row)
    elif count:
        weight = 1.0 - choice.diversity
        gains = weight * np.asarray(relevance, dtype=np.float64)
        nearest_picked = np.full(count, -np.inf)
        take(0)
        while len(rows) < k and allowed.any():
            nearest_picked = np.maximum(nearest_picked, vectors @ vectors[rows[-1]])
            marginal = gains - (1.0 - weight) * nearest_picked
            take(int(np.argmax(np.where(allowed, marginal, -np.inf))))
    return Picks(rows, short=len(rows) < k and not pool_is_everything)
