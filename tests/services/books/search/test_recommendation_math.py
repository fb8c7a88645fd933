"""Qdrant's two recommend strategies, MMR and the author cap, checked against plain numpy (and
plain Python) over the shipped catalogue's vectors."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.books.search.diversity import NO_DIVERSITY, Diversity, pick, wider
from lookalike.services.books.search.recommendations import (
    NeighbourList,
    average_vector_query,
    best_score_ranking,
    best_scores,
)
from lookalike.services.core.errors import BadUserInput
from lookalike.services.embeddings.vector_math import Matrix, unit_rows

SHIPPED = read_shipped()
EMBEDDED = [r for r in SHIPPED.records if r["description"].strip()]
IDS = [r["id"] for r in EMBEDDED]
AUTHORS = [r["author"] for r in EMBEDDED]
MATRIX: Matrix = unit_rows(SHIPPED.matrix(EMBEDDED))
ROW = {book_id: row for row, book_id in enumerate(IDS)}


def qdrant_best_score(candidate: int, liked: Sequence[int], disliked: Sequence[int]) -> float:
    """The pseudocode of Qdrant's documentation ("Best score strategy"), one book at a time,
    in Python floats:

        let score = if best_positive_score > best_negative_score {
            best_positive_score
        } else {
            -(best_negative_score * best_negative_score)
        };
    """

    def similarity(a: int, b: int) -> float:
        return sum(float(x) * float(y) for x, y in zip(MATRIX[a], MATRIX[b], strict=True))

    best_positive = max(similarity(candidate, row) for row in liked)
    best_negative = max((similarity(candidate, row) for row in disliked), default=-math.inf)
    if best_positive > best_negative:
        return best_positive
    return -(best_negative * best_negative)


def examples(seed: int, liked: int, disliked: int) -> tuple[list[int], list[int]]:
    rows = np.random.default_rng(seed).choice(len(IDS), liked + disliked, replace=False)
    return [int(r) for r in rows[:liked]], [int(r) for r in rows[liked:]]


def test_average_vector_is_qdrants_formula() -> None:
    liked, disliked = examples(1, 3, 2)
    positive = MATRIX[liked].mean(axis=0)
    expected = positive + (positive - MATRIX[disliked].mean(axis=0))
    assert np.allclose(average_vector_query(MATRIX[liked], MATRIX[disliked]), expected, atol=1e-6)
    assert np.allclose(average_vector_query(MATRIX[liked], MATRIX[[]]), positive, atol=1e-6)
    # one liked book: the query is that book, so it is its own nearest at distance 0
    query = average_vector_query(MATRIX[[ROW["9"]]], MATRIX[[]])
    assert int(np.argmax(MATRIX @ unit_rows(query)[0])) in {ROW["9"]}


@pytest.mark.parametrize(("seed", "liked", "disliked"), [(2, 1, 0), (3, 3, 1), (4, 5, 3)])
def test_best_score_is_qdrants_definition_for_every_book(
    seed: int, liked: int, disliked: int
) -> None:
    positive, negative = examples(seed, liked, disliked)
    found = best_scores(MATRIX, MATRIX[positive], MATRIX[negative])
    sample = np.random.default_rng(seed).choice(len(IDS), 60, replace=False)
    for row in sample:
        expected = qdrant_best_score(int(row), positive, negative)
        assert found[row] == pytest.approx(expected, abs=1e-9)


def test_best_score_orders_as_the_documentation_says() -> None:
    """Books nearer a liked book rank by that similarity; books nearer a disliked one rank
    below them, the nearer to it (when that similarity is positive) the lower. (A book whose
    best disliked similarity is negative is where the documented formula stops inverting,
    Qdrant pull request 2904: it ranks by the square.)"""
    liked, disliked = examples(5, 2, 2)
    scores = best_scores(MATRIX, MATRIX[liked], MATRIX[disliked])
    positive = (MATRIX @ MATRIX[liked].T).max(axis=1)
    negative = (MATRIX @ MATRIX[disliked].T).max(axis=1)
    near_liked = positive > negative
    assert near_liked.any()
    assert (~near_liked).any()
    assert np.allclose(scores[near_liked], positive[near_liked], atol=1e-12)
    assert np.allclose(scores[~near_liked], -(negative[~near_liked] ** 2), atol=1e-12)
    # above every book nearer a dislike whenever the liked similarity is positive
    assert scores[near_liked & (positive > 0)].min() > scores[~near_liked].max()
    near_disliked = ~near_liked & (negative >= 0)
    by_score = np.argsort(-scores[near_disliked], kind="stable")
    assert np.all(np.diff(negative[near_disliked][by_score]) >= -1e-12)
    # a copy of a liked book scores 1: distance 0
    assert best_scores(MATRIX[liked[:1]], MATRIX[liked], MATRIX[disliked])[0] == pytest.approx(1)


def nearest_lists(
    liked: Sequence[int], eligible: np.ndarray, size: int
) -> tuple[list[int], list[NeighbourList]]:
    """What a search of ``size`` around each liked book returns (exact, numpy), merged."""
    found = []
    for row in liked:
        similarity = MATRIX @ MATRIX[row]
        found.append([int(r) for r in np.argsort(-similarity, kind="stable") if eligible[r]][:size])
    union = list(dict.fromkeys(r for ranked in found for r in ranked))
    at = {r: n for n, r in enumerate(union)}
    lists = [NeighbourList(tuple(at[r] for r in ranked), len(ranked) < size) for ranked in found]
    return union, lists


@pytest.mark.parametrize("needed", [5, 10, 50])
def test_best_score_ranking_is_exact_whenever_it_says_it_is(needed: int) -> None:
    """Searches of ``needed`` around each liked book, widened until the ranking is certain,
    give the catalogue's first ``needed`` by BEST_SCORE (compared by score: ties may swap)."""
    widened = 0
    for seed in range(20):
        liked, disliked = examples(100 + seed, 1 + seed % 5, seed % 4)
        eligible = np.ones(len(IDS), dtype=bool)
        eligible[liked + disliked] = False
        size = needed
        while True:
            rows, lists = nearest_lists(liked, eligible, size)
            ranking = best_score_ranking(
                MATRIX[rows], MATRIX[liked], MATRIX[disliked], lists, needed
            )
            if ranking.certain:
                break
            size = wider(size)
            widened += 1
        found = [rows[r] for r in ranking.order[:needed]]
        everything = best_scores(MATRIX, MATRIX[liked], MATRIX[disliked])
        expected = np.sort(everything[eligible])[::-1][:needed]
        assert len(set(found)) == needed
        assert all(eligible[row] for row in found)
        assert np.allclose(everything[found], expected, atol=1e-12)
    assert widened <= 5  # only requests with dislikes may need a second search


