"""Redis under pressure: a burst larger than the connection pool, a Redis too slow to serve
one within the deadline, and a Redis at its maxmemory. None of it may become a 500."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aredis
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from lookalike.services.redis.coordination.index_users import TTL, IndexUse, announced, registry_key
from lookalike.services.redis.embedded import EmbeddedRedis
from tests.conftest import API_KEY, both_backends, error_codes, metric, sync_client
from tests.photos import ENROLL, PREFLIGHT, orl
from tests.servers import serving

SMALL_POOL = 4


def burst(api: TestClient, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every request sent at once into the running app (its event loop, its Redis pool), as
    one client's many connections would; each answer's JSON."""

    async def send_all() -> list[dict[str, Any]]:
        transport = httpx.ASGITransport(app=api.app)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers, timeout=60
        ) as client:
            replies = await asyncio.gather(*(client.post("/graphql", json=b) for b in bodies))
        for reply in replies:
            assert reply.headers["content-type"].startswith("application/json"), reply.text
        return [reply.json() for reply in replies]

    assert api.portal is not None  # the app is running
    return api.portal.call(send_all)


SIMILAR = "query($id: ID!) { book(id: $id) { id similar(k: 5) { book { id title } } } }"
DELETE = "mutation($id: ID!) { deletePerson(id: $id) }"
BOOK_IDS = ["9", "15", "3", "110", "2", "37", "26415", "3008", "2706", "942"]


def similar_bodies(n: int) -> list[dict[str, Any]]:
    return [{"query": SIMILAR, "variables": {"id": BOOK_IDS[i % len(BOOK_IDS)]}} for i in range(n)]


def delete_bodies(n: int) -> list[dict[str, Any]]:
    return [{"query": DELETE, "variables": {"id": f"burst-{i}"}} for i in range(n)]


def lookup_bodies(n: int) -> list[dict[str, Any]]:
    """Automatic persisted queries sent by hash alone (hashes nobody registered)."""
    return [
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": f"{i:064x}"}}}
        for i in range(n)
    ]


@both_backends
def test_a_burst_larger_than_the_redis_pool_waits_for_connections(settings: Settings) -> None:
    """120 concurrent queries and 80 concurrent mutations through a pool of 4 connections
    (on a cluster: 4 to each node): every one is answered, as it is alone."""
    small = settings.model_copy(update={"redis_max_connections": SMALL_POOL})
    with TestClient(create_app(small)) as api:
        alone = {i: burst(api, similar_bodies(len(BOOK_IDS)))[n] for n, i in enumerate(BOOK_IDS)}
        assert all("errors" not in answer for answer in alone.values()), alone
        assert api.get("/readyz").json()["status"] == "ready"  # INFO memory of every node
        for n, answer in enumerate(burst(api, similar_bodies(120))):
            assert answer["data"] == alone[BOOK_IDS[n % len(BOOK_IDS)]]["data"], answer
        for answer in burst(api, delete_bodies(80)):
            assert answer.get("errors") is None, answer
            assert answer["data"] == {"deletePerson": False}


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of this module's own, to pause and to fill: the session's stays untouched."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("pressured-redis"))
    url = server.start()
    try:  # the catalogue loaded once, with the default timeout (its chunks are large)
        loader = Settings(redis_url=url, data_dir=tmp_path_factory.mktemp("loader"))
        with TestClient(create_app(loader)):
            pass
        yield url
    finally:
        server.stop()


