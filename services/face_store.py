"""Where enrolled faces live in Redis, in either of the course's two layouts.

``hash``: one Hash per face, ``face:<person>:<image hash>``, its FLOAT32 vector under an HNSW
index with the person as a TAG; the person's name and face count in a Hash
``face-person:<person>``. ``json``: one JSON document per person, ``face-person:<person>``,
holding all their vectors in ``$.embeddings[*]`` under a multi-value HNSW index, so a KNN
query ranks people by their nearest face directly.

Both keep the person ids in a sorted set (``faces:people``) for keyset paging, and record
their layout in ``faces:layout``: opening a Redis whose enrolled people use the other layout
is refused (with nobody enrolled, the layout simply changes).
A namespace prefix keeps evaluation runs apart from enrolled people.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError
from redisvl.index import AsyncSearchIndex
from redisvl.query import FilterQuery, VectorQuery
from redisvl.query.filter import Tag
from redisvl.schema import IndexSchema

from lookalike.services.errors import ServiceUnavailable
from lookalike.services.face_model import DIMENSIONS
from lookalike.services.redis_connection import Redis, redis_errors
from lookalike.services.search_indexes import drop_index, ensure_index
from lookalike.services.search_pipeline import SearchPipeline

Layout = Literal["hash", "json"]


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str | None
    face_count: int


@dataclass(frozen=True, slots=True)
class Nearest:
    person_id: str
    distance: float


@dataclass(frozen=True, slots=True)
class PeoplePage:
    person_ids: list[str]
    total: int
    has_next: bool


def _vector_attrs(ef_runtime: int) -> dict[str, Any]:
    return {
        "algorithm": "hnsw",
        "dims": DIMENSIONS,
        "distance_metric": "cosine",
        "datatype": "float32",
        "ef_runtime": ef_runtime,
    }


class FaceStore:
    layout: Layout

    def __init__(self, client: Redis, namespace: str = "", ef_runtime: int = 100) -> None:
        self.redis = client
        self.ns = namespace
        self.ef_runtime = ef_runtime
        self.registry = f"{namespace}faces:people"
        self.marker = f"{namespace}faces:layout"
        self.index = AsyncSearchIndex(self.schema(), redis_client=client)
        self._searches = SearchPipeline(client, self.index.name)

    def schema(self) -> IndexSchema:
        raise NotImplementedError

    def person_key(self, person_id: str) -> str:
        return f"{self.ns}face-person:{person_id}"

    async def open(self) -> None:
        """Create the index, or refuse a Redis whose enrolled people use the other layout.

        With nobody enrolled the layout may change freely: there is nothing to misread.
        """
        async with redis_errors():
            await self.redis.set(self.marker, self.layout, nx=True)
            raw = await self.redis.get(self.marker)
            stored = raw.decode() if isinstance(raw, bytes) else str(raw)
            if stored != self.layout:
                enrolled = await self.redis.zcard(self.registry)
                if enrolled:
                    raise ServiceUnavailable(
                        f"this Redis holds {enrolled} enrolled people in the {stored} layout, "
                        f"but FACE_LAYOUT is {self.layout}: set FACE_LAYOUT={stored} to keep "
                        f"them, or forget them first (FACE_LAYOUT={stored} lookalike faces "
                        "forget ID) to start over"
                    )
                await self.redis.set(self.marker, self.layout)
        await ensure_index(self.redis, self.index.schema)

    async def page(self, first: int, after: str | None) -> PeoplePage:
        low = f"({after}" if after is not None else "-"
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebylex(self.registry, low, "+", start=0, num=first + 1)
            pipe.zcard(self.registry)
            ids, total = await pipe.execute()
        ids = [i.decode() for i in ids]
        return PeoplePage(person_ids=ids[:first], total=total, has_next=len(ids) > first)

    async def count(self) -> int:
        async with redis_errors():
            return int(await self.redis.zcard(self.registry))

    async def nearest(self, vector: bytes, k: int) -> list[Nearest]:
        raise NotImplementedError

    async def get_many(self, person_ids: Sequence[str]) -> list[Person | None]:
        raise NotImplementedError

    async def enroll(
        self, person_id: str, name: str | None, image_hash: str, vector: bytes
    ) -> bool:
        """Add one face; False when this image was enrolled for this person already."""
        raise NotImplementedError

    async def delete(self, person_id: str) -> bool:
        raise NotImplementedError

    async def drop(self) -> None:
        """Remove the index and every key of this namespace (evaluation clean-up)."""
        await drop_index(self.redis, self.index.schema, documents=True)
        async with redis_errors():
            keys = [key async for key in self.redis.scan_iter(match=f"{self.ns}face*", count=1000)]
            for start in range(0, len(keys), 1000):  # a round trip per thousand, not per key
                await self.redis.unlink(*keys[start : start + 1000])

    async def _watched(self, key: str, change: Callable[[Pipeline], Awaitable[bool]]) -> bool:
        """Run ``change`` as an optimistic transaction on ``key`` (WATCH, read, MULTI, write),
        again if another client changed the key meanwhile. Returns what ``change`` returns."""
        async with redis_errors():
            for _ in range(5):
                try:
                    async with self.redis.pipeline(transaction=True) as pipe:
                        await pipe.watch(key)
                        result = await change(pipe)
                        await pipe.execute()
                        return result
                except WatchError:
                    continue
        raise ServiceUnavailable("too many concurrent enrolments of the same person; try again")

    def _query(self, vector: bytes, num_results: int) -> VectorQuery:
        return VectorQuery(
            vector=vector,
            vector_field_name="embedding",
            return_fields=["person_id"],
            num_results=num_results,
            ef_runtime=max(self.ef_runtime, num_results),
        )

    async def _nearest_faces(self, vector: bytes, num_results: int) -> list[Nearest]:
        """The nearest faces (JSON layout: people, by their nearest face), nearest first."""
        (reply,) = await self._searches.run([self._query(vector, num_results)])
        ids, distances = reply.texts(b"person_id"), reply.texts(b"vector_distance")
        return [Nearest(i, float(d)) for i, d in zip(ids, distances, strict=True)]


class HashFaceStore(FaceStore):
    layout: Layout = "hash"

    def schema(self) -> IndexSchema:
        return IndexSchema.from_dict(
            {
                "index": {
                    "name": f"{self.ns}faces_hash",
                    "prefix": f"{self.ns}face:",
                    "storage_type": "hash",
                },
                "fields": [
                    {"name": "person_id", "type": "tag"},
                    {
                        "name": "embedding",
                        "type": "vector",
                        "attrs": _vector_attrs(self.ef_runtime),
                    },
                ],
            }
        )

    def face_key(self, person_id: str, image_hash: str) -> str:
        return f"{self.ns}face:{person_id}:{image_hash[:32]}"

    async def get_many(self, person_ids: Sequence[str]) -> list[Person | None]:
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for person_id in person_ids:
                pipe.hmget(self.person_key(person_id), ["name", "face_count"])
            rows = await pipe.execute()
        return [
            None
            if count is None or int(count) == 0
            else Person(id=pid, name=name.decode() if name else None, face_count=int(count))
            for pid, (name, count) in zip(person_ids, rows, strict=True)
        ]

    async def nearest(self, vector: bytes, k: int) -> list[Nearest]:
        """The k nearest distinct people: faces are fetched in growing windows until k
        different people are among them, or there are no more faces."""
        window = k * 8
        while True:
            faces = await self._nearest_faces(vector, window)
            people: dict[str, float] = {}
            for face in faces:
                people.setdefault(face.person_id, face.distance)
            if len(people) >= k or len(faces) < window:
                return [Nearest(p, d) for p, d in list(people.items())[:k]]
            window *= 4

    async def enroll(
        self, person_id: str, name: str | None, image_hash: str, vector: bytes
    ) -> bool:
        face_key = self.face_key(person_id, image_hash)
        person_key = self.person_key(person_id)

        async def change(pipe: Pipeline) -> bool:
            new = not await pipe.exists(face_key)
            pipe.multi()  # type: ignore[no-untyped-call]
            if new:
                pipe.hset(
                    face_key,
                    mapping={
                        "person_id": person_id,
                        "embedding": vector,
                        "image_sha256": image_hash,
                    },
                )
                pipe.hincrby(person_key, "face_count", 1)
                pipe.zadd(self.registry, {person_id: 0})
            if name is not None:
                pipe.hset(person_key, "name", name)
            return new

        return await self._watched(face_key, change)

    async def delete(self, person_id: str) -> bool:
        faces_of = FilterQuery(
            filter_expression=Tag("person_id") == person_id, return_fields=[], num_results=10_000
        )
        (found,) = await self._searches.run([faces_of])
        faces = [key for key, _ in found.hits]
        async with redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.person_key(person_id), *faces)
            pipe.zrem(self.registry, person_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)


class JsonFaceStore(FaceStore):
    layout: Layout = "json"

    def schema(self) -> IndexSchema:
        return IndexSchema.from_dict(
            {
                "index": {
                    "name": f"{self.ns}faces_json",
                    "prefix": f"{self.ns}face-person:",
                    "storage_type": "json",
                },
                "fields": [
                    {"name": "person_id", "type": "tag", "path": "$.id"},
                    {
                        "name": "embedding",
                        "type": "vector",
                        "path": "$.embeddings[*]",
                        "attrs": _vector_attrs(self.ef_runtime),
                    },
                ],
            }
        )

    async def get_many(self, person_ids: Sequence[str]) -> list[Person | None]:
        if not person_ids:
            return []
        keys = [self.person_key(p) for p in person_ids]
        async with redis_errors():
            rows = await self.redis.execute_command(  # type: ignore[no-untyped-call]
                "JSON.MGET", *keys, "$['name','image_hashes']"
            )
        people: list[Person | None] = []
        for person_id, row in zip(person_ids, rows, strict=True):
            values = json.loads(row) if row else None
            if not values or not values[1]:
                people.append(None)
            else:
                people.append(Person(id=person_id, name=values[0], face_count=len(values[1])))
        return people

    async def nearest(self, vector: bytes, k: int) -> list[Nearest]:
        return await self._nearest_faces(vector, k)

    async def enroll(
        self, person_id: str, name: str | None, image_hash: str, vector: bytes
    ) -> bool:
        key = self.person_key(person_id)
        floats = json.dumps(np.frombuffer(vector, dtype=np.float32).tolist())

        async def change(pipe: Pipeline) -> bool:
            raw: Any = await pipe.execute_command("JSON.GET", key, "$.image_hashes")
            hashes = json.loads(raw)[0] if raw else None
            pipe.multi()  # type: ignore[no-untyped-call]
            if hashes is None:
                document = {"id": person_id, "name": name, "image_hashes": [image_hash]}
                pipe.execute_command("JSON.SET", key, "$", json.dumps(document))
                pipe.execute_command("JSON.SET", key, "$.embeddings", f"[{floats}]")
                pipe.zadd(self.registry, {person_id: 0})
                return True
            new = image_hash not in hashes
            if new:
                pipe.execute_command("JSON.ARRAPPEND", key, "$.embeddings", floats)
                pipe.execute_command(
                    "JSON.ARRAPPEND", key, "$.image_hashes", json.dumps(image_hash)
                )
            if name is not None:
                pipe.execute_command("JSON.SET", key, "$.name", json.dumps(name))
            return new

        return await self._watched(key, change)

    async def delete(self, person_id: str) -> bool:
        async with redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.person_key(person_id))
            pipe.zrem(self.registry, person_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)


def face_store(layout: Layout, client: Redis, namespace: str = "") -> FaceStore:
    stores: dict[Layout, type[FaceStore]] = {"hash": HashFaceStore, "json": JsonFaceStore}
    return stores[layout](client, namespace)
