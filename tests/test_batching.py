"""Round trips to Redis grow with the depth of a query, never with its width.

The server counts them in its Redis client (every socket write that waits for an answer)
and reports them in ``extensions.cost.redisRoundTrips``.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from starlette.testclient import TestClient

from lookalike.resolvers.loaders import Loaders
from lookalike.services.book_filters import NO_FILTER
from lookalike.services.book_records import Book
from lookalike.services.catalogue import Catalogue
from lookalike.services.face_store import face_store
from lookalike.services.query_embeddings import QueryEmbeddings
from lookalike.services.redis_connection import open_client
from lookalike.services.settings import Settings
from lookalike.services.text_embedding import text_embedder
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
    # books page (search + read: 2), level 1 KNN (1), level 2 blobs + KNN (2)
    assert wide <= 5


def test_each_nesting_level_adds_a_fixed_number_of_round_trips(api: TestClient) -> None:
    one = '{ book(id: "9") { similar(k: 5) { book { title } } } }'
    two = '{ book(id: "9") { similar(k: 5) { book { similar(k: 5) { book { title } } } } } }'
    round_trips(api, two)
    assert round_trips(api, two) - round_trips(api, one) == 2


def test_radius_and_similar_at_one_level_share_the_books_read(api: TestClient) -> None:
    query = """{ books(first: 10) { edges { node {
        similar(k: 3) { book { id } } withinRadius(r: 0.6, first: 3) { matches { book { id } } }
    } } } }"""
    round_trips(api, query)
    assert round_trips(api, query) <= 6


def test_the_same_book_asked_twice_in_a_request_is_read_once(settings: Settings) -> None:
    """A spy around the real catalogue records which ids each batch read asks Redis for."""

    class RecordingCatalogue(Catalogue):
        asked: list[list[str]]

        async def get_many(self, book_ids: Sequence[str]) -> list[Book | None]:
            self.asked.append(list(book_ids))
            return await super().get_many(book_ids)

    async def scenario() -> list[list[str]]:
        client = await open_client(settings.redis_url or "", settings.redis_timeout)
        catalogue = RecordingCatalogue(client, settings)
        catalogue.asked = []
        queries = QueryEmbeddings(client, text_embedder, 1000)
        loaders = Loaders(catalogue, face_store("hash", client), queries)
        try:
            # Two requests for book 9 and two overlapping neighbourhoods in one "request".
            first, again = await loaders.books.load_many(["9", "9"])
            assert first is again
            assert first is not None
            await loaders.similar.load_many(
                [("9", 5, NO_FILTER), ("9", 5, NO_FILTER), ("15", 5, NO_FILTER)]
            )
            await loaders.books.load("15")
        finally:
            await client.aclose()
        return catalogue.asked

    reads = anyio.run(scenario)
    every_id = [book_id for batch in reads for book_id in batch]
    assert len(every_id) == len(set(every_id)), reads