def test_a_burst_redis_cannot_serve_within_the_deadline_is_service_unavailable(
    own_redis: str, tmp_path: Path
) -> None:
    """Redis paused (CLIENT PAUSE) under a burst through a pool of 2 (queries, mutations,
    persisted queries looked up by hash): the requests holding a connection give up after
    LOOKALIKE_REDIS_TIMEOUT, those waiting for one get SERVICE_UNAVAILABLE saying Redis is
    busy; nothing is a 500, and once Redis answers again so does every request."""
    settings = Settings(
        redis_url=own_redis,
        data_dir=tmp_path,
        redis_timeout=0.5,
        redis_max_connections=2,
        api_keys=[API_KEY],  # type: ignore[list-item]
    )
    control = redis.Redis.from_url(own_redis)
    with TestClient(create_app(settings)) as api:
        assert all("errors" not in a for a in burst(api, similar_bodies(4)))
        control.client_pause(4000, all=True)
        try:
            started = time.monotonic()
            answers = burst(api, similar_bodies(20) + delete_bodies(10) + lookup_bodies(5))
            assert time.monotonic() - started < 3.5  # not held until Redis resumes
        finally:
            control.client_unpause()
        assert [error_codes(a) for a in answers] == [["SERVICE_UNAVAILABLE"]] * 35, answers
        busy = [a for a in answers if "no connection to it came free" in a["errors"][0]["message"]]
        assert len(busy) >= 20, answers  # all but the few that got a connection
        assert busy[0]["errors"][0]["message"] == (
            "Redis is busy: no connection to it came free within 0.5 s; try again shortly"
        )
        # one at a time: a pool of 2 with a 0.5 s wait is for this test, not for a burst
        after = [burst(api, [body])[0] for body in similar_bodies(3) + delete_bodies(2)]
        assert all("errors" not in a for a in after), after
        (unknown,) = burst(api, lookup_bodies(1))
        assert error_codes(unknown) == ["PERSISTED_QUERY_NOT_FOUND"]
    control.close()


SEARCH = "query($text: String!) { searchBooks(text: $text, k: 3) { book { id } distance } }"
REFUSED = "lookalike_redis_refused_writes_total"


def enrol(base: str, person: str, photo: bytes) -> httpx.Response:
    operations = {"query": ENROLL, "variables": {"id": person, "image": None}}
    return httpx.post(
        f"{base}/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.image"]})},
        files={"0": ("photo", photo, "application/octet-stream")},
        headers=PREFLIGHT,
        timeout=60,
    )


