"""What runs often leaves FT.INFO alone: it walks the index's tag and term tries on Redis's
one thread (0.3-0.6 s at a million books, bench.scale), so a searchBooks request, a readiness
probe, a metrics scrape or a tick of the index watch that ran it would stall every other
command for that long. They read the index's status FT.INFO last gave, and FT.INFO runs again
when something says the status can have changed: a new catalogue version (every writer of
books makes one) or a restarted Redis. Counted by Redis itself (INFO commandstats).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.core.settings import Settings
from tests.conftest import gql, metric, wait_ready
from tests.redis_cluster import running_redis

SEARCH = "query($text: String!) { searchBooks(text: $text, k: 5, mode: KEYWORD) { book { id } } }"
SIMILAR = '{ book(id: "26415") { similar(k: 5) { book { id } } } }'
TICKS = 4.5  # more than two ticks of the index watch (every 2 s)


def ft_info_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_FT.INFO", {}).get("calls", 0))


def settled(client: redis.Redis, seconds: float = TICKS) -> int:
    """FT.INFO's count once it has stopped moving for ``seconds``."""
    count = ft_info_calls(client)
    deadline = time.monotonic() + 60
    while True:
        time.sleep(seconds)
        now = ft_info_calls(client)
        if now == count or time.monotonic() > deadline:
            return now
        count = now


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, redis.Redis]]:
    with running_redis("redis", tmp_path_factory.mktemp("index-status")) as url:
        settings = Settings(redis_url=url, data_dir=tmp_path_factory.mktemp("data"))
        client = redis.Redis.from_url(url)
        with TestClient(create_app(settings)) as api:
            assert wait_ready(api)["books"] == 1486
            yield api, client
        client.close()


def test_requests_probes_scrapes_and_the_watch_do_not_run_ft_info(
    served: tuple[TestClient, redis.Redis],
) -> None:
    api, client = served
    before = settled(client)
    for n in range(10):
        found = gql(api, SEARCH, text=f"dragon {n}")  # each a new answer, not a kept one
        assert "errors" not in found, found
        assert gql(api, SIMILAR)["data"]["book"]["similar"]
        assert api.get("/readyz").status_code == 200
        assert metric(api.get("/metrics").text, "lookalike_catalogue_books") == 1486
    time.sleep(TICKS)
    assert ft_info_calls(client) == before


def read_again(client: redis.Redis, count: int) -> int:
    """FT.INFO's count once it has reached ``count`` (a tick of the watch, at most 2 s away)
    and then stayed there for two more ticks."""
    deadline = time.monotonic() + 30
    while ft_info_calls(client) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(TICKS)
    return ft_info_calls(client)


def test_a_new_catalogue_version_is_read_once(served: tuple[TestClient, redis.Redis]) -> None:
    api, client = served
    catalogue: Catalogue = api.app.state.catalogue  # type: ignore[attr-defined]
    before = settled(client)
    client.hset("book:9100001", mapping={"id_number": 9_100_001, "title": "A new book"})
    try:
        api.portal.call(catalogue.changed)  # type: ignore[union-attr]  # what a writer does
        assert read_again(client, before + 1) == before + 1  # one tick read it, none since
        assert metric(api.get("/metrics").text, "lookalike_catalogue_books") == 1487
    finally:
        client.delete("book:9100001")
        api.portal.call(catalogue.changed)  # type: ignore[union-attr]
    assert read_again(client, before + 2) == before + 2
    assert metric(api.get("/metrics").text, "lookalike_catalogue_books") == 1486


def test_a_dropped_index_is_seen_without_ft_info(served: tuple[TestClient, redis.Redis]) -> None:
    """FT._LIST, read with every status, says the index is gone; the watch rebuilds it."""
    api, client = served
    catalogue: Catalogue = api.app.state.catalogue  # type: ignore[attr-defined]
    settled(client)
    client.execute_command("FT.DROPINDEX", "books")  # type: ignore[no-untyped-call]
    status = api.portal.call(catalogue.current_status)  # type: ignore[union-attr]
    assert not status.exists
    assert wait_ready(api)["books"] == 1486  # restored by the watch, from the same keys


def test_a_redis_user_refused_info_still_gets_a_status(
    served: tuple[TestClient, redis.Redis], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An ACL user without INFO (some managed Redis plans): the marker has no run id, and
    the server starts, is ready and serves as any other."""
    _, client = served
    client.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "no-info", "on", ">secret", "~*", "&*", "+@all", "-info"
    )
    try:
        path = client.connection_pool.connection_kwargs["path"]
        url = f"unix://no-info:secret@{path}"
        with pytest.raises(redis.ResponseError, match=r"(?i)permission"):
            redis.Redis.from_url(url).info("server")
        settings = Settings(redis_url=url, data_dir=tmp_path_factory.mktemp("no-info"))
        with TestClient(create_app(settings)) as api:
            assert wait_ready(api)["books"] == 1486
            assert gql(api, SIMILAR)["data"]["book"]["similar"]
            assert metric(api.get("/metrics").text, "lookalike_catalogue_books") == 1486
    finally:
        client.execute_command("ACL", "DELUSER", "no-info")  # type: ignore[no-untyped-call]