def test_best_score_ranking_is_not_certain_when_every_candidate_is_nearer_a_dislike() -> None:
    """Books 316 and 911 share a description: liking one and disliking the other puts every
    book on the disliked side, where the nearest are the worst and the best are those least
    related to it (similarity nearest 0, by the square); only the whole catalogue can say
    which those are."""
    liked, disliked = [ROW["316"]], [ROW["911"]]
    eligible = np.ones(len(IDS), dtype=bool)
    eligible[liked + disliked] = False
    rows, lists = nearest_lists(liked, eligible, 50)
    assert not best_score_ranking(MATRIX[rows], MATRIX[liked], MATRIX[disliked], lists, 5).certain
    rows, lists = nearest_lists(liked, eligible, len(IDS))
    whole = best_score_ranking(MATRIX[rows], MATRIX[liked], MATRIX[disliked], lists, 5)
    assert whole.certain
    unrelated = np.argsort(np.abs(MATRIX[rows] @ MATRIX[ROW["911"]]), kind="stable")[:5]
    assert sorted(whole.order[:5]) == sorted(int(r) for r in unrelated)


def test_without_dislikes_the_first_lists_are_always_enough() -> None:
    for seed in range(30):
        liked, _ = examples(300 + seed, 1 + seed % 6, 0)
        eligible = np.ones(len(IDS), dtype=bool)
        eligible[liked] = False
        rows, lists = nearest_lists(liked, eligible, 10)
        assert best_score_ranking(MATRIX[rows], MATRIX[liked], MATRIX[[]], lists, 10).certain


def test_a_list_that_came_back_short_holds_everything() -> None:
    """A filter that lets through 12 books: the list of 50 around a liked book holds them
    all, so the ranking is certain whatever the dislikes."""
    liked, disliked = [ROW["316"]], [ROW["911"]]
    eligible = np.zeros(len(IDS), dtype=bool)
    eligible[np.random.default_rng(9).choice(len(IDS), 12, replace=False)] = True
    eligible[liked + disliked] = False
    rows, lists = nearest_lists(liked, eligible, 50)
    assert lists[0].complete
    ranking = best_score_ranking(MATRIX[rows], MATRIX[liked], MATRIX[disliked], lists, 5)
    assert ranking.certain
    everything = best_scores(MATRIX, MATRIX[liked], MATRIX[disliked])
    expected = np.sort(everything[eligible])[::-1][:5]
    assert np.allclose(ranking.scores[ranking.order[:5]], expected, atol=1e-12)


