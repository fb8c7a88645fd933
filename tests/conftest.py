"""Real Redis for the whole session: one Redis (the embedded server: search and JSON modules),
and a 3-shard Redis Cluster for the modules that run on both (``both_backends``).

The API fixture runs the real app with its lifespan, which loads the shipped catalogue into a
fresh index: every session is a fresh HNSW build, on each backend.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.core.settings import Settings
from lookalike.services.redis.connection import open_client
from lookalike.services.redis.embedded import EmbeddedRedis
from lookalike.services.redis.indexes import drop_index
from tests.redis_cluster import running_cluster
from tests.servers import serving

BACKENDS = ("redis", "cluster")
# A module (or test) marked with this runs once against one Redis and once against a cluster
# (whose cases skip, saying how to enable them, without the coordinator: tests/redis_cluster.py).
both_backends = pytest.mark.parametrize("backend", BACKENDS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """Which Redis the session fixtures below use: "redis" unless a test asks for both."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture(scope="session")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's cluster nodes keep their files and pids."""
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="session")
def cluster_url(cluster_dir: Path) -> Iterator[str]:
    with running_cluster(cluster_dir) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(backend: str, request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("cluster_url" if backend == "cluster" else "embedded_url")
    return url


def sync_client(url: str) -> redis.Redis | redis.RedisCluster:
    """A plain redis-py client for what ``url`` names (a cluster node: the cluster)."""
    single = redis.Redis.from_url(url)
    if not int(single.info("cluster").get("cluster_enabled", 0)):
        return single
    single.close()
    return redis.RedisCluster.from_url(url)


API_KEY = "test-key-0123456789abcdef"  # the session app's one key; its client sends it


@pytest.fixture(scope="session")
def settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        redis_url=redis_url, data_dir=tmp_path_factory.mktemp("data"), api_keys=[SecretStr(API_KEY)]
    )


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(settings), headers=headers) as client:
        yield client


@contextlib.contextmanager
def scratch_catalogue(settings: Settings, name: str, **updates: Any) -> Iterator[Settings]:
    """Settings for a catalogue of the block's own on the session's Redis (index and key
    prefix ``name``, and ``updates``); its index and books are dropped after."""
    scratch = settings.model_copy(update={"index_name": name, "key_prefix": name, **updates})
    try:
        yield scratch
    finally:

        async def drop() -> None:
            client = await open_client(scratch.redis_url or "", 5)
            await drop_index(client, Catalogue(client, scratch).schema, documents=True)
            await client.aclose()

        anyio.run(drop)


def wait_ready(api: TestClient, timeout: float = 60) -> dict[str, Any]:
    """/readyz once it says ready: a rebuilt index reads its books in the background."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            body: dict[str, Any] = response.json()
            return body
        time.sleep(0.1)


@dataclass(frozen=True)
class LiveServer:
    url: str  # http://127.0.0.1:<port>
    key: str  # its one API key
    log: Path  # its stderr


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real ``lookalike serve`` for clients that need real HTTP (a browser, Node), run as a
    newcomer runs it: its own embedded Redis in a fresh data directory, the shipped
    catalogue, the default limits; one API key."""
    data = tmp_path_factory.mktemp("live-server")
    with serving(
        data / "serve.log",
        REDIS_URL="",
        LOOKALIKE_REDIS_URL="",
        LOOKALIKE_DATA_DIR=str(data),
        LOOKALIKE_API_KEYS=API_KEY,
    ) as served:
        yield LiveServer(served.base, API_KEY, served.log)


def from_address(api: TestClient, host: str) -> TestClient:
    """A client of the same running app (same event loop, same Redis connections) that
    connects from another address and sends no default key."""
    other = TestClient(api.app, client=(host, 50000))
    other.portal = api.portal
    return other


def redis_dump(redis_url: str, pattern: str) -> dict[bytes, Any]:
    """Every key matching ``pattern`` with its value: to prove a request wrote nothing."""
    client = sync_client(redis_url)
    dumped: dict[bytes, Any] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        kind = client.type(key)
        if kind == b"hash":
            dumped[key] = client.hgetall(key)
        elif kind == b"ReJSON-RL":
            dumped[key] = client.json().get(key, "$")
        elif kind == b"zset":
            dumped[key] = client.zrange(key, 0, -1)
        else:
            dumped[key] = client.get(key)
    client.close()
    return dumped


def distance_tolerance(settings: Settings) -> float:
    """How far a distance Redis reports may be from exact (numpy, FLOAT32) search. FLOAT16
    vectors round each of the 384 numbers to 11 bits (measured: at most 0.00007 off on one
    Redis), and the cluster's query engine (search 2.10.33) computes FLOAT16 distances in
    FLOAT16 (measured: up to 0.00051 off)."""
    return 1e-5 if settings.vector_type == "float32" else 1e-3


def gql(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a /metrics page, read with prometheus_client's own parser
    (0 when the series is absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def metric_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def metric_labels(text: str, name: str, label: str) -> set[str]:
    """Every value one label takes in a metric's samples."""
    return {
        found.labels[label]
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == name and label in found.labels
    }


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]
