"""The candidate searches recommend and diversity run on Redis (HNSW, approximate) give what
exact numpy search gives over the vectors the index holds: pools of 10 to 500 nearest with
exclusions and filters, BEST_SCORE from the lists around each liked book, MMR over a pool.

The queries are the catalogue's own thorough KNN (``BookQueries.knn(thorough=True)``: an
EF_RUNTIME of at least LOOKALIKE_HNSW_EF_CANDIDATES and 4 x K, which exact search needs; see
services/books/queries.py). The figures are printed (pytest -s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import pytest
from redisvl.query.filter import FilterExpression
from starlette.testclient import TestClient

from lookalike.services.books.filters import BookFilter, excluding
from lookalike.services.books.queries import BookQueries
from lookalike.services.books.records import VECTOR_FIELD, BookFields
from lookalike.services.books.search.diversity import Diversity, pick, wider
from lookalike.services.books.search.recommendations import (
    NeighbourList,
    best_score_list_size,
    best_score_ranking,
    best_scores,
)
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.vector_math import Matrix, from_blobs, unit_rows
from lookalike.services.redis.connection import open_client
from lookalike.services.redis.replicas import Reads
from lookalike.services.redis.searches import Reply, SearchPipeline
from tests.conftest import distance_tolerance
from tests.exact_search import (
    EMBEDDED,
    HORROR_2000S,
    IDS,
    ROW,
    SHIPPED,
    everywhere,
    exact_nearest,
    horror_2000s,
)
from tests.exact_search import index_vectors as exact_index_vectors

POOL_FIELDS = BookFields(frozenset({"author"}), vector=True)


@pytest.fixture(scope="module")
def index_vectors(settings: Settings) -> Matrix:
    return exact_index_vectors(settings)


@dataclass(frozen=True)
class Hit:
    book_id: str
    distance: float
    vector: bytes | None
    author: str


def knn(vector: np.ndarray, k: int, settings: Settings, *filters: FilterExpression | None) -> Any:
    return BookQueries(settings).knn(
        vector.astype(np.float32).tobytes(), k, filters, POOL_FIELDS, thorough=True
    )


def search(settings: Settings, queries: Sequence[Any]) -> list[list[Hit]]:
    """All queries in one pipeline, as the catalogue sends them."""

    async def run() -> list[Reply]:
        client = await open_client(settings.redis_url or "", settings.redis_timeout)
        try:
            return await SearchPipeline(Reads(client), settings.index_name).run(queries)
        finally:
            await client.aclose()

    prefix = settings.key_prefix + ":"
    return [
        [
            Hit(
                key.removeprefix(prefix),
                float(fields[b"vector_distance"]),
                fields.get(VECTOR_FIELD.encode()),
                fields[b"author"].decode(),
            )
            for key, fields in reply.hits
        ]
        for reply in anyio.run(run)
    ]


def assert_same_neighbours(
    found: Sequence[Hit], expected: Sequence[tuple[float, str]], tolerance: float
) -> None:
    """The same books at the same distances; books tied (within the tolerance) with the last
    one may be swapped for each other."""
    assert len(found) == len(expected)
    assert [h.distance for h in found] == pytest.approx([d for d, _ in expected], abs=tolerance)
    last = expected[-1][0]
    firm = {i for d, i in expected if d < last - tolerance}
    assert firm <= {h.book_id for h in found}


@pytest.mark.parametrize("k", [10, 50, 250, 500])
def test_knn_pools_are_the_exact_nearest_with_exclusions(
    api: TestClient, settings: Settings, index_vectors: Matrix, k: int
) -> None:
    rng = np.random.default_rng(k)
    sources = [IDS[int(r)] for r in rng.choice(len(IDS), 20, replace=False)]
    excluded = {IDS[int(r)] for r in rng.choice(len(IDS), 200, replace=False)}
    queries = [knn(index_vectors[ROW[s]], k, settings, excluding(excluded | {s})) for s in sources]
    for source, found in zip(sources, search(settings, queries), strict=True):
        leave_out = excluded | {source}
        expected = exact_nearest(index_vectors, index_vectors[ROW[source]], leave_out)[:k]
        assert not leave_out & {h.book_id for h in found}
        assert_same_neighbours(found, expected, distance_tolerance(settings))


def test_knn_pools_with_filters_and_exclusions_are_exact(
    api: TestClient, settings: Settings, index_vectors: Matrix
) -> None:
    excluded = {"3008", "2706", "519"}
    query = knn(
        index_vectors[ROW["26415"]],
        50,
        settings,
        HORROR_2000S.expression(),
        excluding(excluded | {"26415"}),
    )
    (found,) = search(settings, [query])
    expected = exact_nearest(
        index_vectors, index_vectors[ROW["26415"]], excluded | {"26415"}, horror_2000s
    )[:50]
    assert_same_neighbours(found, expected, distance_tolerance(settings))


def best_score_from_redis(
    settings: Settings,
    liked: list[str],
    disliked: list[str],
    needed: int,
    facets: BookFilter,
) -> tuple[list[str], np.ndarray, int]:
    """BEST_SCORE as stage 2 will run it: a KNN list around each liked book (with the filter,
    the examples left out), widened until the ranking is certain."""
    vectors = unit_rows(SHIPPED.matrix([EMBEDDED[ROW[i]] for i in liked + disliked]))
    liked_rows, disliked_rows = vectors[: len(liked)], vectors[len(liked) :]
    size, rounds = best_score_list_size(needed, len(disliked)), 0
    while True:
        rounds += 1
        leave_out = excluding(set(liked) | set(disliked))
        lists = search(
            settings,
            [knn(v, size, settings, facets.expression(), leave_out) for v in liked_rows],
        )
        distinct = {h.book_id: h for found in lists for h in found}
        candidates = list(distinct.values())
        at = {book_id: n for n, book_id in enumerate(distinct)}
        ranking = best_score_ranking(
            from_blobs([h.vector for h in candidates]),
            liked_rows,
            disliked_rows,
            [
                NeighbourList(tuple(at[h.book_id] for h in found), len(found) < size)
                for found in lists
            ],
            needed,
        )
        if ranking.certain:
            top = ranking.order[:needed]
            return [candidates[n].book_id for n in top], ranking.scores[top], rounds
        size = wider(size)


@pytest.mark.parametrize("with_filter", [False, True])
def test_best_score_from_redis_lists_is_the_exact_best_score(
    api: TestClient, settings: Settings, index_vectors: Matrix, with_filter: bool
) -> None:
    facets = HORROR_2000S if with_filter else BookFilter()
    rounds_used = []
    for seed in range(8):
        rng = np.random.default_rng(1000 + seed)
        chosen = [IDS[int(r)] for r in rng.choice(len(IDS), 6, replace=False)]
        liked, disliked = chosen[: 1 + seed % 4], chosen[4 : 4 + seed % 3]

        examples = set(liked + disliked)
        keep = horror_2000s if with_filter else everywhere
        found, scores, rounds = best_score_from_redis(settings, liked, disliked, 10, facets)
        rounds_used.append(rounds)
        everything = best_scores(
            index_vectors,
            index_vectors[[ROW[i] for i in liked]],
            index_vectors[[ROW[i] for i in disliked]],
        )
        eligible = [r for r in range(len(IDS)) if keep(r) and IDS[r] not in examples]
        expected = np.sort(everything[eligible])[::-1][:10]
        assert all(keep(ROW[i]) and i not in examples for i in found)
        assert scores == pytest.approx(expected, abs=1e-3)
        assert everything[[ROW[i] for i in found]] == pytest.approx(scores, abs=1e-3)
    print(f"\nBEST_SCORE, filter {with_filter}: round trips per request {rounds_used}")


@pytest.mark.parametrize("diversity", [0.3, 0.7])
def test_mmr_over_a_redis_pool_is_exact_mmr(
    api: TestClient, settings: Settings, index_vectors: Matrix, diversity: float
) -> None:
    """Every pick is, within float rounding, the best MMR choice given the picks before it,
    computed in numpy over the exact pool."""
    k, pool = 10, Diversity(diversity=diversity).pool_size(10)
    for source in ("9", "26415", "942"):
        (found,) = search(
            settings, [knn(index_vectors[ROW[source]], pool, settings, excluding({source}))]
        )
        relevance = np.array([1 - h.distance for h in found])
        picks = pick(
            relevance,
            from_blobs([h.vector for h in found]),
            [h.author for h in found],
            k,
            Diversity(diversity=diversity),
        ).rows
        chosen = [ROW[found[n].book_id] for n in picks]
        exact = exact_nearest(index_vectors, index_vectors[ROW[source]], {source})[:pool]
        pool_rows = [ROW[i] for _, i in exact]
        exact_relevance = {ROW[i]: 1 - d for d, i in exact}
        assert set(chosen) <= set(pool_rows)
        weight = 1 - diversity
        for step in range(1, k):
            before = chosen[:step]
            best = max(
                weight * exact_relevance[r]
                - (1 - weight) * max(float(index_vectors[r] @ index_vectors[b]) for b in before)
                for r in pool_rows
                if r not in before
            )
            r = chosen[step]
            value = weight * exact_relevance[r] - (1 - weight) * max(
                float(index_vectors[r] @ index_vectors[b]) for b in before
            )
            assert value >= best - 1e-4
