"""Round trips to Redis grow with the depth of a query, never with its width.

The server counts them in its Redis client (every socket write that waits for an answer)
and reports them in ``extensions.cost.redisRoundTrips``.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from starlette.testclient import TestClient

from lookalike.resolvers.loaders import BookRead, Loaders
from lookalike.services.books.catalogue import Catalogue, Match, VectorSearch
from lookalike.services.books.records import Book, BookFields
from lookalike.services.books.requests import SimilarRequest
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.query_vectors import QueryEmbeddings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.faces.store import face_store
from lookalike.services.redis.connection import Redis, open_client
from tests.conftest import both_backends, gql

pytestmark = both_backends

NESTED = """query($first: Int!) { books(first: $first) { edges { node { title
  similar(k: 5) { distance book { title similar(k: 5) { distance book { title } } } } } } } }"""


def round_trips(api: TestClient, query: str, **variables: object) -> int:
    body = gql(api, query, **variables)
    assert "errors" not in body, body["errors"]
    count: int = body["extensions"]["cost"]["redisRoundTrips"]
    return count


def test_nested_similar_round_trips_do_not_grow_with_width(api: TestClient) -> None:
    round_trips(api, NESTED, first=20)  # warm the connection pool
    narrow = round_trips(api, NESTED, first=2)
    wide = round_trips(api, NESTED, first=20)  # 20 + 100 + 500 books
    assert wide == narrow
    # one a level: the page (with its count), then each level's KNN pipeline, whose hits
    # come back with the fields shown and the vectors the next level searches from
    assert wide == 3


def test_each_nesting_level_adds_one_round_trip(api: TestClient) -> None:
    one = '{ book(id: "9") { similar(k: 5) { book { title } } } }'
    two = '{ book(id: "9") { similar(k: 5) { book { similar(k: 5) { book { title } } } } } }'
    round_trips(api, two)
    assert round_trips(api, one) == 2
    assert round_trips(api, two) == 3


def test_radius_and_similar_at_one_level_cost_one_round_trip_each(api: TestClient) -> None:
    query = """{ books(first: 10) { edges { node {
        similar(k: 3) { book { id } } withinRadius(r: 0.6, first: 3) { matches { book { id } } }
    } } } }"""
    round_trips(api, query)
    assert round_trips(api, query) == 3


# --- issue 14's fields: several in one request share the level's pipeline ------------------

RECOMMENDS = {
    "plain": 'recommend(liked: ["9"], k: 5)',
    "disliked": 'recommend(liked: ["9", "15"], disliked: ["26415"], k: 5)',
    "best": 'recommend(liked: ["9", "15"], strategy: BEST_SCORE, k: 5)',
    "bestDisliked": (
        'recommend(liked: ["9", "15"], disliked: ["26415"], strategy: BEST_SCORE, k: 5)'
    ),
    "picked": 'recommend(liked: ["375"], k: 3, diversity: 0.5, maxPerAuthor: 1)',
}


def aliased(fields: dict[str, str], selection: str) -> str:
    return "{ " + " ".join(f"{name}: {field} {selection}" for name, field in fields.items()) + " }"


def test_several_recommend_fields_cost_the_round_trips_of_one(api: TestClient) -> None:
    """Both strategies, with and without dislikes, picked or not: one read of every
    example's vector, then one KNN pipeline for all of them."""
    selection = "{ distance book { id } }"
    every = aliased(RECOMMENDS, selection)
    round_trips(api, every)  # warm the connection pool
    one = round_trips(api, aliased({"plain": RECOMMENDS["plain"]}, selection))
    body = gql(api, every)
    assert "errors" not in body, body["errors"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == one == 2
    # batched, each field still gets its own answer: the one it gets when asked alone
    for name, field in RECOMMENDS.items():
        alone = gql(api, aliased({name: field}, selection))["data"][name]
        assert body["data"][name] == alone, name
        assert alone, name


PICKED_SIMILAR = """query($first: Int!) { books(first: $first) { edges { node {
  diverse: similar(k: 3, diversity: 0.5) { book { id
    similar(k: 2, maxPerAuthor: 1) { distance book { id } } } }
  capped: similar(k: 3, maxPerAuthor: 1) { book { id } }
  both: similar(k: 3, diversity: 0.3, maxPerAuthor: 2) { distance } } } } }"""


def test_similar_picked_for_diversity_or_by_author_costs_a_round_trip_a_level(
    api: TestClient,
) -> None:
    round_trips(api, PICKED_SIMILAR, first=10)  # warm the connection pool
    narrow = round_trips(api, PICKED_SIMILAR, first=1)
    wide = round_trips(api, PICKED_SIMILAR, first=10)  # 30 picked fields, then 30 more
    assert wide == narrow
    # the page, the first level's three fields of every book, the second level's
    assert wide == 3
    shallow = PICKED_SIMILAR.replace("similar(k: 2, maxPerAuthor: 1) { distance book { id } }", "")
    assert round_trips(api, shallow, first=10) == 2


SEARCHES = {
    "title": 'searchBooks(text: "Dune", k: 3)',
    "robots": ('searchBooks(text: "giant robots that transform into cars", k: 3, mode: HYBRID)'),
    "haunted": 'searchBooks(text: "a haunted house", k: 3, diversity: 0.5, maxPerAuthor: 1)',
    "filtered": (
        'searchBooks(text: "a haunted house", k: 3, filter: { genres: ["horror"] }, '
        'exclude: ["26415"])'
    ),
}


def test_several_hybrid_searches_cost_the_round_trips_of_one(api: TestClient, backend: str) -> None:
    """HYBRID sends a KNN and a BM25 query for each field, all in one pipeline (the texts'
    vectors are cached by the first request, in this process and in Redis). Each document
    asks for k it has not asked before: an answer kept from an earlier request would cost
    no search at all (services/books/search/answers.py)."""
    selection = "{ distance book { id } }"

    def searches(k: int) -> dict[str, str]:
        return {name: field.replace("k: 3", f"k: {k}") for name, field in SEARCHES.items()}

    round_trips(api, aliased(SEARCHES, selection))  # embeds the texts, warms the pool
    every = round_trips(api, aliased(searches(4), selection))
    one = round_trips(api, aliased({"title": searches(5)["title"]}, selection))
    # one pipeline (a cluster's: the catalogue's version and state, then the searches)
    assert every == one == (2 if backend == "cluster" else 1)
    # asked again, every answer is kept: one round trip, for the catalogue's version
    assert round_trips(api, aliased(searches(4), selection)) == 1


class RecordingCatalogue(Catalogue):
    """The real catalogue, noting what each batch asks Redis for."""

    asked: list[tuple[list[str], BookFields]]
    searches: list[BookFields]

    async def read(self, book_ids: Sequence[str], fields: BookFields) -> list[Book | None]:
        self.asked.append((list(book_ids), fields))
        return await super().read(book_ids, fields)

    async def nearest(self, requests: Sequence[VectorSearch]) -> list[list[Match]]:
        self.searches.extend(r.fields for r in requests)
        return await super().nearest(requests)


def _recording(settings: Settings, client: Redis) -> tuple[RecordingCatalogue, Loaders]:
    catalogue = RecordingCatalogue(client, settings)
    catalogue.asked, catalogue.searches = [], []
    queries = QueryEmbeddings(client, text_embedder, 1000)
    return catalogue, Loaders(catalogue, face_store("hash", client), queries)


TITLES = BookFields(frozenset({"title"}), vector=True)


def test_the_same_book_asked_twice_in_a_request_is_read_once(settings: Settings) -> None:
    async def scenario() -> list[tuple[list[str], BookFields]]:
        client = await open_client(settings.redis_url or "", settings.redis_timeout)
        catalogue, loaders = _recording(settings, client)
        try:
            first, again = await loaders.books.load_many([BookRead("9", TITLES)] * 2)
            assert first is again
            assert first is not None
            # one neighbourhood asked twice, then the next level's, overlapping it
            found = await loaders.similar.load_many([SimilarRequest("9", 5, fields=TITLES)] * 2)
            assert found[0] is found[1]
            await loaders.similar.load(SimilarRequest("15", 5, fields=TITLES))
            # 15 was among 9's neighbours, with its title and vector: never read by id
            assert (await loaders.books.load(BookRead("15", TITLES))) is not None
        finally:
            await client.aclose()
        return catalogue.asked

    assert anyio.run(scenario) == [(["9"], TITLES)]


def test_a_field_asked_in_one_place_and_not_another_is_answered_in_both(
    api: TestClient,
) -> None:
    query = """{ a: book(id: "9") { title }
                 b: book(id: "9") { description similar(k: 1) { book { title author } } }
                 c: book(id: "15") { title } }"""
    body = gql(api, query)
    assert body["data"]["a"]["title"] == "Transformers: The Ultimate Guide"
    assert body["data"]["b"]["description"].startswith('"Transformers: The Ultimate Guide" is')
    assert body["data"]["b"]["similar"][0]["book"] == {
        "title": "Transformers Volume 1: For All Mankind",
        "author": "Mike Costa",
    }
    # the three books in one read, then one KNN
    assert body["extensions"]["cost"]["redisRoundTrips"] == 2


def test_a_vector_query_returns_only_what_the_selection_shows(api: TestClient) -> None:
    """similar { book { title } } returns titles; the level above also returns vectors."""
    catalogue = api.app.state.catalogue  # type: ignore[attr-defined]
    catalogue.__class__ = RecordingCatalogue  # the same object, now noting what it is asked
    catalogue.asked, catalogue.searches = [], []
    try:
        query = """{ book(id: "9") { similar(k: 2) { distance book { title
                      similar(k: 2) { book { yearPublished } } } } } }"""
        assert "errors" not in gql(api, query)
        asked, searches = catalogue.asked, catalogue.searches
    finally:
        catalogue.__class__ = Catalogue
    assert asked == [(["9"], BookFields(frozenset(), vector=True))]
    assert searches == [
        BookFields(frozenset({"title"}), vector=True),
        BookFields(frozenset({"year_published"}), vector=False),
        BookFields(frozenset({"year_published"}), vector=False),
    ]


def test_a_vector_query_whose_books_are_not_shown_returns_no_field(api: TestClient) -> None:
    """similar { distance } shows no book: its KNN returns no field (it returned them all,
    descriptions and inventories, and vectors, for every hit), aliased or not."""
    catalogue = api.app.state.catalogue  # type: ignore[attr-defined]
    catalogue.__class__ = RecordingCatalogue
    catalogue.asked, catalogue.searches = [], []
    try:
        for query in [
            '{ book(id: "9") { similar(k: 2) { distance } } }',
            '{ book(id: "9") { s: similar(k: 2) { d: distance } } }',
        ]:
            assert "errors" not in gql(api, query)
        searches = catalogue.searches
    finally:
        catalogue.__class__ = Catalogue
    assert searches == [BookFields(frozenset())] * 2


def test_a_failing_root_field_does_not_make_the_others_ask_redis_again(api: TestClient) -> None:
    """A root field that fails (an unknown book) is that field's error; the fields beside it
    are not run a second time (genres and a page of books go to Redis without a loader)."""
    alone = "{ genres { name } books(first: 2) { edges { node { id } } } }"
    failing = alone.replace("{ genres", '{ missing: book(id: "999999") { id } genres')
    gql(api, failing)  # warm the pool: three fields at once (a new connection's handshake counts)
    body = gql(api, failing)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BOOK_NOT_FOUND"]
    assert body["data"]["genres"]
    assert body["data"]["books"]["edges"]
    # the unknown id costs its one read, and nothing else is asked twice
    assert body["extensions"]["cost"]["redisRoundTrips"] == round_trips(api, alone) + 1
