"""What runs often leaves FT.INFO alone: it walks the index's tag and term tries on Redis's
one thread (0.3-0.6 s at a million books, bench.scale), so a searchBooks request, a readiness
probe, a metrics scrape or a tick of the index watch that ran it would stall every other
command for that long. They read the index's status FT.INFO last gave, and FT.INFO runs again
when something says the status can have changed: a new catalogue version (every writer of
books makes one) or a restarted Redis. Counted by Redis itself (INFO commandstats).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redisvl.schema import IndexSchema
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.books import index_status
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.index_status import IndexStatusReader
from lookalike.services.core.settings import Settings
from lookalike.services.redis import indexes
from lookalike.services.redis.indexes import NO_EXTRAS, create_index, fully_indexed, info_of
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


def test_a_dropped_index_is_seen_and_rebuilt(served: tuple[TestClient, redis.Redis]) -> None:
    """FT._LIST, read with every status, says the index is gone; the watch rebuilds it.
    (That no FT.INFO is asked to see it is counted with readers of their own, below.)"""
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


# ``IndexStatusReader`` in several processes: each reader below is what one process (a worker,
# a server on another machine) holds, on a Redis of their own (no server's watch reads FT.INFO
# there meanwhile). FT.INFO there takes about a millisecond, so the spacing it earns (ten
# times that) is too short to see; the test that needs a slow FT.INFO raises INFO_SPACING instead,
# as a million books' FT.INFO would.
OWN = "status-test"


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis("redis", tmp_path_factory.mktemp("index-status-readers")) as url:
        yield url


OWN_SCHEMA = IndexSchema.from_dict(
    {
        "index": {"name": OWN, "prefix": f"{OWN}:", "storage_type": "hash"},
        "fields": [{"name": "t", "type": "tag"}],
    }
)


def create_own(url: str) -> None:
    """FT.CREATE as the product sends it (``indexes.create_index``: a new generation)."""

    async def create() -> None:
        client = redis.asyncio.Redis.from_url(url)
        await create_index(client, OWN_SCHEMA, NO_EXTRAS)
        await client.aclose()

    asyncio.run(create())


def scanned(client: redis.Redis) -> None:
    """Until the index has read the books already in Redis (after FT.CREATE)."""
    deadline = time.monotonic() + 30
    while not fully_indexed(info_of(client.execute_command("FT.INFO", OWN))):  # type: ignore[no-untyped-call]
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.fixture
def readers(own_redis: str) -> Iterator[tuple[redis.Redis, list[IndexStatusReader]]]:
    client = redis.Redis.from_url(own_redis)
    client.flushall()
    create_own(own_redis)
    for n in range(5):
        client.hset(f"{OWN}:{n}", "t", "x")
    client.set(f"index-definition:{OWN}", "one")
    made = [
        IndexStatusReader(
            redis.asyncio.Redis.from_url(own_redis),
            OWN,
            f"catalogue-version:{OWN}",
            f"index-definition:{OWN}",
        )
        for _ in range(4)
    ]
    yield client, made
    client.execute_command("FT.DROPINDEX", OWN, "DD")  # type: ignore[no-untyped-call]
    client.close()


def test_a_status_one_process_read_is_shared_with_the_others(
    readers: tuple[redis.Redis, list[IndexStatusReader]],
) -> None:
    client, all_of_them = readers
    first, *others = all_of_them

    async def run() -> None:
        before = ft_info_calls(client)
        read = await first.read()
        assert read.status.documents == 5
        assert ft_info_calls(client) == before + 1
        for other in others:  # the same marker: what the first read is theirs
            assert (await other.current()).status == read.status
        assert ft_info_calls(client) == before + 1
        client.hset(f"{OWN}:5", "t", "y")
        client.set(first.version_key, "a book written")  # what a writer does
        await asyncio.sleep(0.2)  # past the spacing a 1 ms FT.INFO earns, and the claim
        # All four at once: one claims the read, the others keep what they had this time
        await asyncio.gather(*(reader.current() for reader in all_of_them))
        assert ft_info_calls(client) == before + 2
        found = [await reader.current() for reader in all_of_them]  # and take it the next
        assert ft_info_calls(client) == before + 2
        assert {r.marker.version for r in found} == {"a book written"}
        assert {r.status.documents for r in found} == {6}

    asyncio.run(run())


def test_a_stream_of_writes_reads_ft_info_only_when_it_is_due(
    readers: tuple[redis.Redis, list[IndexStatusReader]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As at a million books, where a read takes 0.5 s and the next is due 5 s later: every
    write moves the version, and no process asks FT.INFO until then. A change of the index
    itself (its definition: a rebuild) is read at once."""
    client, readers_ = readers
    monkeypatch.setattr(indexes, "INFO_SPACING", 100_000.0)  # a 1 ms read: due in 100 s

    async def run() -> None:
        before = ft_info_calls(client)
        read = await readers_[0].read()
        for n in range(20):
            client.hset(f"{OWN}:{10 + n}", "t", "z")
            client.set(readers_[0].version_key, f"write {n}")
            for reader in readers_:
                assert (await reader.current()).status == read.status  # 5 books, for now
        assert ft_info_calls(client) == before + 1
        client.set(readers_[0].definition_key, "rebuilt")
        assert (await readers_[1].current()).status.documents == 25
        assert ft_info_calls(client) == before + 2
        assert (await readers_[2].current()).status.documents == 25  # shared
        assert ft_info_calls(client) == before + 2

    asyncio.run(run())


