"""searchBooks, filters inside Redis (checked against exact numpy search), the genre facet and
the query-embedding cache, with the real model and the real Redis."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import redis
from redisvl.query import VectorQuery
from redisvl.query.filter import Num, Tag
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.books.queries import BookQueries
from lookalike.services.books.records import VECTOR_FIELD, BookFields
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.query_vectors import QueryEmbeddings
from lookalike.services.embeddings.text_model import Vectors, text_embedder
from lookalike.services.redis.connection import open_client
from lookalike.services.redis.embedded import EmbeddedRedis
from lookalike.services.redis.searches import search_arguments
from tests.conftest import both_backends, distance_tolerance, error_codes, gql

SHIPPED = read_shipped()
RECORDS = {r["id"]: r for r in SHIPPED.records}
ROBOTS = "giant robots that transform into cars fight an ancient war"
SEARCH = """query($text: String!, $k: Int!, $filter: BookFilter) {
  searchBooks(text: $text, k: $k, filter: $filter) { distance book { id title } } }"""
SIMILAR = """query($id: ID!, $k: Int!, $filter: BookFilter) {
  book(id: $id) { similar(k: $k, filter: $filter) { distance book { id } } } }"""
RADIUS = """query($id: ID!, $r: Float!, $filter: BookFilter) {
  book(id: $id) { withinRadius(r: $r, filter: $filter, first: 100) {
    totalCount matches { book { id } } } } }"""


def vector(book_id: str) -> Vectors:
    found: Vectors = SHIPPED.matrix([RECORDS[book_id]])[0]
    return found


def exact(book_id: str, keep: Callable[[dict[str, Any]], bool]) -> list[tuple[float, str]]:
    """Every other book that passes ``keep``, by exact cosine distance (numpy)."""
    mine = vector(book_id)
    return sorted(
        (float(1 - vector(i) @ mine), i)
        for i, r in RECORDS.items()
        if i != book_id and r["description"].strip() and keep(r)
    )


def available(record: dict[str, Any]) -> bool:
    return any(item["status"] == "available" for item in record["inventory"])


FILTERS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "genres": (
        {"genres": ["Horror", "mystery"]},
        lambda r: bool({"horror", "mystery"} & set(r["genres"])),
    ),
    "authors": ({"authors": ["terry pratchett"]}, lambda r: r["author"] == "Terry Pratchett"),
    "yearFrom": ({"yearFrom": 2015}, lambda r: r["year_published"] >= 2015),
    "yearTo": ({"yearTo": 1990}, lambda r: r["year_published"] <= 1990),
    "minRating": ({"minRating": 4.3}, lambda r: r["metrics"]["score"] >= 4.3),
    "available": ({"available": True}, available),
    "unavailable": ({"available": False}, lambda r: not available(r)),
    "combined": (
        {
            "genres": ["fantasy"],
            "yearFrom": 2000,
            "yearTo": 2010,
            "minRating": 4.0,
            "available": True,
        },
        lambda r: (
            "fantasy" in r["genres"]
            and 2000 <= r["year_published"] <= 2010
            and r["metrics"]["score"] >= 4.0
            and available(r)
        ),
    ),
}


@both_backends
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filtered_similar_is_the_exact_nearest_among_matching_books(
    api: TestClient, settings: Settings, name: str
) -> None:
    given, keep = FILTERS[name]
    expected = exact("26415", keep)[:5]
    found = gql(api, SIMILAR, id="26415", k=5, filter=given)["data"]["book"]["similar"]
    assert len(found) == 5
    assert {m["book"]["id"] for m in found} == {i for _, i in expected}
    tolerance = distance_tolerance(settings)
    assert [m["distance"] for m in found] == pytest.approx([d for d, _ in expected], abs=tolerance)


@both_backends
def test_a_selective_filter_still_returns_k(api: TestClient) -> None:
    counts = Counter(g for r in RECORDS.values() for g in r["genres"])
    rare = next(g for g, n in sorted(counts.items(), key=lambda x: x[1]) if 7 <= n <= 12)
    nearest_unfiltered = gql(api, SIMILAR, id="26415", k=5)["data"]["book"]["similar"]
    assert not any(rare in RECORDS[m["book"]["id"]]["genres"] for m in nearest_unfiltered)
    found = gql(api, SIMILAR, id="26415", k=5, filter={"genres": [rare]})["data"]["book"]["similar"]
    assert len(found) == 5
    assert all(rare in RECORDS[m["book"]["id"]]["genres"] for m in found)


@both_backends
def test_filtered_radius_counts_exactly(api: TestClient) -> None:
    given, keep = FILTERS["combined"]
    expected = {i for d, i in exact("942", keep) if d <= 0.8}
    found = gql(api, RADIUS, id="942", r=0.8, filter=given)["data"]["book"]["withinRadius"]
    assert found["totalCount"] == len(expected)
    assert {m["book"]["id"] for m in found["matches"]} == expected


@both_backends
def test_an_unknown_genre_matches_nothing_and_is_no_error(api: TestClient) -> None:
    body = gql(api, SEARCH, text=ROBOTS, k=5, filter={"genres": ["no such genre"]})
    assert body["data"] == {"searchBooks": []}
    assert "errors" not in body
    empty = gql(api, SIMILAR, id="9", k=5, filter={"authors": []})
    assert empty["data"]["book"]["similar"] == []


@both_backends
def test_search_finds_books_by_meaning(api: TestClient) -> None:
    found = gql(api, SEARCH, text=ROBOTS, k=5)["data"]["searchBooks"]
    assert len(found) == 5
    assert all("Transformers" in m["book"]["title"] for m in found[:3])
    assert [m["distance"] for m in found] == sorted(m["distance"] for m in found)
    fantasy = gql(api, SEARCH, text=ROBOTS, k=3, filter={"genres": ["picture books"]})
    assert all(
        "picture books" in RECORDS[m["book"]["id"]]["genres"]
        for m in fantasy["data"]["searchBooks"]
    )


@both_backends
def test_aliased_searches_share_one_model_call_and_one_knn_round_trip(api: TestClient) -> None:
    queries: QueryEmbeddings = api.app.state.queries  # type: ignore[attr-defined]
    texts = [
        "a lighthouse keeper and a singing whale",
        "a chef in space",
        "a lighthouse keeper and a singing whale",
    ]
    aliased = (
        "{ "
        + " ".join(
            f'q{n}: searchBooks(text: "{t}", k: 3) {{ book {{ id }} }}' for n, t in enumerate(texts)
        )
        + " }"
    )
    calls, embedded = queries.model_calls, queries.texts_embedded
    first = gql(api, aliased)
    assert (queries.model_calls - calls, queries.texts_embedded - embedded) == (1, 2)
    assert first["data"]["q0"] == first["data"]["q2"]
    single = gql(api, '{ searchBooks(text: "a chef in space", k: 3) { book { id } } }')
    again = gql(api, aliased)
    assert queries.model_calls - calls == 1  # everything cached now
    # cache lookup, KNN, books read: the same for one search as for three
    assert again["extensions"]["cost"] == single["extensions"]["cost"]


@both_backends
def test_the_cache_survives_a_restart(api: TestClient, settings: Settings) -> None:
    text = "a cartographer maps a city that moves at night"
    gql(api, SEARCH, text=text, k=1)

    async def as_a_new_process() -> tuple[int, bytes]:
        client = await open_client(settings.redis_url or "", 5)
        fresh = QueryEmbeddings(client, text_embedder, settings.search_cache_size)
        (found,) = await fresh.vectors([text])
        await client.aclose()
        return fresh.model_calls, found

    calls, cached = anyio.run(as_a_new_process)
    assert calls == 0
    expected = text_embedder().encode([text])[0]
    assert float(np.frombuffer(cached, dtype=np.float32) @ expected) > 0.9999


def test_a_stream_of_new_texts_never_grows_the_cache_past_its_size(
    settings: Settings, tmp_path: Path
) -> None:
    """A client sending ever new texts (113 a second were seen) fills the cache to its size and
    no further; the books, the index and every other key are untouched, and recent texts are
    still answered from the cache."""
    texts = [f"a story about the number {n} ({uuid.uuid4().hex[:6]})" for n in range(300)]
    server = EmbeddedRedis(tmp_path / "redis")
    small = Settings(redis_url=server.start(), data_dir=tmp_path, search_cache_size=64)
    raw = redis.Redis.from_url(small.redis_url or "")

    with TestClient(create_app(small)) as api:
        before = {k: raw.type(k) for k in raw.scan_iter(count=1000)}
        for start in range(0, len(texts), 10):  # ten texts a request: one model call each
            aliased = " ".join(
                f'q{n}: searchBooks(text: "{t}", k: 1) {{ distance }}'
                for n, t in enumerate(texts[start : start + 10])
            )
            assert "errors" not in gql(api, "{ " + aliased + " }")
        queries: QueryEmbeddings = api.app.state.queries  # type: ignore[attr-defined]
        held = sum(raw.hlen(k) for k in raw.scan_iter(match="embedcache:*", count=1000))
        assert 0 < held <= 64 == queries.store.capacity
        assert queries.texts_embedded == len(texts)
        queries.local.clear()  # as another process would see it: only Redis
        calls = queries.model_calls
        recent = texts[-1]
        assert "errors" not in gql(api, SEARCH, text=recent, k=1)
        # an evicted text is embedded again, a kept one is not: at most one more model call
        assert queries.model_calls - calls <= 1
        after = {k: raw.type(k) for k in raw.scan_iter(count=1000)}
    raw.close()
    server.stop()
    # the catalogue, indexes and faces are as they were; only cache buckets were added (and
    # perhaps the index watch's claim to read the index's status, a lock of a few seconds)
    transient = (b"embedcache:", b"index-status-reader:")
    assert {k: t for k, t in after.items() if not k.startswith(transient)} == {
        k: t for k, t in before.items() if not k.startswith(transient[1])
    }


@pytest.mark.parametrize(
    ("text", "k", "given"),
    [
        ("", 5, None),
        ("   \n", 5, None),
        ("x" * 2001, 5, None),
        (ROBOTS, 0, None),
        (ROBOTS, 101, None),
        (ROBOTS, 5, {"minRating": 6}),
        (ROBOTS, 5, {"genres": [""]}),
        (ROBOTS, 5, {"authors": ["a" * 201]}),
    ],
)
def test_bad_search_input_is_bad_user_input(
    api: TestClient, text: str, k: int, given: dict[str, Any] | None
) -> None:
    queries: QueryEmbeddings = api.app.state.queries  # type: ignore[attr-defined]
    calls = queries.model_calls
    body = gql(api, SEARCH, text=text, k=k, filter=given)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert queries.model_calls == calls


@both_backends
def test_genres_lists_every_genre_with_its_count(api: TestClient) -> None:
    genres = gql(api, "{ genres { name count } }")["data"]["genres"]
    expected = Counter(g for r in RECORDS.values() for g in r["genres"])
    assert {g["name"]: g["count"] for g in genres} == dict(expected)
    assert [g["count"] for g in genres] == sorted((g["count"] for g in genres), reverse=True)


@both_backends
def test_the_in_process_layer_is_bounded_and_falls_back_to_redis(settings: Settings) -> None:
    texts = ["a map of the moon", "a moon of maps", "the moon maps a mapmaker"]

    async def scenario() -> tuple[list[str], int]:
        client = await open_client(settings.redis_url or "", 5)
        queries = QueryEmbeddings(client, text_embedder, 1000, local_size=2)
        first = await queries.vectors(texts)
        again = await queries.vectors(texts[:1])  # evicted here, still in Redis
        await client.aclose()
        assert again == first[:1]
        return list(queries.local), queries.model_calls

    kept, calls = anyio.run(scenario)
    assert len(kept) == 2
    assert calls == 1


def test_a_knn_of_a_shape_seen_before_sends_what_redisvl_builds_for_its_own_vector(
    settings: Settings,
) -> None:
    """BookQueries.knn keeps one RedisVL query per shape and puts each search's vector in:
    the arguments sent must be those RedisVL builds for that vector, filter and fields."""
    queries = BookQueries(settings)
    rng = np.random.default_rng(7)
    fields = BookFields(frozenset({"title"}), vector=True)
    horror = Tag("genres") == "horror"
    for expression in (None, horror, horror & (Num("year_published") >= 1990)):
        for count in (6, 11):
            for _ in range(3):  # the first builds the template, the others reuse it
                vector = rng.random(384, dtype=np.float32).tobytes()
                sent = search_arguments("books", queries.knn(vector, count, [expression], fields))
                built = VectorQuery(
                    vector=queries.as_indexed(vector),
                    vector_field_name=VECTOR_FIELD,
                    return_fields=fields.returned(),
                    filter_expression=expression,
                    num_results=count,
                    ef_runtime=queries.ef_runtime(count, thorough=False),
                    dtype=settings.vector_type,
                )
                assert sent == search_arguments("books", built)
