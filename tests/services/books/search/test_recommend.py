"""recommend over GraphQL, against exact numpy search over the shipped vectors: Qdrant's
AVERAGE_VECTOR and BEST_SCORE with and without dislikes, filters and exclusions combined,
diversity as exact MMR, the author cap; and what it refuses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from lookalike.services.books.search.diversity import pool_size
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.vector_math import Matrix
from tests.conftest import both_backends, distance_tolerance, error_codes, gql
from tests.exact_search import (
    AUTHORS,
    HORROR_2000S_ARGUMENT,
    IDS,
    ROW,
    Ranked,
    assert_is_mmr,
    assert_same_ranking,
    capped,
    everywhere,
    exact_average_vector,
    exact_best_score,
    horror_2000s,
    index_vectors,
)

pytestmark = both_backends

RECOMMEND = """query($liked: [ID!]!, $disliked: [ID!], $k: Int!, $strategy: RecommendStrategy!,
                     $filter: BookFilter, $exclude: [ID!], $diversity: Float, $cap: Int) {
  recommend(liked: $liked, disliked: $disliked, k: $k, strategy: $strategy, filter: $filter,
            exclude: $exclude, diversity: $diversity, maxPerAuthor: $cap) {
    distance book { id author } } }"""
STRATEGIES = ("AVERAGE_VECTOR", "BEST_SCORE")


@pytest.fixture(scope="module")
def vectors(settings: Settings) -> Matrix:
    return index_vectors(settings)


def recommend(api: TestClient, **variables: Any) -> tuple[list[dict[str, Any]], int]:
    variables.setdefault("k", 10)
    variables.setdefault("strategy", "AVERAGE_VECTOR")
    body = gql(api, RECOMMEND, **variables)
    assert "errors" not in body, body["errors"]
    return body["data"]["recommend"], body["extensions"]["cost"]["redisRoundTrips"]


def exact(
    vectors: Matrix,
    strategy: str,
    liked: list[str],
    disliked: list[str],
    excluded: set[str] | None = None,
    keep: Any = everywhere,
) -> Ranked:
    leave_out = set(liked) | set(disliked) | (excluded or set())
    ranking = exact_average_vector if strategy == "AVERAGE_VECTOR" else exact_best_score
    return ranking(vectors, liked, disliked, leave_out, keep)


def examples(seed: int, liked: int, disliked: int) -> tuple[list[str], list[str]]:
    chosen = [IDS[int(r)] for r in np.random.default_rng(seed).choice(len(IDS), 8, replace=False)]
    return chosen[:liked], chosen[4 : 4 + disliked]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("disliked", [0, 1, 3])
def test_recommend_is_the_exact_ranking(
    api: TestClient, settings: Settings, vectors: Matrix, strategy: str, disliked: int
) -> None:
    for seed in range(4):
        liked_ids, disliked_ids = examples(10 * disliked + seed, 1 + seed % 4, disliked)
        found, _ = recommend(api, liked=liked_ids, disliked=disliked_ids, strategy=strategy)
        expected = exact(vectors, strategy, liked_ids, disliked_ids)[:10]
        assert_same_ranking(found, expected, distance_tolerance(settings))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("excluded", [3, 300])  # asked for and dropped; a TAG filter
def test_filters_and_exclusions_combined_are_exact(
    api: TestClient, settings: Settings, vectors: Matrix, strategy: str, excluded: int
) -> None:
    rng = np.random.default_rng(excluded)
    seen = {IDS[int(r)] for r in rng.choice(len(IDS), excluded, replace=False)}
    liked, disliked = ["26415", "3008"], ["9"]
    seen -= {*liked, *disliked}
    # the nearest horror books among those not seen, with something seen among them
    nearest = exact(vectors, strategy, liked, disliked, keep=horror_2000s)[:10]
    seen |= {nearest[0][1], nearest[3][1]}
    found, _ = recommend(
        api,
        liked=liked,
        disliked=disliked,
        strategy=strategy,
        filter=HORROR_2000S_ARGUMENT,
        exclude=sorted(seen),
    )
    expected = exact(vectors, strategy, liked, disliked, seen, horror_2000s)[:10]
    assert len(found) == 10
    assert not {m["book"]["id"] for m in found} & (seen | {*liked, *disliked})
    assert all(horror_2000s(ROW[m["book"]["id"]]) for m in found)
    assert_same_ranking(found, expected, distance_tolerance(settings))


def test_average_vector_distance_is_to_the_query_vector(
    api: TestClient, settings: Settings
) -> None:
    """One liked book: the query is that book, so its recommendations are its neighbours at
    the same distances (its twin 911 first, at 0)."""
    alone, _ = recommend(api, liked=["316"], k=5)
    body = gql(api, '{ book(id: "316") { similar(k: 5) { distance book { id author } } } }')
    assert alone == body["data"]["book"]["similar"]
    assert alone[0]["book"]["id"] == "911"


def test_best_score_distances_read_as_the_documentation_says(
    api: TestClient, settings: Settings
) -> None:
    """A copy of a liked book is at 0; with its twin disliked, every book is nearer the
    dislike than the like (a tie goes to the dislike), so every distance is 1 - (-(n^2)),
    between 1 and 2."""
    tolerance = distance_tolerance(settings)
    copy, _ = recommend(api, liked=["316"], strategy="BEST_SCORE", k=3)
    assert copy[0]["book"]["id"] == "911"
    assert copy[0]["distance"] == pytest.approx(0, abs=tolerance)
    pushed, _ = recommend(api, liked=["316"], disliked=["911"], strategy="BEST_SCORE", k=5)
    assert len(pushed) == 5
    assert all(1 <= m["distance"] <= 2 for m in pushed)
    assert [m["distance"] for m in pushed] == sorted(m["distance"] for m in pushed)


@pytest.mark.parametrize(("strategy", "diversity"), [("AVERAGE_VECTOR", 0.5), ("BEST_SCORE", 0.3)])
def test_diversity_is_exact_mmr_over_the_candidates(
    api: TestClient, settings: Settings, vectors: Matrix, strategy: str, diversity: float
) -> None:
    liked, disliked = ["9", "26415"], ["942"]
    tolerance = distance_tolerance(settings)
    found, _ = recommend(
        api, liked=liked, disliked=disliked, strategy=strategy, diversity=diversity, k=8
    )
    ranking = exact(vectors, strategy, liked, disliked)
    relevance = {i: 1 - d for d, i in ranking}
    picked = [m["book"]["id"] for m in found]
    assert len(picked) == 8
    assert_is_mmr(picked, ranking[: pool_size(8, True)], relevance, vectors, diversity, tolerance)
    plain, _ = recommend(api, liked=liked, disliked=disliked, strategy=strategy, k=8)
    assert picked != [m["book"]["id"] for m in plain]  # it did change something
    for match in found:  # each with its own distance
        assert match["distance"] == pytest.approx(1 - relevance[match["book"]["id"]], abs=tolerance)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_max_per_author_is_the_best_books_that_keep_the_cap(
    api: TestClient, settings: Settings, vectors: Matrix, strategy: str
) -> None:
    liked = ["9", "15"]  # Transformers: a few writers wrote many of the nearest
    ranking = exact(vectors, strategy, liked, [])
    assert max(np.unique([AUTHORS[ROW[i]] for _, i in ranking[:10]], return_counts=True)[1]) > 1
    found, _ = recommend(api, liked=liked, strategy=strategy, cap=1)
    assert_same_ranking(found, capped(ranking, 10, 1), distance_tolerance(settings))


PROLIFIC = [  # twelve authors with many books each: 181 books in the shipped catalogue
    "terry pratchett", "mary pope osborne", "brandon sanderson", "margaret peterson haddix",
    "jodi taylor", "stephen king", "brian k. vaughan", "isaac asimov", "philip k. dick",
    "robert kirkman", "james dashner", "neil gaiman",
]  # fmt: skip


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("liked", "disliked"), [(["1372", "9"], []), (["1372", "9"], ["1436"])])
def test_a_cap_that_empties_the_first_pool_still_fills_k(
    api: TestClient,
    settings: Settings,
    vectors: Matrix,
    strategy: str,
    liked: list[str],
    disliked: list[str],
) -> None:
    """One book per author among twelve prolific authors: the first pool of best-scored books
    holds fewer than twelve authors, so the second search must pick from a wider pool, and
    all twelve come back (BEST_SCORE once kept picking from the first pool: 9 of 12)."""
    authors = set(PROLIFIC)

    def by_them(row: int) -> bool:
        return AUTHORS[row].strip().casefold() in authors

    found, _ = recommend(
        api, liked=liked, disliked=disliked, strategy=strategy, k=12, cap=1,
        filter={"authors": PROLIFIC},
    )  # fmt: skip
    ranking = exact(vectors, strategy, liked, disliked, keep=by_them)
    assert len(found) == 12
    assert_same_ranking(found, capped(ranking, 12, 1), distance_tolerance(settings))


def test_no_diversity_is_the_answer_without_it(api: TestClient) -> None:
    for strategy in STRATEGIES:
        plain, _ = recommend(api, liked=["9", "26415"], disliked=["3"], strategy=strategy)
        zero, _ = recommend(
            api, liked=["9", "26415"], disliked=["3"], strategy=strategy, diversity=0
        )
        assert zero == plain


def test_liked_disliked_and_excluded_books_never_come_back(api: TestClient) -> None:
    first, _ = recommend(api, liked=["9"], k=5)
    shown = [m["book"]["id"] for m in first]
    again, _ = recommend(api, liked=["9"], disliked=[shown[0]], exclude=shown[1:], k=5)
    ids = {m["book"]["id"] for m in again}
    assert len(ids) == 5
    assert not ids & {"9", *shown}


def test_unknown_excluded_ids_are_ignored(api: TestClient) -> None:
    plain, _ = recommend(api, liked=["9"], k=5)
    ignored, _ = recommend(api, liked=["9"], k=5, exclude=["999999999", "deleted", "", "x" * 64])
    assert ignored == plain


@pytest.mark.parametrize("where", ["liked", "disliked"])
@pytest.mark.parametrize("unknown", ["999999999", "not-an-id", "1" * 16])
def test_an_unknown_liked_or_disliked_book_is_book_not_found(
    api: TestClient, where: str, unknown: str
) -> None:
    ids = {"liked": ["9"], "disliked": ["26415"]}
    ids[where] = [*ids[where], unknown]
    query = """query($liked: [ID!]!, $disliked: [ID!]) {
      bad: recommend(liked: $liked, disliked: $disliked) { book { id } }
      good: recommend(liked: ["9"], k: 2) { book { id } } }"""
    body = gql(api, query, **ids)
    assert error_codes(body) == ["BOOK_NOT_FOUND"]
    assert body["errors"][0]["path"] == ["bad"]
    assert body["errors"][0]["extensions"]["id"] == unknown
    assert body["data"] is None  # recommend is non-null: the error reaches the root


def test_a_book_with_no_description_counts_for_nothing(api: TestClient) -> None:
    """Book 1070 has no embedding: liked alone there is nothing to recommend; beside another
    book it changes nothing (and is itself never recommended)."""
    alone, _ = recommend(api, liked=["1070"])
    assert alone == []
    with_it, _ = recommend(api, liked=["1070", "9"], k=5)
    without, _ = recommend(api, liked=["9"], k=5, exclude=["1070"])
    assert with_it == without


@pytest.mark.parametrize(
    ("variables", "argument"),
    [
        ({"liked": []}, "liked"),
        ({"liked": [str(i) for i in range(1, 52)]}, "liked"),
        ({"liked": ["9"], "disliked": [str(i) for i in range(1, 52)]}, "disliked"),
        ({"liked": ["9"], "exclude": [str(i) for i in range(501)]}, "exclude"),
        ({"liked": ["9"], "exclude": ["1"] * 501}, "exclude"),
        ({"liked": ["9"], "k": 0}, "k"),
        ({"liked": ["9"], "k": 101}, "k"),
        ({"liked": ["9"], "diversity": -0.1}, "diversity"),
        ({"liked": ["9"], "diversity": 1.5}, "diversity"),
        ({"liked": ["9"], "cap": 0}, "maxPerAuthor"),
        ({"liked": ["9"], "cap": 101}, "maxPerAuthor"),
        ({"liked": ["9"], "filter": {"minRating": 7}}, "minRating"),
    ],
)
def test_out_of_bounds_is_bad_user_input_before_redis(
    api: TestClient, variables: dict[str, Any], argument: str
) -> None:
    variables.setdefault("k", 10)
    variables.setdefault("strategy", "BEST_SCORE")
    body = gql(api, RECOMMEND, **variables)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["argument"] == argument
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_defaults_fragments_and_aliases(api: TestClient) -> None:
    query = """query($likes: [ID!]!) { a: recommend(liked: $likes) { ...M }
      b: recommend(liked: $likes, strategy: AVERAGE_VECTOR, k: 10, disliked: []) { ...M } }
      fragment M on BookMatch { distance book { id title } }"""
    body = gql(api, query, likes=["9"])
    assert "errors" not in body
    assert len(body["data"]["a"]) == 10  # k defaults to 10, AVERAGE_VECTOR, nothing disliked
    assert body["data"]["a"] == body["data"]["b"]