def post_json(connection: http.client.HTTPConnection, body: dict[str, Any]) -> Any:
    connection.request("POST", "/graphql", json.dumps(body), {"content-type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    assert response.status == 200, payload
    assert response.getheader("content-type", "").startswith("application/json"), payload
    assert response.getheader("connection") != "close"
    return json.loads(payload)


def test_a_full_redis_still_answers_searches_and_refuses_writes_as_service_unavailable(
    own_redis: str, tmp_path: Path
) -> None:
    """Redis over its maxmemory (noeviction, the README's advice) under a real `lookalike
    serve`: new-text searches are answered (their cache write skipped), an APQ registration
    is answered as JSON on a connection that stays open, enrollFace is SERVICE_UNAVAILABLE;
    /readyz says writes are refused, /metrics counts each refused write by what it was, and
    the log has one line for each, without a traceback."""
    control = redis.Redis.from_url(own_redis)
    log = tmp_path / "serve.log"
    with serving(log, REDIS_URL=own_redis, LOOKALIKE_DATA_DIR=str(tmp_path)) as served:
        base = served.base
        # the models loaded and one person enrolled while Redis has room
        warm = httpx.post(
            f"{base}/graphql", json={"query": SEARCH, "variables": {"text": "x"}}, timeout=60
        )
        assert "errors" not in warm.json()
        first = enrol(base, "full-redis", orl("s7", 1)).json()
        assert first["data"]["enrollFace"]["faceCount"] == 1, first

        control.config_set("maxmemory-policy", "noeviction")
        control.config_set("maxmemory", int(control.info("memory")["used_memory"]) // 2)
        try:
            for _ in range(10):
                text = f"{uuid.uuid4().hex} robots and the sea"
                answer = httpx.post(
                    f"{base}/graphql",
                    json={"query": SEARCH, "variables": {"text": text}},
                    timeout=30,
                )
                assert answer.status_code == 200, answer.text
                assert "errors" not in answer.json(), answer.text
                assert len(answer.json()["data"]["searchBooks"]) == 3

            query = '{ book(id: "9") { title } }'
            digest = hashlib.sha256(query.encode()).hexdigest()
            persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
            connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
            registered = post_json(connection, {"query": query, "extensions": persisted})
            assert "errors" not in registered, registered
            opened = connection.sock
            by_hash = post_json(connection, {"extensions": persisted})  # this process kept it
            assert by_hash["data"] == registered["data"]
            assert connection.sock is opened  # the same connection: not reset
            connection.close()

            refused = enrol(base, "full-redis", orl("s7", 2))
            assert refused.headers["content-type"].startswith("application/json")
            body = refused.json()
            assert error_codes(body) == ["SERVICE_UNAVAILABLE"], body
            assert "maxmemory" in body["errors"][0]["message"]

            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["reason"].startswith("redis refuses writes: maxmemory reached")

            scraped = httpx.get(f"{base}/metrics").text
            assert metric(scraped, REFUSED, writing="search_text_cache") == 10
            assert metric(scraped, REFUSED, writing="persisted_query") == 1
            assert metric(scraped, REFUSED, writing="face") == 1
        finally:
            control.config_set("maxmemory", 0)

        time.sleep(1.1)  # /readyz keeps its memory check for a second
        assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
        again = enrol(base, "full-redis", orl("s7", 2)).json()
        assert again["data"]["enrollFace"]["faceCount"] == 2, again  # nothing half-written

        lines = served.output().splitlines()
    refusals = [json.loads(line) for line in lines if "redis refused a write" in line]
    assert (
        sorted(r["writing"] for r in refusals)
        == ["face"] + ["persisted_query"] + ["search_text_cache"] * 10
    )
    assert all(r["level"] == "warning" and "exc" not in r for r in refusals)
    assert not any("Traceback" in line or '"exc"' in line for line in lines), served.output()
    control.close()


def test_a_renewal_a_full_redis_refuses_is_tried_again_and_the_block_ends_cleanly(
    own_redis: str,
) -> None:
    """A server renews its announcement of the indexes it uses every TTL/3 s. Redis over its
    maxmemory refuses a renewal: it is tried again once Redis has room, and leaving the block
    (the server's shutdown) withdraws it without raising what the refused renewal raised."""
    control = redis.Redis.from_url(own_redis)
    use = IndexUse(store="pressure-announcement", definition="d", settings="s")
    key = registry_key(use.store)

    async def scenario() -> tuple[float, float]:
        client = aredis.Redis.from_url(own_redis)
        try:
            async with announced(client, [use]):
                control.config_set("maxmemory-policy", "noeviction")
                control.config_set("maxmemory", int(control.info("memory")["used_memory"]) // 2)
                try:
                    await asyncio.sleep(TTL / 3 + 1)  # a renewal falls while Redis is full
                finally:
                    control.config_set("maxmemory", 0)
                await asyncio.sleep(TTL / 3 + 1)  # and one once it has room again
                scores: list[tuple[bytes, float]] = control.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
                seen = time.time()
            return scores[0][1], seen
        finally:
            await client.aclose()

    expires, seen = asyncio.run(scenario())
    assert expires > seen + TTL - (TTL / 3 + 1.5), "the announcement was not renewed"
    assert control.zcard(key) == 0  # withdrawn at the end of the block
    control.close()


def primaries(redis_url: str) -> list[redis.Redis]:
    """A plain client to each primary: the one Redis, or each shard's primary of a cluster."""
    client = sync_client(redis_url)
    if isinstance(client, redis.RedisCluster):
        found = client.get_primaries()  # type: ignore[no-untyped-call]
        nodes = [redis.Redis(host=n.host, port=n.port) for n in found]
        client.close()
        return nodes
    return [client]


@both_backends
def test_readyz_reports_a_full_redis_as_degraded_and_searches_go_on(
    api: TestClient, redis_url: str
) -> None:
    """Every primary over its maxmemory (on a cluster, the shard named in the reason): /readyz
    answers 200 "degraded" with the reason, a new-text search is answered and its cache write
    counted as refused; back under the limit, /readyz is "ready" again within a second."""
    nodes = primaries(redis_url)
    refused_before = metric(api.get("/metrics").text, REFUSED, writing="search_text_cache")
    try:
        for node in nodes:
            node.config_set("maxmemory", int(node.info("memory")["used_memory"]) // 2)
        time.sleep(1.1)  # /readyz keeps its memory check for a second
        ready = api.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert "maxmemory reached" in ready.json()["reason"]
        text = f"{uuid.uuid4().hex} a lighthouse keeper"
        answer = api.post("/graphql", json={"query": SEARCH, "variables": {"text": text}})
        assert "errors" not in answer.json(), answer.text
        assert len(answer.json()["data"]["searchBooks"]) == 3
        refused = metric(api.get("/metrics").text, REFUSED, writing="search_text_cache")
        assert refused == refused_before + 1
    finally:
        for node in nodes:
            node.config_set("maxmemory", 0)
            node.close()
    time.sleep(1.1)
    assert api.get("/readyz").json()["status"] == "ready"
