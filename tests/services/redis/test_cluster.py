"""lookalike on a 3-shard Redis Cluster: what only a cluster has (shards, a node going away).

The API tests that run on both backends (``both_backends``: parity, nested batching and its
round trips, radius, filters, search) show that the answers are the same; these show that the
data is really sharded, that no command crosses hash slots, and that a shard that stops
answering costs SERVICE_UNAVAILABLE and nothing more.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import anyio
import pytest
import redis
from redis.asyncio.cluster import RedisCluster as RedisCluster_
from redis.cluster import RedisCluster
from starlette.testclient import TestClient
from typer.testing import CliRunner

from lookalike.schema.app import create_app
from lookalike.schema.cli import app as cli
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.records import ALL_FIELDS
from lookalike.services.core.request_usage import track_usage
from lookalike.services.core.settings import Settings, get_settings
from lookalike.services.redis.connection import open_client
from tests.conftest import error_codes, gql, wait_ready
from tests.redis_cluster import node_pids
from tests.services.books.test_similar_books import COURSE

pytestmark = pytest.mark.parametrize("backend", ["cluster"], indirect=True, scope="session")

SIMILAR = '{ book(id: "26415") { similar(k: 5) { book { id } } } }'


def test_the_books_and_their_index_are_on_every_shard(api: TestClient, settings: Settings) -> None:
    cluster = RedisCluster.from_url(settings.redis_url or "")
    counts = {}
    for node in cluster.get_primaries():  # type: ignore[no-untyped-call]
        single = redis.Redis(host=node.host, port=node.port)
        counts[node.port] = sum(1 for _ in single.scan_iter(match="book:*", count=1000))
        # and the index is on every shard (a node's own list, not the cluster's)
        assert b"books" in single.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
        single.close()
    cluster.close()
    assert sum(counts.values()) == 1486
    assert len(counts) == 3
    assert all(count > 1486 / 3 * 0.8 for count in counts.values()), counts


def test_a_shard_that_stops_answering_costs_service_unavailable_then_recovers(
    api: TestClient, settings: Settings, cluster_dir: Path
) -> None:
    cluster = RedisCluster.from_url(settings.redis_url or "")
    holder = cluster.get_node_from_key("book:26415")  # type: ignore[no-untyped-call]
    pid = node_pids(cluster_dir)[holder.port]
    quick = settings.model_copy(update={"redis_timeout": 0.5})
    with TestClient(create_app(quick)) as own:
        assert [m["book"]["id"] for m in gql(own, SIMILAR)["data"]["book"]["similar"]] == (
            COURSE["26415"][0]
        )
        os.kill(pid, signal.SIGSTOP)
        try:
            down = gql(own, SIMILAR)
            assert down["data"] == {"book": None}
            assert error_codes(down) == ["SERVICE_UNAVAILABLE"]
            assert own.get("/readyz").status_code == 503
            assert own.get("/healthz").status_code == 200
        finally:
            os.kill(pid, signal.SIGCONT)
        # The shard answers again (after the cluster marks it healthy, if it had time to
        # mark it failed): the same answers, nothing to restart.
        deadline = time.monotonic() + 60
        while not _cluster_ok(cluster) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert wait_ready(own) == {"status": "ready", "books": 1486}
        back = gql(own, SIMILAR)
        assert [m["book"]["id"] for m in back["data"]["book"]["similar"]] == COURSE["26415"][0]
    cluster.close()


def _cluster_ok(cluster: RedisCluster) -> bool:
    nodes = cluster.get_primaries()  # type: ignore[no-untyped-call]
    states = [
        redis.Redis(host=n.host, port=n.port).execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        for n in nodes
    ]
    return all(b"cluster_state:ok" in state for state in states)


def test_the_command_line_works_on_a_cluster(
    api: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    runner = CliRunner()
    loaded = runner.invoke(cli, ["books", "load"])
    assert loaded.exit_code == 0, loaded.output
    assert "1486 books: 0 added, 0 updated, 1486 unchanged" in loaded.stdout
    similar = runner.invoke(cli, ["books", "similar", "9", "--k", "3"])
    assert similar.exit_code == 0, similar.output
    ranked = re.findall(r"^│ (\d+) │ (\d+)\s", similar.stdout, re.MULTILINE)
    assert ranked == [("1", "15"), ("2", "3"), ("3", "110")]
    get_settings.cache_clear()


def test_a_pipeline_over_every_shard_costs_one_round_trip(
    api: TestClient, settings: Settings
) -> None:
    """The books asked for live on three shards: the pipeline goes to the three at once, one
    wait, so it counts one round trip, as on one Redis; a single command counts one too."""
    ids = ["9", "26415", "15", "0", "3", "2"]  # keys in the slots of all three shards

    async def scenario() -> tuple[int, int, set[str]]:
        client = await open_client(settings.redis_url or "", 2.0)
        try:
            assert isinstance(client, RedisCluster_)
            nodes = [client.get_node_from_key(f"book:{i}") for i in ids]
            shards = {node.name for node in nodes if node is not None}
            usage = track_usage()
            books = await Catalogue(client, settings).read(ids, ALL_FIELDS)
            assert all(b is not None for b in books)
            pipelined = usage.round_trips
            await client.get("index-definition:books")
            return pipelined, usage.round_trips - pipelined, shards
        finally:
            await client.aclose()

    pipelined, single, shards = anyio.run(scenario)
    assert len(shards) == 3
    assert (pipelined, single) == (1, 1)
