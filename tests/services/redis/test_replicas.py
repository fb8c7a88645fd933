"""Read replicas: searches and reads on a healthy replica, writes and what follows them on the
primary, a dead or lagging replica skipped without a failed request.

A real primary and a real replica (``--replicaof``, the same modules), on TCP. Where a command
went is read from each server's own command statistics (INFO commandstats).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from bench.redis_nodes import RedisNode, wait_in_sync
from lookalike.schema.app import create_app
from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.settings import Settings
from lookalike.services.redis.connection import connect
from lookalike.services.redis.replicas import Reads, Replica, open_reads
from tests.conftest import API_KEY, gql
from tests.photos import ENROLL, PERSON, orl, send
from tests.services.books.test_similar_books import COURSE

NESTED = """{ book(id: "26415") { similar(k: 5) { book { id title similar(k: 2) {
  book { id } } } } } books(first: 3) { totalCount } genres { name } }"""


def calls(node: RedisNode, command: str) -> int:
    stats = node.client().info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def wait_healthy(reads: Reads, healthy: bool = True, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(r.healthy != healthy for r in reads.replicas):
        assert time.monotonic() < deadline, [(r.url, r.reason) for r in reads.replicas]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisNode, RedisNode]]:
    base = tmp_path_factory.mktemp("replication")
    primary = RedisNode(base / "primary").start()
    replica = RedisNode(base / "replica", replica_of=primary.port).start()
    yield primary, replica
    replica.stop()
    primary.stop()


@pytest.fixture(scope="module")
def served(
    nodes: tuple[RedisNode, RedisNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Reads]]:
    primary, replica = nodes
    settings = Settings(
        redis_url=primary.url,
        redis_replicas=[replica.url],
        data_dir=tmp_path_factory.mktemp("replica-data"),
        api_keys=[SecretStr(API_KEY)],
    )
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_KEY}"}) as api:
        reads: Reads = api.app.state.catalogue.reads  # type: ignore[attr-defined]
        wait_healthy(reads)  # the replica has the books and has indexed them
        yield api, reads


def test_searches_and_reads_go_to_the_replica(
    served: tuple[TestClient, Reads], nodes: tuple[RedisNode, RedisNode]
) -> None:
    api, _ = served
    primary, replica = nodes
    before = {n.port: (calls(n, "FT.SEARCH"), calls(n, "hmget")) for n in nodes}
    body = gql(api, NESTED)
    assert "errors" not in body, body
    ids = [m["book"]["id"] for m in body["data"]["book"]["similar"]]
    assert ids == COURSE["26415"][0]
    assert body["data"]["books"]["totalCount"] == 1486
    assert calls(replica, "FT.SEARCH") > before[replica.port][0]
    assert calls(replica, "hmget") > before[replica.port][1]
    assert (calls(primary, "FT.SEARCH"), calls(primary, "hmget")) == before[primary.port]


def test_a_request_that_wrote_reads_from_the_primary(
    served: tuple[TestClient, Reads], nodes: tuple[RedisNode, RedisNode]
) -> None:
    api, _ = served
    primary, replica = nodes
    before = {n.port: calls(n, "hmget") for n in nodes}
    enrolled = send(api, ENROLL, orl("s5", 1), id="r1", name="Replicated").json()
    # the person read back after the write comes from the primary, so it counts the new face
    assert enrolled["data"]["enrollFace"] == {"id": "r1", "name": "Replicated", "faceCount": 1}
    assert calls(primary, "hmget") > before[primary.port]
    assert calls(replica, "hmget") == before[replica.port]

    wait_in_sync(primary, replica)
    person = gql(api, PERSON, id="r1")["data"]["person"]  # a request that only reads
    assert person == {"id": "r1", "name": "Replicated", "faceCount": 1}
    assert calls(replica, "hmget") > before[replica.port]


def test_a_replica_that_dies_is_skipped_without_a_failed_request(
    served: tuple[TestClient, Reads], nodes: tuple[RedisNode, RedisNode]
) -> None:
    api, reads = served
    primary, replica = nodes
    searches = calls(primary, "FT.SEARCH")
    replica.kill()
    for _ in range(10):  # the first finds it dead, the rest go straight to the primary
        body = gql(api, NESTED)
        assert "errors" not in body, body
        assert [m["book"]["id"] for m in body["data"]["book"]["similar"]] == COURSE["26415"][0]
    assert not reads.replicas[0].healthy
    assert calls(primary, "FT.SEARCH") > searches
    assert api.get("/readyz").status_code == 200

    replica.start()  # back empty: it resynchronises, indexes, then serves again
    wait_healthy(reads)
    served_by_replica = calls(replica, "FT.SEARCH")
    assert "errors" not in gql(api, NESTED)
    assert calls(replica, "FT.SEARCH") > served_by_replica


def test_a_replica_behind_the_primary_or_unlinked_is_left_out(tmp_path: Path) -> None:
    primary = RedisNode(tmp_path / "primary").start()
    replica = RedisNode(tmp_path / "replica", replica_of=primary.port).start()
    stranger = RedisNode(tmp_path / "stranger").start()  # a Redis, but no replica of it
    wait_in_sync(primary, replica)

    async def scenario() -> list[tuple[bool, str]]:
        client = connect(primary.url, 5)
        replicas = [Replica(n.url, connect(n.url, 5)) for n in (replica, stranger)]
        reads = Reads(client, replicas, max_lag=1024)
        seen = []
        try:
            await reads.check()
            seen.append((replicas[0].healthy, replicas[0].reason))
            seen.append((replicas[1].healthy, replicas[1].reason))
            # The replica paused for writes holds its replication stream too: a megabyte
            # written meanwhile leaves it behind for as long as the pause lasts (60 MB with
            # no pause was a race on loopback: a quiet machine replicated it before the check).
            await replicas[0].client.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
            await client.set("bulk", b"x" * 1_000_000)
            await reads.check()
            seen.append((replicas[0].healthy, replicas[0].reason))
            assert reads.pick() is None  # reads go to the primary meanwhile
            await replicas[0].client.execute_command("CLIENT", "UNPAUSE")
            await anyio.to_thread.run_sync(wait_in_sync, primary, replica)
            await reads.check()
            seen.append((replicas[0].healthy, replicas[0].reason))
            assert reads.pick() is replicas[0]
            # its link to the primary cut: left out until it is back
            await replicas[0].client.execute_command("REPLICAOF", "127.0.0.1", "1")
            await reads.check()
            seen.append((replicas[0].healthy, replicas[0].reason))
        finally:
            await client.aclose()
            for r in replicas:
                await r.client.aclose()
        return seen

    try:
        seen = anyio.run(scenario)
    finally:
        for node in (replica, stranger, primary):
            node.stop()
    assert seen[0] == (True, "ok")
    assert seen[1] == (False, "it is not a replica")
    assert seen[2][0] is False
    assert "bytes behind the primary" in seen[2][1]
    assert seen[3] == (True, "ok")
    assert seen[4][0] is False
    assert "replicates another primary" in seen[4][1] or "link" in seen[4][1]


def test_replicas_need_one_primary_on_tcp(tmp_path: Path) -> None:
    async def attempt() -> None:
        settings = Settings(redis_url=None, data_dir=tmp_path, redis_replicas=["redis://x:1"])
        async with open_reads(settings, connect("redis://127.0.0.1:1", 1)):
            pass

    with pytest.raises(ServiceUnavailable, match="needs REDIS_URL"):
        anyio.run(attempt)
