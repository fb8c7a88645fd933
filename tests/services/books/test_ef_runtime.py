"""EF_RUNTIME chosen from the index's size: HNSW's recall at one EF_RUNTIME falls as its graph
grows, so unless LOOKALIKE_HNSW_EF_RUNTIME fixes it, a KNN's EF_RUNTIME follows the books the
index holds per shard (LOOKALIKE_HNSW_EF_CURVE), read from the index while the server runs.

The tests give the server a curve of small sizes (the shipped curve starts at 100,000 books
a shard, more than a test can load), grow the index past its points with books that have no
vector yet (each counts in the index's size like any book), and shrink it again.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Callable, Iterator

import anyio
import pytest
import redis
from starlette.testclient import TestClient

from bench import scale
from lookalike.schema.app import create_app
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.queries import ef_for_books
from lookalike.services.books.records import BookFields
from lookalike.services.core.settings import Settings
from tests.conftest import both_backends, gql, metric, sync_client, wait_ready

# 1,486 shipped books: within the first point on one Redis and on 3 shards (496 each)
CURVE = ((2_000, 100), (8_000, 400))
ADDED = 6_000  # then 7,486: 7,486 a shard on one Redis, about 2,496 on each of 3 shards
GROWN = {1: 400, 3: 150}  # EF_RUNTIME along the log of the size, in steps of 25, by shards
SIMILAR = '{ book(id: "26415") { similar(k: 5) { book { id } } } }'


def own_index(settings: Settings, name: str, **update: object) -> Settings:
    return settings.model_copy(
        update={
            "index_name": name,
            "key_prefix": name,
            "hnsw_ef_curve": CURVE,
            "redis_timeout": 20.0,
            **update,
        }
    )


@contextlib.contextmanager
def index_dropped_after(settings: Settings) -> Iterator[redis.Redis | redis.RedisCluster]:
    client = sync_client(settings.redis_url or "")
    try:
        yield client
    finally:
        with contextlib.suppress(redis.ResponseError):
            client.execute_command("FT.DROPINDEX", settings.index_name, "DD")  # type: ignore[no-untyped-call]
        added_books(client, settings.key_prefix, "unlink")
        client.close()


def added_books(client: redis.Redis | redis.RedisCluster, prefix: str, how: str) -> None:
    """Books with no vector yet (their descriptions still to embed): in the index's size.
    Then a new catalogue version, as every writer of books in lookalike makes one
    (``Catalogue.changed``): what tells a server to read the index's size again (own_index
    names the index as its key prefix)."""
    pipe = client.pipeline(transaction=False)
    for n in range(ADDED):
        key = f"{prefix}:{9_000_000 + n}"
        if how == "add":
            pipe.hset(key, mapping={"id_number": 9_000_000 + n, "title": f"Added {n}"})
        else:
            pipe.unlink(key)
    pipe.execute()
    client.set(f"catalogue-version:{prefix}", secrets.token_hex(8))


def sent_ef(catalogue: Catalogue) -> int:
    """The EF_RUNTIME parameter of the FT.SEARCH a 10-book KNN sends now."""
    arguments = catalogue.queries.knn(bytes(768), 10, [], BookFields(frozenset())).arguments()
    names = arguments.index("PARAMS") + 2
    return int(arguments[names + arguments[names::2].index("EF") * 2 + 1])


def eventually(read: Callable[[], int], wanted: int, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while (found := read()) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@both_backends
def test_ef_runtime_follows_the_books_per_shard_as_the_index_grows_and_shrinks(
    settings: Settings, backend: str
) -> None:
    own = own_index(settings, "efsize")
    with index_dropped_after(own) as client, TestClient(create_app(own)) as api:
        assert wait_ready(api)["books"] == 1486
        catalogue: Catalogue = api.app.state.catalogue  # type: ignore[attr-defined]
        shards = 3 if backend == "cluster" else 1
        assert metric(api.get("/metrics").text, "lookalike_books_ef_runtime") == 100
        assert sent_ef(catalogue) == 100

        added_books(client, own.key_prefix, "add")
        # the server notices by itself (its index watch), with no request asking
        assert eventually(lambda: sent_ef(catalogue), GROWN[shards]) == GROWN[shards]
        assert catalogue.books == 1486 + ADDED
        assert metric(api.get("/metrics").text, "lookalike_books_ef_runtime") == GROWN[shards]
        similar = gql(api, SIMILAR)["data"]["book"]["similar"]
        assert len(similar) == 5

        added_books(client, own.key_prefix, "unlink")
        assert eventually(lambda: sent_ef(catalogue), 100) == 100


@both_backends
def test_an_explicit_ef_runtime_wins_over_the_index_size(settings: Settings) -> None:
    own = own_index(settings, "effixed", hnsw_ef_runtime=37)
    with index_dropped_after(own) as client, TestClient(create_app(own)) as api:
        wait_ready(api)
        added_books(client, own.key_prefix, "add")
        catalogue: Catalogue = api.app.state.catalogue  # type: ignore[attr-defined]
        assert eventually(lambda: catalogue.books, 1486 + ADDED) == 1486 + ADDED
        assert sent_ef(catalogue) == 37
        assert metric(api.get("/metrics").text, "lookalike_books_ef_runtime") == 37
        # a KNN for more books than EF_RUNTIME keeps at least that many candidates
        assert catalogue.queries.ef_runtime(50, thorough=False) == 50


@pytest.mark.parametrize("books", [1, 1_486, 100_000, 300_000, 1_000_000, 10_000_000])
def test_the_shipped_curve_rises_with_the_size_and_meets_its_points(books: int) -> None:
    curve = Settings().hnsw_ef_curve
    chosen = ef_for_books(books, curve)
    points = dict(curve)
    if books in points:
        assert chosen == math.ceil(points[books] / 25) * 25
    assert chosen <= ef_for_books(books + books // 2, curve)
    assert ef_for_books(curve[-1][0] * 10, curve) > curve[-1][1]  # past the last point too


@pytest.mark.parametrize("curve", ["2000:100,1000:400", "2000:400,8000:100", "2000", "a:b", ""])
def test_an_ef_curve_that_does_not_rise_is_refused(
    curve: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKALIKE_HNSW_EF_CURVE", curve)
    with pytest.raises(ValueError, match=r"curve|EF_RUNTIME|at least 1"):
        Settings()


RECALL_BOOKS = 10_000  # what a test can load in seconds; bench/scale.py measures a million


def test_generated_books_are_found_at_the_ef_runtime_their_size_chooses(settings: Settings) -> None:
    """recall@10 against exact search (bench/scale.py's catalogue and measure: the shipped
    books plus generated relatives) at the EF_RUNTIME the shipped curve gives the size."""
    own = settings.model_copy(
        update={"index_name": "efrecall", "key_prefix": "efrecall", "redis_timeout": 20.0}
    )
    data = scale.generate(RECALL_BOOKS)
    with index_dropped_after(own):
        anyio.run(scale.load, own, data)
        near, _, _, ef = anyio.run(scale.recall, own, data, 300, 5)
    assert ef == ef_for_books(RECALL_BOOKS, Settings().hnsw_ef_curve)
    assert near >= 0.95
