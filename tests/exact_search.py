"""Exact search in numpy over the shipped vectors, as the index holds them: what the API's
answers are compared with (nearest books, BEST_SCORE, MMR, the author cap, filters)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import pytest

from lookalike.services.books.filters import BookFilter
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.books.search.recommendations import average_vector_query, best_scores
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.vector_math import Matrix, unit_rows

SHIPPED = read_shipped()
RECORDS = {r["id"]: r for r in SHIPPED.records}
EMBEDDED = [r for r in SHIPPED.records if r["description"].strip()]
IDS = [r["id"] for r in EMBEDDED]
ROW = {book_id: row for row, book_id in enumerate(IDS)}
AUTHORS = [r["author"] for r in EMBEDDED]

Keep = Callable[[int], bool]
Ranked = list[tuple[float, str]]  # (distance, id), best first


def index_vectors(settings: Settings) -> Matrix:
    """The vectors as the index holds them (FLOAT16 rounds them), unit length."""
    return unit_rows(SHIPPED.matrix(EMBEDDED).astype(settings.vector_type))


def everywhere(row: int) -> bool:
    return True


def rows_of(ids: Sequence[str]) -> list[int]:
    return [ROW[i] for i in ids if i in ROW]


def ranked_by(distances: np.ndarray, leave_out: Collection[str], keep: Keep = everywhere) -> Ranked:
    """Every book but those left out and those ``keep`` refuses, by distance (ties: id)."""
    return sorted(
        (float(distances[r]), IDS[r])
        for r in range(len(IDS))
        if IDS[r] not in leave_out and keep(r)
    )


def exact_nearest(
    vectors: Matrix, query: np.ndarray, leave_out: Collection[str], keep: Keep = everywhere
) -> Ranked:
    """Every eligible book by cosine distance to the query vector."""
    return ranked_by(1 - vectors @ unit_rows(query)[0], leave_out, keep)


def exact_average_vector(
    vectors: Matrix, liked: Sequence[str], disliked: Sequence[str], leave_out: Collection[str],
    keep: Keep = everywhere,
) -> Ranked:  # fmt: skip
    query = average_vector_query(vectors[rows_of(liked)], vectors[rows_of(disliked)])
    return exact_nearest(vectors, query, leave_out, keep)


def exact_best_score(
    vectors: Matrix, liked: Sequence[str], disliked: Sequence[str], leave_out: Collection[str],
    keep: Keep = everywhere,
) -> Ranked:  # fmt: skip
    """Every eligible book by 1 - its BEST_SCORE (the distance the API reports)."""
    scores = best_scores(vectors, vectors[rows_of(liked)], vectors[rows_of(disliked)])
    return ranked_by(1 - scores, leave_out, keep)


def assert_same_ranking(
    found: Sequence[dict[str, Any]], expected: Ranked, tolerance: float
) -> None:
    """The API's matches are the expected books at the expected distances, in order; books
    tied (within the tolerance) may swap, also with a tied book past the end."""
    assert len(found) == len(expected)
    distances = [m["distance"] for m in found]
    assert distances == pytest.approx([d for d, _ in expected], abs=tolerance)
    ids = [m["book"]["id"] for m in found]
    assert len(set(ids)) == len(ids)
    last = expected[-1][0] if expected else 0.0
    firm = {i for d, i in expected if d < last - tolerance}
    assert firm <= set(ids)


def capped(ranking: Ranked, k: int, cap: int) -> Ranked:
    """The first k of the ranking that keep at most ``cap`` books by one author."""
    taken: Counter[str] = Counter()
    found = []
    for distance, book_id in ranking:
        author = RECORDS[book_id]["author"].strip().casefold()
        if taken[author] < cap:
            found.append((distance, book_id))
            taken[author] += 1
        if len(found) == k:
            break
    return found


def assert_is_mmr(
    picked: Sequence[str],
    pool: Ranked,
    relevance: dict[str, float],
    vectors: Matrix,
    diversity: float,
    tolerance: float,
) -> None:
    """Every pick is, within the tolerance, the best MMR choice given the picks before it
    (lambda = 1 - diversity, similarity = cosine), over the exact pool (books tied with its
    last one may stand in); the first is the most relevant. ``relevance`` is 1 - distance
    of every eligible book."""
    boundary = pool[-1][0] + tolerance
    candidates = [i for _, i in pool]
    allowed = set(candidates) | {i for i in relevance if 1 - relevance[i] <= boundary}
    assert set(picked) <= allowed, set(picked) - allowed
    weight = 1 - diversity
    best_first = max(relevance[i] for i in candidates)
    assert relevance[picked[0]] >= best_first - tolerance
    for step in range(1, len(picked)):
        before = [vectors[ROW[b]] for b in picked[:step]]

        def value(book_id: str, before: list[np.ndarray] = before) -> float:
            nearest = max(float(vectors[ROW[book_id]] @ b) for b in before)
            return weight * relevance[book_id] - (1 - weight) * nearest

        best = max(value(i) for i in candidates if i not in picked[:step])
        assert value(picked[step]) >= best - 2 * tolerance, (step, picked[step])


HORROR_2000S = BookFilter(genres=("horror", "fantasy"), year_from=2000, available=True)
HORROR_2000S_ARGUMENT = {"genres": ["horror", "fantasy"], "yearFrom": 2000, "available": True}


def horror_2000s(row: int) -> bool:
    record = EMBEDDED[row]
    return (
        bool({"horror", "fantasy"} & set(record["genres"]))
        and record["year_published"] >= 2000
        and any(item["status"] == "available" for item in record["inventory"])
    )
