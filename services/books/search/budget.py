"""How much a search field may make Redis do, before it runs: for the query cost limit.

Each function mirrors what ``search_jobs`` will ask for, from the field's raw arguments (the
cost is worked out before the request objects check them, so nothing here refuses a value):
the searches it may send, and the hits they may return, in the first round and in the
second one it may need (the author cap's wider pool; BEST_SCORE's wider lists with dislikes
or a cap). Books left out by asking for more are not counted here: the cost counts each
excluded id on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from lookalike.services.books.requests import SearchMode
from lookalike.services.books.search.diversity import pool_size, wider
from lookalike.services.books.search.jobs import hybrid_candidates
from lookalike.services.books.search.recommendations import RecommendStrategy, best_score_list_size


@dataclass(frozen=True, slots=True)
class Budget:
    searches: int  # Redis searches (KNN or BM25) it may run
    candidates: int  # hits they may return


def _rounds(first: int, capped: bool) -> list[int]:
    """The candidates of each round: a cap per author may need a second, wider one."""
    return [first, wider(first)] if capped else [first]


def nearest_budget(k: int, diversity: float, capped: bool) -> Budget:
    """similar, SEMANTIC and KEYWORD search, AVERAGE_VECTOR: one search a round."""
    rounds = _rounds(pool_size(k, diversity > 0 or capped), capped)
    return Budget(len(rounds), sum(rounds))


def search_budget(k: int, diversity: float, capped: bool, mode: SearchMode) -> Budget:
    if mode is not SearchMode.HYBRID:
        return nearest_budget(k, diversity, capped)
    rounds = _rounds(pool_size(k, diversity > 0 or capped), capped)
    return Budget(2 * len(rounds), sum(2 * hybrid_candidates(pool) for pool in rounds))


def recommend_budget(
    k: int,
    liked: int,
    disliked: int,
    strategy: RecommendStrategy,
    diversity: float,
    capped: bool,
) -> Budget:
    if strategy is RecommendStrategy.AVERAGE_VECTOR:
        return nearest_budget(k, diversity, capped)
    size = best_score_list_size(pool_size(k, diversity > 0 or capped), disliked)
    # without dislikes or a cap the first lists are always enough (recommendations.py)
    rounds = [size, wider(size)] if disliked or capped else [size]
    return Budget(liked * len(rounds), liked * sum(rounds))


# The share of the catalogue within cosine distance r of its densest book, measured on the
# shipped catalogue (docs/decisions.md, "Pricing a radius search"): (r, share) points, joined
# by straight lines; from the last on, the whole catalogue.
RADIUS_SHARE = (
    (0.0, 0.003),
    (0.3, 0.003),
    (0.4, 0.01),
    (0.5, 0.05),
    (0.55, 0.13),
    (0.6, 0.28),
    (0.65, 0.48),
    (0.7, 0.7),
    (0.75, 0.84),
    (0.8, 0.94),
    (0.85, 0.98),
    (0.9, 1.0),
)


def radius_reach(r: float, books: int) -> int:
    """How many books a range search of radius r may match in a catalogue of ``books``:
    which books it matches is known only once it has run, so it is priced by the share the
    range covers around the densest book (r of 0.9 and more: every book)."""
    share = 1.0
    for (r0, s0), (r1, s1) in pairwise(RADIUS_SHARE):
        if r <= r1:
            share = s0 + (s1 - s0) * (max(r, r0) - r0) / (r1 - r0)
            break
    return max(1, round(books * share))
