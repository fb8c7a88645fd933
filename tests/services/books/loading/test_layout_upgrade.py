"""A Redis holding the catalogue as earlier versions stored it is converted at start-up.

Earlier versions kept each book as a JSON document (its embedding as a JSON array of numbers)
with a FLOAT32 blob ``<prefix>-vector:<id>`` beside it, under a JSON index. The test writes that
by hand, as those versions did (bench/json_layout.py), then starts this version's server on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis
from starlette.testclient import TestClient

from bench.json_layout import write_json_catalogue
from lookalike.schema.app import create_app
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import load_books
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.redis.connection import connect
from tests.conftest import gql, wait_ready
from tests.services.books.test_similar_books import COURSE

SHIPPED = read_shipped()
BOOK = """query($id: ID!) { book(id: $id) { id title author description genres editions pages
  yearPublished url rating ratingVotes inventory { stockId status }
  similar(k: 5) { distance book { id } } } }"""


@pytest.fixture
def old_catalogue(settings: Settings) -> Iterator[Settings]:
    """The shipped catalogue in the JSON layout, under an index and prefix of its own."""
    name = f"old{uuid.uuid4().hex[:8]}"
    old = settings.model_copy(update={"index_name": name, "key_prefix": name})
    client = redis.Redis.from_url(settings.redis_url or "")
    write_json_catalogue(client, name, SHIPPED)
    yield old
    client.ft(name).dropindex(delete_documents=True)
    for key in client.scan_iter(match=f"{name}*", count=1000):
        client.delete(key)
    client.close()


def test_a_catalogue_in_the_json_layout_is_converted_without_losing_a_book(
    old_catalogue: Settings,
) -> None:
    name = old_catalogue.index_name
    raw = redis.Redis.from_url(old_catalogue.redis_url or "")
    old_index = raw.ft(name).info()  # type: ignore[no-untyped-call]
    assert int(old_index["num_docs"]) == 1486  # the old index serves them

    with TestClient(create_app(old_catalogue)) as api:
        assert wait_ready(api) == {"status": "ready", "books": 1486}
        for record in SHIPPED.records:
            book = gql(api, BOOK, id=record["id"])["data"]["book"]
            metrics = record.get("metrics") or {}
            assert (book["title"], book["author"], book["description"]) == (
                record["title"],
                record["author"],
                record["description"],
            )
            assert book["genres"] == record["genres"]
            assert book["editions"] == record["editions"]
            assert (book["pages"], book["yearPublished"], book["url"]) == (
                record["pages"],
                record["year_published"],
                record["url"],
            )
            assert (book["rating"], book["ratingVotes"]) == (
                metrics.get("score"),
                metrics.get("rating_votes"),
            )
            assert book["inventory"] == [
                {"stockId": i["stock_id"], "status": i["status"]} for i in record["inventory"]
            ]
            if record["id"] in COURSE:
                assert [m["book"]["id"] for m in book["similar"]] == COURSE[record["id"]][0]
            assert len(book["similar"]) == (5 if record["description"].strip() else 0)

    # Nothing of the old layout is left, and the books keep the hashes of their records.
    assert not list(raw.scan_iter(match=f"{name}-vector:*", count=1000))
    kinds = {raw.type(key) for key in raw.scan_iter(match=f"{name}:*", count=1000)}
    assert kinds == {b"hash"}

    async def reload() -> str:
        client = connect(old_catalogue.redis_url or "", 5)
        summary = await load_books(
            Catalogue(client, old_catalogue),
            SHIPPED.records,
            shipped=SHIPPED,
            embedder=text_embedder,
        )
        await client.aclose()
        return str(summary)

    assert anyio.run(reload).startswith("1486 books: 0 added, 0 updated, 1486 unchanged")
    raw.close()


def test_changing_the_vector_type_converts_the_stored_vectors(settings: Settings) -> None:
    name = f"retype{uuid.uuid4().hex[:8]}"
    half = settings.model_copy(
        update={"index_name": name, "key_prefix": name, "vector_type": "float16"}
    )
    full = half.model_copy(update={"vector_type": "float32"})
    raw = redis.Redis.from_url(settings.redis_url or "")
    try:
        for current, size in ((half, 768), (full, 1536), (half, 768)):
            with TestClient(create_app(current)) as api:
                assert wait_ready(api) == {"status": "ready", "books": 1486}
                for book_id, (ids, _) in COURSE.items():
                    found = gql(api, BOOK, id=book_id)["data"]["book"]["similar"]
                    assert [m["book"]["id"] for m in found] == ids
            assert len(raw.hget(f"{name}:9", "embedding") or b"") == size
            assert raw.hget(f"{name}:1070", "embedding") is None  # no description, no vector
    finally:
        raw.ft(name).dropindex(delete_documents=True)
        raw.close()