# --- diversity ------------------------------------------------------------------------------


def pool_of(book_id: str, size: int) -> tuple[list[int], np.ndarray]:
    """The ``size`` nearest other books, nearest first, and their relevance (similarity)."""
    similarity = MATRIX @ MATRIX[ROW[book_id]]
    ranked = [int(r) for r in np.argsort(-similarity, kind="stable") if r != ROW[book_id]]
    return ranked[:size], similarity[ranked[:size]]


def naive_mmr(relevance: np.ndarray, rows: Sequence[int], k: int, diversity: float) -> list[int]:
    """MMR as the paper writes it, in Python floats: the first pick is the most relevant."""
    weight = 1 - diversity
    picked = [0]
    while len(picked) < min(k, len(rows)):
        best, best_value = -1, -math.inf
        for n in range(len(rows)):
            if n in picked:
                continue
            nearest = max(float(MATRIX[rows[n]] @ MATRIX[rows[p]]) for p in picked)
            value = weight * float(relevance[n]) - (1 - weight) * nearest
            if value > best_value:
                best, best_value = n, value
        picked.append(best)
    return picked


def test_no_diversity_keeps_the_nearest_order_exactly() -> None:
    rows, relevance = pool_of("26415", 50)
    assert pick(relevance, MATRIX[rows], [AUTHORS[r] for r in rows], 10, NO_DIVERSITY).rows == list(
        range(10)
    )


@pytest.mark.parametrize("diversity", [0.1, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("book_id", ["9", "26415", "942"])
def test_mmr_picks_what_its_definition_picks(book_id: str, diversity: float) -> None:
    rows, relevance = pool_of(book_id, 50)
    authors = [AUTHORS[r] for r in rows]
    found = pick(relevance, MATRIX[rows], authors, 10, Diversity(diversity=diversity)).rows
    assert found == naive_mmr(relevance, rows, 10, diversity)
    assert found[0] == 0  # the nearest first


def test_more_diversity_spreads_the_picks() -> None:
    rows, relevance = pool_of("9", 50)
    authors = [AUTHORS[r] for r in rows]

    def spread(diversity: float) -> float:
        found = pick(relevance, MATRIX[rows], authors, 10, Diversity(diversity=diversity)).rows
        vectors = MATRIX[[rows[n] for n in found]]
        pairs = vectors @ vectors.T
        return float(pairs[np.triu_indices(len(found), 1)].mean())

    assert spread(0.0) > spread(0.3) > spread(0.7)


def test_the_author_cap_is_the_nearest_books_that_keep_it() -> None:
    rows, relevance = pool_of("9", 200)  # Transformers: many books by a few writers
    authors = [AUTHORS[r] for r in rows]
    assert max(Counter(authors[:10]).values()) > 1
    found = pick(relevance, MATRIX[rows[:50]], authors[:50], 10, Diversity(max_per_author=1))
    expected: list[int] = []
    for n, author in enumerate(authors):  # greedy over the whole ranking, by hand
        taken = {authors[e].casefold() for e in expected}
        if len(expected) < 10 and author.casefold() not in taken:
            expected.append(n)
    assert found.rows == expected
    assert not found.short
    with_mmr = pick(relevance, MATRIX[rows], authors, 10, Diversity(0.4, max_per_author=2))
    assert max(Counter(authors[n].casefold() for n in with_mmr.rows).values()) <= 2


def test_a_pool_too_small_for_the_cap_says_so() -> None:
    authors = ["Ann Leckie"] * 6 + ["ann leckie "] * 4
    rows = list(range(10))
    found = pick(np.linspace(1, 0, 10), MATRIX[rows], authors, 5, Diversity(max_per_author=2))
    assert found.rows == [0, 1]
    assert found.short
    whole = pick(
        np.linspace(1, 0, 10),
        MATRIX[rows],
        authors,
        5,
        Diversity(max_per_author=2),
        pool_is_everything=True,
    )
    assert not whole.short


def test_pool_sizes() -> None:
    assert NO_DIVERSITY.pool_size(10) == 10
    assert Diversity(diversity=0.2).pool_size(3) == 50
    assert Diversity(max_per_author=1).pool_size(30) == 150
    assert wider(50) == 200


@pytest.mark.parametrize(
    ("diversity", "cap"), [(-0.01, None), (1.01, None), (math.nan, None), (0, 0), (0, 101)]
)
def test_diversity_out_of_bounds_is_bad_user_input(diversity: float, cap: int | None) -> None:
    with pytest.raises(BadUserInput):
        Diversity(diversity=diversity, max_per_author=cap)
