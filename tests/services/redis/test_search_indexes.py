"""Indexes follow the code's definition: created once, rebuilt in place when it changed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis
from redis.commands.search.field import TextField
from redis.commands.search.query import Query
from redisvl.schema import IndexSchema

from lookalike.services.core.settings import Settings
from lookalike.services.redis.connection import connect
from lookalike.services.redis.indexes import (
    NO_EXTRAS,
    IndexChange,
    IndexExtras,
    drop_index,
    ensure_index,
)


def _schema(name: str, *, case_sensitive: bool) -> IndexSchema:
    return IndexSchema.from_dict(
        {
            "index": {"name": name, "prefix": f"{name}:", "storage_type": "hash"},
            "fields": [
                {"name": "owner", "type": "tag", "attrs": {"case_sensitive": case_sensitive}}
            ],
        }
    )


def _indexed(client: redis.Redis, name: str) -> bool:
    """The index's background scan of the keyspace is over."""
    info = client.ft(name).info()  # type: ignore[no-untyped-call]
    return float(info["percent_indexed"]) >= 1


def _count(client: redis.Redis, name: str, query: str) -> int:
    return int(client.ft(name).search(Query(query).paging(0, 0).dialect(2)).total)


def test_an_index_of_another_definition_is_rebuilt_over_the_same_documents(
    settings: Settings,
) -> None:
    assert settings.redis_url
    name = f"def{uuid.uuid4().hex[:8]}"
    sync = redis.Redis.from_url(settings.redis_url, protocol=2)

    async def scenario() -> list[IndexChange]:
        client = connect(settings.redis_url or "", 2.0)
        try:
            old, new = _schema(name, case_sensitive=False), _schema(name, case_sensitive=True)
            changes = [await ensure_index(client, old)]
            sync.hset(f"{name}:1", "owner", "probe-a")
            sync.hset(f"{name}:2", "owner", "PROBE-A")
            assert _count(sync, name, "@owner:{probe\\-a}") == 2  # the old, case-blind match
            changes.append(await ensure_index(client, new))
            # the rebuilt index re-reads the keyspace in the background: every key of the
            # shared test Redis, which takes seconds on a loaded machine
            for _ in range(1200):  # up to a minute
                if _indexed(sync, name):
                    break
                await asyncio.sleep(0.05)
            assert _count(sync, name, "@owner:{probe\\-a}") == 1
            assert _count(sync, name, "@owner:{PROBE\\-A}") == 1
            changes.append(await ensure_index(client, new))
            await drop_index(client, new, documents=True)
            return changes
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == ["created", "rebuilt", "unchanged"]
    sync.close()


def test_processes_racing_to_create_an_index_create_it_once(settings: Settings) -> None:
    schema = _schema(f"race{uuid.uuid4().hex[:8]}", case_sensitive=True)

    async def scenario() -> list[IndexChange]:
        clients = [connect(settings.redis_url or "", 2.0) for _ in range(6)]
        try:
            changes = await asyncio.gather(*(ensure_index(c, schema) for c in clients))
            await drop_index(clients[0], schema, documents=True)
            return sorted(changes)
        finally:
            for client in clients:
                await client.aclose()

    assert asyncio.run(scenario()) == ["created"] + ["unchanged"] * 5


def _vector_schema(name: str, **vector: Any) -> IndexSchema:
    attrs = {"algorithm": "hnsw", "dims": 4, "distance_metric": "cosine", "datatype": "float32"}
    return IndexSchema.from_dict(
        {
            "index": {"name": name, "prefix": f"{name}:", "storage_type": "hash"},
            "fields": [{"name": "v", "type": "vector", "attrs": {**attrs, **vector}}],
        }
    )


def test_only_what_ft_create_keeps_rebuilds_an_index(settings: Settings) -> None:
    """EF_RUNTIME and EPSILON are sent with every query: changing their defaults must not
    rebuild an index of a million vectors. M, a field's name, an extra field do."""
    name = f"vec{uuid.uuid4().hex[:8]}"
    extra = IndexExtras(fields=(TextField("v", as_name="v_text"),))

    async def scenario() -> list[IndexChange]:
        client = connect(settings.redis_url or "", 2.0)
        try:
            changes = [await ensure_index(client, _vector_schema(name, ef_runtime=10))]
            for schema, extras in (
                (_vector_schema(name, ef_runtime=400, epsilon=0.5), NO_EXTRAS),  # per query
                (_vector_schema(name, m=32), NO_EXTRAS),  # the graph: rebuilt
                (_vector_schema(name, m=32), extra),  # one more field: rebuilt
                (_vector_schema(name, m=32, ef_runtime=50), extra),
            ):
                changes.append(await ensure_index(client, schema, extras=extras))
            await drop_index(client, _vector_schema(name), documents=True)
            return changes
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == ["created", "unchanged", "rebuilt", "rebuilt", "unchanged"]