def test_a_status_due_by_age_is_read_by_one_process_for_all(
    readers: tuple[redis.Redis, list[IndexStatusReader]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every copy of a shared status comes due at the same moment: one process claims the
    read, the others keep what they have and take the new one at their next look."""
    client, all_of_them = readers
    monkeypatch.setattr(index_status, "STATUS_MAX_AGE", 0.5)
    monkeypatch.setattr(index_status, "SHARED_FOR", 1.0)

    async def run() -> None:
        first = await all_of_them[0].read()
        for reader in all_of_them[1:]:
            assert (await reader.current()).read_at == pytest.approx(first.read_at, abs=0.05)
        before = ft_info_calls(client)
        await asyncio.sleep(0.6)  # due for every one of them
        await asyncio.gather(*(reader.current() for reader in all_of_them))
        assert ft_info_calls(client) == before + 1
        found = [await reader.current() for reader in all_of_them]
        assert ft_info_calls(client) == before + 1
        assert len({round(r.read_at, 2) for r in found}) == 1  # the one new reading
        assert found[0].read_at > first.read_at

    asyncio.run(run())


def test_an_index_dropped_and_created_again_is_read_at_once(
    own_redis: str,
    readers: tuple[redis.Redis, list[IndexStatusReader]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dropped: FT._LIST says so, with no FT.INFO. Created again under the same definition
    with no book written (another process's recovery): its generation says it is another
    index, so it is read at once, not when a version change would be due. While one
    process reads it, the others say it is still building, not what they knew of the old."""
    client, all_of_them = readers
    monkeypatch.setattr(indexes, "INFO_SPACING", 100_000.0)  # nothing due by the spacing
    first, second, third, _ = all_of_them

    async def run() -> None:
        await first.read()
        for reader in (second, third):
            assert (await reader.current()).status.complete
        client.execute_command("FT.DROPINDEX", OWN)  # type: ignore[no-untyped-call]
        before = ft_info_calls(client)
        assert not (await second.current()).status.exists
        assert ft_info_calls(client) == before  # seen from FT._LIST alone
        await asyncio.to_thread(create_own, own_redis)
        await asyncio.to_thread(scanned, client)
        before = ft_info_calls(client)
        found = await asyncio.gather(first.current(), third.current())
        assert ft_info_calls(client) == before + 1  # one of them read it
        read = next(r for r in found if r.took > 0)
        assert read.status.complete
        assert read.status.documents == 5
        other = next(r for r in found if r is not read)  # it lost the claim meanwhile
        assert other.status.exists
        assert not other.status.complete
        for reader in (second, third):  # their next look finds the reading shared
            assert (await reader.current()).marker == read.marker
        assert ft_info_calls(client) == before + 1

    asyncio.run(run())
