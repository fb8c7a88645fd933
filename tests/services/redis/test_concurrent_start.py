"""Replicas that start together on one empty Redis: all of them come up, the catalogue loads once.

Four real ``lookalike serve`` processes, started at the same moment, several times, each time on
an index and key prefix nobody has used, sharing one data directory as containers on one host
would share a volume.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import httpx
import redis
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import (
    STARTED,
    autoload_key,
    ensure_book_index,
    load_books,
)
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.redis.connection import connect
from tests.servers import start_server

PROCESSES = 4
ROUNDS = 3
LOADED = "loaded the shipped catalogue"


def test_four_processes_starting_together_all_become_ready_and_load_once(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.redis_url
    client = redis.Redis.from_url(settings.redis_url)
    for round_number in range(ROUNDS):
        name = f"race{uuid.uuid4().hex[:8]}"
        environment = {
            "REDIS_URL": settings.redis_url,
            "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
            "LOOKALIKE_INDEX_NAME": name,
            "LOOKALIKE_KEY_PREFIX": name,
        }
        servers = [
            start_server(tmp_path / f"serve-{round_number}-{n}.log", **environment)
            for n in range(PROCESSES)
        ]
        try:
            for server in servers:
                server.wait_ready(timeout=180)
            loads = [server.output().count(LOADED) for server in servers]
            assert sorted(loads) == [0] * (PROCESSES - 1) + [1], loads
            for server in servers:
                ready = httpx.get(f"{server.base}/readyz").json()
                assert ready == {"status": "ready", "books": 1486}
                query = '{ book(id: "9") { similar(k: 1) { book { id } } } }'
                answer = httpx.post(f"{server.base}/graphql", json={"query": query}).json()
                assert answer["data"]["book"]["similar"] == [{"book": {"id": "15"}}], answer
            assert sum(1 for _ in client.scan_iter(f"{name}:*", count=1000)) == 1486
        finally:
            for server in servers:
                server.stop()
        client.ft(name).dropindex(delete_documents=True)
    client.close()


def _scratch(settings: Settings, tmp_path: Path) -> Settings:
    name = f"half{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={"index_name": name, "key_prefix": name, "data_dir": tmp_path / "data"}
    )


def test_a_load_that_died_half_way_is_finished_not_taken_for_the_catalogue(
    settings: Settings, tmp_path: Path
) -> None:
    """A loader killed after 200 books left its mark: the next server finishes the load."""
    scratch = _scratch(settings, tmp_path)

    async def die_half_way() -> None:
        client = connect(scratch.redis_url or "", 5)
        catalogue = Catalogue(client, scratch)
        shipped = read_shipped()
        await ensure_book_index(catalogue)
        await client.set(autoload_key(catalogue), STARTED)
        await load_books(catalogue, shipped.records[:200], shipped=shipped, embedder=text_embedder)
        await client.aclose()

    anyio.run(die_half_way)
    with TestClient(create_app(scratch)) as api:
        assert api.get("/readyz").json() == {"status": "ready", "books": 1486}
    redis.Redis.from_url(scratch.redis_url or "").ft(scratch.index_name).dropindex(True)


def test_a_server_is_not_ready_while_a_load_is_unfinished_and_then_finishes_it(
    settings: Settings, tmp_path: Path
) -> None:
    scratch = _scratch(settings, tmp_path)
    raw = redis.Redis.from_url(scratch.redis_url or "")
    with TestClient(create_app(scratch)) as api:
        assert api.get("/readyz").json()["books"] == 1486
        # another process began a reload and died: its mark is there, some books are not
        raw.set(f"catalogue-autoload:{scratch.index_name}", STARTED)
        raw.delete(*[f"{scratch.key_prefix}:{n}" for n in (9, 15, 26415)])
        assert api.get("/readyz").status_code == 503
        deadline = time.monotonic() + 20
        while api.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert api.get("/readyz").json() == {"status": "ready", "books": 1486}
    raw.ft(scratch.index_name).dropindex(True)
    raw.close()
