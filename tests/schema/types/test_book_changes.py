"""upsertBooks and deleteBooks: who may run them, their bounds, what they change, and a
deleted book gone from every query field, from kept answers and from the operations the
server keeps, also for a reader that reads while books are removed. A server of its own on
the session's Redis, under its own index and key prefix, seeded with 40 shipped books."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from graphql import OperationDefinitionNode, get_variable_values, parse
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.schema.execution.schema import build_schema
from lookalike.schema.limits.cost import BOOK_WRITE, OperationCosts
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.changes import embedding_cost
from lookalike.services.books.loading.loader import load_books
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.redis.connection import open_client
from tests.conftest import error_codes, from_address, redis_dump, scratch_catalogue, wait_ready

FULL, IDENTIFY = "full-key-for-the-catalogue-0123", "identify-only-key-0123456789"
SHIPPED = read_shipped()
SEED = SHIPPED.records[:40]

UPSERT = """mutation($books: [BookInput!]!) {
  upsertBooks(books: $books) { added updated unchanged deleted } }"""
DELETE = """mutation($ids: [ID!]!) { deleteBooks(ids: $ids) { added updated unchanged deleted } }"""


@pytest.fixture(scope="module")
def own(settings: Settings) -> Iterator[Settings]:
    with scratch_catalogue(
        settings,
        "t_changes",
        api_keys=[SecretStr(FULL)],
        identify_keys=[SecretStr(IDENTIFY)],
        catalogue_autoload=False,
        max_change_cost=20_000,  # a ceiling a few short descriptions reach
    ) as scratch:

        async def seed() -> None:
            client = await open_client(scratch.redis_url or "", 5)
            catalogue = Catalogue(client, scratch)
            await load_books(catalogue, SEED, shipped=SHIPPED, embedder=text_embedder)
            await client.aclose()

        anyio.run(seed)
        yield scratch


@pytest.fixture(scope="module")
def api(own: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(own), headers={"Authorization": f"Bearer {FULL}"}) as client:
        wait_ready(client)
        yield client


def post(api: TestClient, query: str, key: str | None = FULL, **variables: Any) -> dict[str, Any]:
    client = from_address(api, "203.0.113.9")  # not loopback: keys decide
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code in (200, 422), response.text
    body: dict[str, Any] = response.json()
    return body


def stored(own: Settings) -> dict[bytes, Any]:
    return redis_dump(own.redis_url or "", f"{own.key_prefix}*")


def version(own: Settings) -> Any:
    return redis_dump(own.redis_url or "", f"catalogue-version:{own.index_name}")


def new_book(number: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": str(900_000 + number),
        "title": f"The keeper of lighthouse {number}",
        "author": "Ada Harbour",
        "description": f"A lighthouse keeper and a whale, story {number}.",
        **fields,
    }


def test_upsert_adds_replaces_and_leaves_books_and_embeds_only_new_descriptions(
    api: TestClient, own: Settings
) -> None:
    books = [
        new_book(1, genres=["sea", "quiet"], pages=120, rating=4.5, ratingVotes=10),
        new_book(2, inventory=[{"stockId": "2_1", "status": "available"}]),
        new_book(3, yearPublished=1999, url="https://example.org/3", editions=["english"]),
    ]
    before = version(own)
    assert post(api, UPSERT, books=books)["data"]["upsertBooks"] == {
        "added": 3, "updated": 0, "unchanged": 0, "deleted": 0,
    }  # fmt: skip
    assert version(own) != before
    shown = post(api, '{ book(id: "900001") { title genres pages rating ratingVotes } }')
    assert shown["data"]["book"] == {
        "title": "The keeper of lighthouse 1", "genres": ["sea", "quiet"], "pages": 120,
        "rating": 4.5, "ratingVotes": 10,
    }  # fmt: skip
    vector_1 = stored(own)[b"t_changes:900001"][b"embedding"]
    vector_2 = stored(own)[b"t_changes:900002"][b"embedding"]

    books[0]["title"] = "The keeper, revised"  # same description: the vector stays
    books[1]["description"] = "A cartographer maps islands that move at night."
    after_first = version(own)
    changes = post(api, UPSERT, books=books)["data"]["upsertBooks"]
    assert changes == {"added": 0, "updated": 2, "unchanged": 1, "deleted": 0}
    assert version(own) != after_first
    now = stored(own)
    assert now[b"t_changes:900001"][b"embedding"] == vector_1
    assert now[b"t_changes:900002"][b"embedding"] != vector_2

    unchanged = version(own)
    quiet = post(api, UPSERT, books=books)["data"]["upsertBooks"]
    assert quiet == {"added": 0, "updated": 0, "unchanged": 3, "deleted": 0}
    assert stored(own) == now
    assert version(own) == unchanged  # nothing written: kept answers stay good


DELETE_LITERAL = 'mutation { deleteBooks(ids: ["900099"]) { deleted } }'
UPSERT_LITERAL = """mutation { upsertBooks(books: [{id: "900098", title: "t", author: "a",
  description: ""}]) { added } }"""


@pytest.mark.parametrize("document", [DELETE_LITERAL, UPSERT_LITERAL])
@pytest.mark.parametrize(
    ("key", "code"),
    [(None, "UNAUTHENTICATED"), (IDENTIFY, "FORBIDDEN"), ("not-a-key", "FORBIDDEN")],
)
def test_only_a_full_key_changes_the_catalogue(
    api: TestClient, own: Settings, document: str, key: str | None, code: str
) -> None:
    before = stored(own)
    body = post(api, document, key)
    assert error_codes(body) == [code]
    assert "data" not in body or body["data"] is None
    assert stored(own) == before
    aliased = post(api, "mutation { x: " + document.removeprefix("mutation {"), key)
    assert error_codes(aliased) == [code]
    full = post(api, document, FULL)
    assert "errors" not in full, full


LONG = "x" * 1_001


@pytest.mark.parametrize(
    ("books", "message"),
    [
        ([new_book(n, description="") for n in range(501)], "at most 500 books a call, got 501"),
        ([new_book(10, title=LONG)], "books[0].title: at most 1,000 characters"),
        ([new_book(10, description="d" * 20_001)], "books[0].description: at most 20,000"),
        ([new_book(10, genres=["g" * 201])], "books[0].genres: at most 200 characters"),
        ([new_book(10, genres=[str(n) for n in range(101)])], "books[0].genres: at most 100"),
        ([new_book(10), new_book(11), new_book(10)], "books[2].id: 900010 is also books[0]"),
        ([new_book(10, id="0042")], "books[0].id: a decimal integer"),
        ([new_book(10, id="1" * 16)], "books[0].id: a decimal integer"),
        ([new_book(10, rating=7.5)], "books[0].metrics.score: must be between 0 and 5"),
        ([new_book(10, pages=-1)], "books[0].pages: must be between 0"),
        ([new_book(10, ratingVotes=-3)], "books[0].metrics.rating_votes: must be between"),
        ([new_book(10, genres=["horror|gothic"])], "books[0].genres: a genre must not contain"),
        ([new_book(10, title="nul\x00byte")], "books[0].title: must not hold NUL"),
        (
            [new_book(10, inventory=[{"stockId": "1", "status": "on|loan"}])],
            "books[0].inventory: a status must not contain",
        ),
    ],
)
def test_a_bad_batch_is_refused_whole_with_a_code_and_changes_nothing(
    api: TestClient, own: Settings, books: list[dict[str, Any]], message: str
) -> None:
    before, at = stored(own), version(own)
    body = post(api, UPSERT, books=books)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert message in body["errors"][0]["message"]
    assert (stored(own), version(own)) == (before, at)


@pytest.mark.parametrize(
    ("ids", "message"),
    [([str(n) for n in range(501)], "at most 500 ids a call"), (["12", "abc"], "'abc' cannot be")],
)
def test_a_bad_delete_is_refused_and_changes_nothing(
    api: TestClient, own: Settings, ids: list[str], message: str
) -> None:
    before, at = stored(own), version(own)
    body = post(api, DELETE, ids=ids)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert message in body["errors"][0]["message"]
    assert (stored(own), version(own)) == (before, at)


def test_the_embeddings_count_in_the_cost_and_unchanged_books_cost_none(
    api: TestClient, own: Settings
) -> None:
    """40 new descriptions cost 40 x (500 + 4 units a character): over this server's
    LOOKALIKE_MAX_CHANGE_COST of 20,000, refused before anything is written; sent in two
    halves they go in, and sent again whole (nothing to embed) the call costs only its
    writes."""
    books = [
        new_book(100 + n, description=f"A tide clock that runs backwards, {n}.") for n in range(40)
    ]
    before, at = stored(own), version(own)
    body = post(api, UPSERT, books=books)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert "embedding 40 new description(s) would cost" in body["errors"][0]["message"]
    assert (stored(own), version(own)) == (before, at)
    for half in (books[:20], books[20:]):
        assert post(api, UPSERT, books=half)["data"]["upsertBooks"]["added"] == 20
    again = post(api, UPSERT, books=books)
    assert again["data"]["upsertBooks"]["unchanged"] == 40


def test_the_default_ceiling_lets_a_call_embed_500_of_the_shipped_descriptions() -> None:
    """The 500-book batch is real for a catalogue like the shipped one: its first 500
    descriptions (as they come, of every length) fit under the default
    LOOKALIKE_MAX_CHANGE_COST, and the query limit does not stand in the way (it prices only
    the writes)."""
    assert embedding_cost([r["description"] for r in SHIPPED.records[:500]]) <= (
        Settings().max_change_cost
    )
    assert Settings().max_query_cost > BOOK_WRITE * 500


EVERYWHERE = """query($from: ID!, $text: String!) {
  book(id: $from) {
    similar(k: 100) { book { id title author } }
    withinRadius(r: 2, first: 100) { totalCount matches { book { id title author } } }
  }
  books(first: 100) { totalCount edges { node { id title author } } }
  semantic: searchBooks(text: $text, k: 100, mode: SEMANTIC) { book { id title author } }
  hybrid: searchBooks(text: $text, k: 100) { book { id title author } }
  keyword: searchBooks(text: $text, k: 100, mode: KEYWORD) { book { id title author } }
  recommend(liked: [$from], k: 100) { book { id title author } }
}"""


def ids_everywhere(data: dict[str, Any]) -> dict[str, set[str]]:
    return {
        "similar": {m["book"]["id"] for m in data["book"]["similar"]},
        "withinRadius": {m["book"]["id"] for m in data["book"]["withinRadius"]["matches"]},
        "books": {e["node"]["id"] for e in data["books"]["edges"]},
        "semantic": {m["book"]["id"] for m in data["semantic"]},
        "hybrid": {m["book"]["id"] for m in data["hybrid"]},
        "keyword": {m["book"]["id"] for m in data["keyword"]},
        "recommend": {m["book"]["id"] for m in data["recommend"]},
    }


def test_a_deleted_book_is_gone_from_every_query_field_and_every_kept_answer(
    api: TestClient, own: Settings
) -> None:
    gone, source = SEED[5], SEED[6]
    text = gone["title"]
    variables = {"from": source["id"], "text": text}
    for _ in range(2):  # the second time from the kept answers and the kept operation
        body = post(api, EVERYWHERE, **variables)
        assert "errors" not in body, body
        data = body["data"]
        assert all(gone["id"] in found for found in ids_everywhere(data).values()), data
    assert post(api, f'{{ book(id: "{gone["id"]}") {{ title }} }}')["data"]["book"]["title"]

    deleted = post(api, DELETE, ids=[gone["id"], gone["id"], "999999999"])
    assert deleted["data"]["deleteBooks"] == {
        "added": 0,
        "updated": 0,
        "unchanged": 0,
        "deleted": 1,
    }

    data = post(api, EVERYWHERE, **variables)["data"]
    assert {k: gone["id"] in found for k, found in ids_everywhere(data).items()} == dict.fromkeys(
        ids_everywhere(data), False
    )
    lone = post(api, f'{{ book(id: "{gone["id"]}") {{ title }} }}')
    assert error_codes(lone) == ["BOOK_NOT_FOUND"]
    liked = post(api, f'{{ recommend(liked: ["{gone["id"]}"]) {{ book {{ id }} }} }}')
    assert error_codes(liked) == ["BOOK_NOT_FOUND"]
    assert stored(own).get(f"t_changes:{gone['id']}".encode()) is None


def test_a_reader_never_sees_a_half_removed_book(api: TestClient, own: Settings) -> None:
    """While books are deleted a few at a time, a reader asks for every book in every way:
    each book it gets back is whole (its stored title and author), never a hit of the index
    whose hash is gone."""
    victims = [r["id"] for r in SEED[20:40]]
    survivor = SEED[10]["id"]
    query = """query($from: ID!, $text: String!) {
      book(id: $from) { similar(k: 30) { book { id title author } }
        withinRadius(r: 2, first: 100) { matches { book { id title author } } } }
      books(first: 100) { edges { node { id title author } } }
      searchBooks(text: $text, k: 30) { book { id title author } }
      recommend(liked: [$from], k: 30) { book { id title author } } }"""
    listed = post(api, "{ books(first: 100) { edges { node { id title } } } }")["data"]
    titles = {e["node"]["id"]: e["node"]["title"] for e in listed["books"]["edges"]}
    problems: list[str] = []
    reads = 0
    done = threading.Event()

    def read() -> None:
        nonlocal reads
        while not done.is_set():
            body = post(api, query, **{"from": survivor, "text": "a story of love and war"})
            reads += 1
            if "errors" in body:
                problems.append(str(body["errors"]))
                continue
            data = body["data"]
            found = [
                *(m["book"] for m in data["book"]["similar"]),
                *(m["book"] for m in data["book"]["withinRadius"]["matches"]),
                *(e["node"] for e in data["books"]["edges"]),
                *(m["book"] for m in data["searchBooks"]),
                *(m["book"] for m in data["recommend"]),
            ]
            problems.extend(
                str(b) for b in found if b["title"] != titles.get(b["id"]) or not b["author"]
            )

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for start in range(0, len(victims), 2):
            before = reads
            body = post(api, DELETE, ids=victims[start : start + 2])
            assert body["data"]["deleteBooks"]["deleted"] == 2
            # a read after each removal, however slow the machine is today
            deadline = time.monotonic() + 30
            while reads <= before + 1 and time.monotonic() < deadline:
                time.sleep(0.005)
    finally:
        done.set()
        reader.join()
    assert reads > 3
    assert problems == []
    after = post(api, query, **{"from": survivor, "text": "a story of love and war"})["data"]
    assert not {b["book"]["id"] for b in after["book"]["similar"]} & set(victims)


def test_a_changes_books_are_priced_every_time_and_never_kept_as_a_cache_key() -> None:
    """The cost of a query is kept by the values of its cost inputs; a change's input is its
    books (up to a megabyte a request): kept, they would fill memory, so a mutation's cost is
    worked out each time, from the number of books."""
    schema = build_schema(Settings.model_construct()).graphql
    operation = parse(UPSERT).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    costs = OperationCosts()
    root = schema.mutation_type
    assert root is not None
    for count in (1, 300):
        books = [new_book(n) for n in range(count)]
        values = get_variable_values(schema, operation.variable_definitions or (), {"books": books})
        assert not isinstance(values, list), values
        assert costs.cost(operation, root, {}, values, 0) == 1 + BOOK_WRITE * count
    assert len(costs.kept.operations) == 0


TWICE = '{id: "900200", title: "t", author: "a", description: ""}'
DUPLICATES = {
    "literal": f"mutation {{ upsertBooks(books: [{TWICE}, {TWICE}]) {{ added }} }}",
    "variable default": f"""mutation($b: [BookInput!]! = [{TWICE}, {TWICE}]) {{
        upsertBooks(books: $b) {{ added }} }}""",
    "fragment and alias": f"""mutation {{ ...change }}
        fragment change on Mutation {{ a: upsertBooks(books: [{TWICE}, {TWICE}]) {{ added }} }}""",
    "one book a variable": "mutation($x: BookInput!) { upsertBooks(books: [$x, $x]) { added } }",
}


@pytest.mark.parametrize("way", DUPLICATES)
def test_an_id_twice_is_refused_however_the_books_are_written(
    api: TestClient, own: Settings, way: str
) -> None:
    before, at = stored(own), version(own)
    book = {"id": "900200", "title": "t", "author": "a", "description": ""}
    body = post(api, DUPLICATES[way], x=book)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert "books[1].id: 900200 is also books[0]" in body["errors"][0]["message"]
    assert (stored(own), version(own)) == (before, at)
