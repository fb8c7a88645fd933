"""exclude, diversity and maxPerAuthor on similar and searchBooks, and searchBooks' three
modes, over GraphQL against exact numpy search over the shipped vectors (filters combined)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from lookalike.services.books.search.diversity import pool_size
from lookalike.services.books.search.keyword import STOPWORDS, words
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.embeddings.vector_math import Matrix, unit_rows
from tests.conftest import both_backends, distance_tolerance, error_codes, gql
from tests.exact_search import (
    HORROR_2000S_ARGUMENT,
    IDS,
    RECORDS,
    ROW,
    Keep,
    assert_is_mmr,
    assert_same_ranking,
    capped,
    everywhere,
    exact_nearest,
    horror_2000s,
    index_vectors,
)

pytestmark = both_backends

SIMILAR = """query($id: ID!, $k: Int!, $filter: BookFilter, $exclude: [ID!], $diversity: Float,
                   $cap: Int) {
  book(id: $id) { similar(k: $k, filter: $filter, exclude: $exclude, diversity: $diversity,
                          maxPerAuthor: $cap) { distance book { id author } } } }"""
SEARCH = """query($text: String!, $k: Int!, $mode: SearchMode!, $filter: BookFilter,
                  $exclude: [ID!], $diversity: Float, $cap: Int) {
  searchBooks(text: $text, k: $k, mode: $mode, filter: $filter, exclude: $exclude,
              diversity: $diversity, maxPerAuthor: $cap) { distance book { id title author } } }"""
ROBOTS = "giant robots that transform into cars fight an ancient war"
TOP5_AUTHORS = [
    "Terry Pratchett",
    "Mary Pope Osborne",
    "Brandon Sanderson",
    "Margaret Peterson Haddix",
    "Jodi Taylor",
]


@pytest.fixture(scope="module")
def vectors(settings: Settings) -> Matrix:
    return index_vectors(settings)


def similar(api: TestClient, book_id: str, **variables: Any) -> tuple[list[dict[str, Any]], int]:
    variables.setdefault("k", 10)
    body = gql(api, SIMILAR, id=book_id, **variables)
    assert "errors" not in body, body["errors"]
    return body["data"]["book"]["similar"], body["extensions"]["cost"]["redisRoundTrips"]


def search(api: TestClient, text: str, **variables: Any) -> list[dict[str, Any]]:
    variables.setdefault("k", 10)
    variables.setdefault("mode", "SEMANTIC")
    body = gql(api, SEARCH, text=text, **variables)
    assert "errors" not in body, body["errors"]
    found: list[dict[str, Any]] = body["data"]["searchBooks"]
    return found


def text_vector(text: str) -> np.ndarray:
    found: np.ndarray = text_embedder().encode([text])[0]
    return found


def from_book(vectors: Matrix, book_id: str, seen: set[str], keep: Keep = everywhere) -> Any:
    return exact_nearest(vectors, vectors[ROW[book_id]], seen | {book_id}, keep)


# --- exclude ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 40, 500])  # asked for and dropped; by filter
def test_similar_never_returns_excluded_books_and_still_returns_k(
    api: TestClient, settings: Settings, vectors: Matrix, count: int
) -> None:
    nearest = [i for _, i in from_book(vectors, "26415", set())]
    rng = np.random.default_rng(count)
    seen = set(nearest[: count // 2]) | {  # the nearest half, and others anywhere
        IDS[int(r)] for r in rng.choice(len(IDS), count - count // 2, replace=False)
    }
    seen.discard("26415")
    found, _ = similar(api, "26415", exclude=sorted(seen), k=20)
    assert not {m["book"]["id"] for m in found} & seen
    expected = from_book(vectors, "26415", seen)[:20]
    assert_same_ranking(found, expected, distance_tolerance(settings))


@pytest.mark.parametrize("count", [3, 300])
def test_exclusions_and_filters_combined_are_exact(
    api: TestClient, settings: Settings, vectors: Matrix, count: int
) -> None:
    keep = horror_2000s
    first = [i for _, i in from_book(vectors, "942", set(), keep)][:count]
    seen = set(first[::2])
    found, _ = similar(api, "942", filter=HORROR_2000S_ARGUMENT, exclude=sorted(seen))
    assert_same_ranking(found, from_book(vectors, "942", seen, keep)[:10], 1e-3)
    text = "a haunted house"
    searched = search(api, text, filter=HORROR_2000S_ARGUMENT, exclude=sorted(seen))
    expected = exact_nearest(vectors, text_vector(text), seen, keep)[:10]
    assert_same_ranking(searched, expected, distance_tolerance(settings))


# --- diversity -------------------------------------------------------------------------


@pytest.mark.parametrize("diversity", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("book_id", ["9", "26415"])
def test_similar_diversity_is_exact_mmr(
    api: TestClient, settings: Settings, vectors: Matrix, book_id: str, diversity: float
) -> None:
    found, _ = similar(api, book_id, diversity=diversity)
    ranking = from_book(vectors, book_id, set())
    relevance = {i: 1 - d for d, i in ranking}
    picked = [m["book"]["id"] for m in found]
    assert len(picked) == 10
    tolerance = distance_tolerance(settings)
    assert_is_mmr(picked, ranking[: pool_size(10, True)], relevance, vectors, diversity, tolerance)
    for match in found:
        assert match["distance"] == pytest.approx(1 - relevance[match["book"]["id"]], abs=tolerance)


def test_diversity_spreads_the_answer_and_zero_changes_nothing(
    api: TestClient, vectors: Matrix
) -> None:
    plain, _ = similar(api, "9")
    assert similar(api, "9", diversity=0)[0] == plain
    assert similar(api, "9", diversity=None)[0] == plain

    def spread(matches: list[dict[str, Any]]) -> float:
        rows = vectors[[ROW[m["book"]["id"]] for m in matches]]
        return float((rows @ rows.T)[np.triu_indices(len(rows), 1)].mean())

    assert spread(plain) > spread(similar(api, "9", diversity=0.3)[0])
    assert spread(similar(api, "9", diversity=0.3)[0]) > spread(similar(api, "9", diversity=0.8)[0])


def test_search_diversity_is_exact_mmr_with_a_filter(
    api: TestClient, settings: Settings, vectors: Matrix
) -> None:
    found = search(api, ROBOTS, diversity=0.6, k=6, filter={"yearFrom": 1990})
    keep: Keep = lambda row: RECORDS[IDS[row]]["year_published"] >= 1990  # noqa: E731
    ranking = exact_nearest(vectors, text_vector(ROBOTS), set(), keep)
    relevance = {i: 1 - d for d, i in ranking}
    picked = [m["book"]["id"] for m in found]
    tolerance = distance_tolerance(settings)
    assert_is_mmr(picked, ranking[: pool_size(6, True)], relevance, vectors, 0.6, tolerance)


# --- maxPerAuthor ----------------------------------------------------------------------


@pytest.mark.parametrize("cap", [1, 2])
def test_max_per_author_is_the_nearest_books_that_keep_the_cap(
    api: TestClient, settings: Settings, vectors: Matrix, cap: int
) -> None:
    ranking = from_book(vectors, "9", set())
    assert Counter(RECORDS[i]["author"] for _, i in ranking[:10]).most_common(1)[0][1] > cap
    found, _ = similar(api, "9", cap=cap)
    assert_same_ranking(found, capped(ranking, 10, cap), distance_tolerance(settings))
    assert max(Counter(m["book"]["author"] for m in found).values()) <= cap
    semantic = search(api, ROBOTS, cap=cap)
    expected = capped(exact_nearest(vectors, text_vector(ROBOTS), set()), 10, cap)
    assert_same_ranking(semantic, expected, distance_tolerance(settings))


def test_a_cap_the_pool_cannot_fill_searches_once_more(
    api: TestClient, settings: Settings, vectors: Matrix
) -> None:
    """Among the five most prolific authors, the 50 books nearest to book 375 hold only
    four of them: one per author needs a wider pool, found in a second round trip."""
    keep: Keep = lambda row: RECORDS[IDS[row]]["author"] in TOP5_AUTHORS  # noqa: E731
    ranking = from_book(vectors, "375", set(), keep)
    assert len({RECORDS[i]["author"] for _, i in ranking[:50]}) < 5 < len(ranking)
    given = {"authors": TOP5_AUTHORS}
    _, plain_trips = similar(api, "375", filter=given, k=5)
    found, trips = similar(api, "375", filter=given, k=5, cap=1)
    assert_same_ranking(found, capped(ranking, 5, 1), distance_tolerance(settings))
    assert trips == plain_trips + 1
    # six authors: no pool has six of five authors, so fewer come back, after the same search
    short, _ = similar(api, "375", filter=given, k=6, cap=1)
    assert [m["book"]["id"] for m in short] == [m["book"]["id"] for m in found]


def test_diversity_with_a_cap_keeps_the_cap(api: TestClient) -> None:
    found, _ = similar(api, "9", diversity=0.4, cap=1, k=8)
    assert len(found) == 8
    assert len({m["book"]["author"].casefold() for m in found}) == 8


# --- searchBooks modes -----------------------------------------------------------------


def test_semantic_is_todays_search_exactly(
    api: TestClient, settings: Settings, vectors: Matrix
) -> None:
    found = search(api, ROBOTS, k=10)
    expected = exact_nearest(vectors, text_vector(ROBOTS), set())[:10]
    assert_same_ranking(found, expected, distance_tolerance(settings))


@pytest.mark.parametrize("mode", ["KEYWORD", "HYBRID"])
def test_keyword_and_hybrid_report_each_books_real_distance(
    api: TestClient, settings: Settings, vectors: Matrix, mode: str
) -> None:
    query = unit_rows(text_vector("Dune Frank Herbert"))[0]
    found = search(api, "Dune Frank Herbert", mode=mode)
    assert len(found) == 10
    for match in found:
        expected = 1 - float(vectors[ROW[match["book"]["id"]]] @ query)
        assert match["distance"] == pytest.approx(expected, abs=distance_tolerance(settings))


def test_keyword_finds_books_by_their_words(api: TestClient) -> None:
    """Every book found holds one of the words, as the index stems them ("witches" finds
    "witch")."""
    found = search(api, "Discworld witches", mode="KEYWORD", k=20)
    assert len(found) == 20
    for match in found:
        record = RECORDS[match["book"]["id"]]
        text = words(" ".join((record["title"], record["author"], record["description"])))
        assert any(w == "discworld" or w.startswith("witch") for w in text)


def test_hybrid_is_the_default_and_puts_a_typed_title_first(api: TestClient) -> None:
    body = gql(api, '{ searchBooks(text: "The Way of Kings", k: 3) { book { id title } } }')
    assert body["data"]["searchBooks"][0]["book"]["title"] == "The Way of Kings"
    robots = search(api, ROBOTS, mode="HYBRID", k=3)
    assert all("Transformers" in m["book"]["title"] for m in robots)


@pytest.mark.parametrize("mode", ["KEYWORD", "HYBRID"])
def test_keyword_and_hybrid_with_exclusions_and_filters(api: TestClient, mode: str) -> None:
    first = search(api, "Dune", mode=mode, k=5)
    shown = {m["book"]["id"] for m in first[:2]}
    again = search(api, "Dune", mode=mode, k=5, exclude=sorted(shown))
    assert len(again) == 5
    assert not {m["book"]["id"] for m in again} & shown
    # many excluded (by filter): still k, none of them
    many = sorted({m["book"]["id"] for m in first} | {str(i) for i in range(1, 400)})
    assert not {m["book"]["id"] for m in search(api, "Dune", mode=mode, exclude=many)} & set(many)
    filtered = search(api, "Dune", mode=mode, filter={"yearFrom": 2000, "available": True})
    for match in filtered:
        record = RECORDS[match["book"]["id"]]
        assert record["year_published"] >= 2000
        assert any(i["status"] == "available" for i in record["inventory"])


def test_a_text_of_stopwords_has_no_keywords(api: TestClient) -> None:
    text = "the of and to"
    assert all(word in STOPWORDS for word in words(text))
    assert search(api, text, mode="KEYWORD") == []
    assert len(search(api, text, mode="HYBRID")) == 10  # by meaning alone


@pytest.mark.parametrize(
    "text",
    ['@title:dune -sand "phrase" dun* %dune% {x} (a|b) ~c $w0 ismissing(@t) =>[KNN 9 @e $v]'],
)
def test_query_syntax_in_a_search_is_only_words(api: TestClient, text: str) -> None:
    """Its words are searched (title, dune, sand...): no syntax error, no field query, no
    exclusion; tests/services/books/search/test_keyword_query.py reads such queries with
    FT.EXPLAIN."""
    for mode in ("KEYWORD", "HYBRID"):
        found = search(api, text, mode=mode)
        assert len(found) == 10
    as_words = [m["book"]["id"] for m in search(api, "title dune sand", mode="KEYWORD")]
    assert [m["book"]["id"] for m in search(api, "@title:dune -sand", mode="KEYWORD")] == as_words


@pytest.mark.parametrize(
    ("variables", "argument"),
    [
        ({"exclude": [str(i) for i in range(501)]}, "exclude"),
        ({"diversity": 1.01}, "diversity"),
        ({"diversity": -1}, "diversity"),
        ({"cap": 0}, "maxPerAuthor"),
        ({"cap": 101}, "maxPerAuthor"),
    ],
)
def test_bad_arguments_are_bad_user_input_before_redis(
    api: TestClient, variables: dict[str, Any], argument: str
) -> None:
    # similar: the book is read, then no search runs; searchBooks: nothing runs
    for query, extra, trips in (
        (SIMILAR, {"id": "9"}, 1),
        (SEARCH, {"text": ROBOTS, "mode": "HYBRID"}, 0),
    ):
        body = gql(api, query, k=5, **extra, **variables)
        assert error_codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["argument"] == argument
        assert body["extensions"]["cost"]["redisRoundTrips"] == trips
