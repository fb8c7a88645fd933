"""Replicas that start together on one empty Redis: all of them come up, the catalogue loads once.

Four real ``lookalike serve`` processes, started at the same moment, several times, each time on
an index and key prefix nobody has used, sharing one data directory as containers on one host
would share a volume.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import redis

from lookalike.services.settings import Settings
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
        for key in client.scan_iter(f"{name}-vector:*", count=1000):
            client.delete(key)
    client.close()
