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
