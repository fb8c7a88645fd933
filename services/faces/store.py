"""Where enrolled faces live in Redis, in either of the course's two layouts.

``hash``: one Hash per face, ``face:{<person>}:<image hash>``, its FLOAT32 vector under an HNSW
index with the person as a TAG; the person's name, face count and the list of their faces
(a field ``img:<image hash>`` each, holding when it was enrolled and its quality) in a Hash
``face-person:{<person>}``. ``json``: one JSON document per person, ``face-person:{<person>}``,
holding all their vectors in ``$.embeddings[*]`` under a multi-value HNSW index, so a KNN
query ranks people by their nearest face directly, and each face's time and quality in
``$.faces`` by image hash. Faces are shown by id, never by image hash (``face_ids``).

Person ids are exact: the TAG fields that hold them are CASESENSITIVE, and a person's faces
are found by key (the person's record lists them), never by a search, so ``probe-a`` and
``PROBE-A`` (or ``a`` and ``a-1``) never touch each other's faces.

**Redis Cluster.** Every key of one person carries the person as its hash tag (``{s1}``), so
the keys of one person live in one slot and each change of a person is one MULTI/EXEC (with
WATCH) on that slot. Three keys are shared by everyone: the people registry (a sorted set,
``faces:people``, for keyset paging), the layout marker (``faces:layout``) and the key face
ids are made with (``faces:face-id-key``). The registry is
brought in line with the person's record *after* each per-person transaction, in a command of
its own, so a crash between the two can leave the registry behind: an id listed whose person
is gone (listing skips it; ``totalCount`` counts it until that id is enrolled or deleted
again) or a person enrolled but not listed (identified and readable by id; listed again at
their next enrolment). No face vector is ever left without its person by this.

Both layouts record their layout in ``faces:layout``: opening a Redis whose enrolled people
use the other layout is refused (with nobody enrolled, the layout simply changes). Key names
of earlier versions (no hash tag) are renamed on start. A namespace prefix keeps evaluation
runs apart from enrolled people.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import numpy as np
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError, WatchError
from redisvl.index import AsyncSearchIndex
from redisvl.query import VectorQuery
from redisvl.query.filter import Tag
from redisvl.schema import IndexSchema

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.request_usage import note_write
from lookalike.services.faces.face_ids import FaceId, token
from lookalike.services.faces.model import DIMENSIONS
from lookalike.services.faces.quality import FaceQuality
from lookalike.services.redis.connection import Redis, redis_errors, transaction_client
from lookalike.services.redis.coordination.index_users import IndexUse, refuse_while_used
from lookalike.services.redis.coordination.lock import held_lock
from lookalike.services.redis.indexes import (
    Conversion,
    DefinitionWatch,
    definition_key,
    drop_index,
    ensure_index,
    fingerprint,
    fully_indexed,
    index_info,
)
from lookalike.services.redis.replicas import Reads
from lookalike.services.redis.searches import Reply, SearchPipeline

log = logging.getLogger(__name__)

Layout = Literal["hash", "json"]
T = TypeVar("T")
KEYS_VERSION = b"2"  # 2: every key of a person carries the person as its hash tag
FACE_FIELD = "img:"  # hash layout: the person's record lists each face as img:<image hash>


WATCH_ATTEMPTS = 16  # optimistic transactions on one person before SERVICE_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str | None
    face_count: int


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What one enrolment wrote: whether the face was new, and the person as the same
    transaction left them (a delete right after it cannot make it look unwritten)."""

    added: bool
    person: Person


@dataclass(frozen=True, slots=True)
class Nearest:
    person_id: str
    distance: float
    face_id: str  # the person's enrolled face nearest the photo (a FaceId, as shown)


@dataclass(frozen=True, slots=True)
class EnrolledFace:
    """One face of a person's gallery. ``added_at`` (ISO 8601, UTC) and ``quality`` are None
    for a face enrolled before they were recorded: the photo is not kept, so they cannot be
    measured again."""

    id: str
    added_at: str | None
    quality: FaceQuality | None


@dataclass(frozen=True, slots=True)
class FaceRemoval:
    """What deleting one face did: whether the face was there, and the person as the same
    transaction left them (None when it was their last face: the person is gone)."""

    found: bool
    person: Person | None


def _face_record(quality: FaceQuality | None) -> str:
    """What is stored beside a new face: when it was enrolled and how good it was."""
    added_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {"added_at": added_at, "quality": quality.to_dict() if quality is not None else None}
    )


def _enrolled(face_id: str, record: Any) -> EnrolledFace:
    """A face from its stored record (None, or the hash layout's ``1``: recorded nothing)."""
    if not isinstance(record, dict):
        return EnrolledFace(face_id, None, None)
    quality = record.get("quality")
    return EnrolledFace(
        face_id,
        record.get("added_at"),
        FaceQuality.from_dict(quality) if isinstance(quality, dict) else None,
    )


def _gallery_order(faces: list[EnrolledFace]) -> list[EnrolledFace]:
    """Oldest first (faces with no recorded time before all others), then by id: the same
    order in both layouts."""
    return sorted(faces, key=lambda face: (face.added_at or "", face.id))


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FaceStore:
    layout: Layout

    def __init__(
        self,
        client: Redis,
        namespace: str = "",
        ef_runtime: int = 100,
        reads: Reads | None = None,
    ) -> None:
        self.redis = client  # the primary: writes
        self.reads = reads or Reads(client)  # reads: a healthy replica, or the primary
        self.ns = namespace
        self.ef_runtime = ef_runtime
        self.registry = f"{namespace}faces:people"
        self.marker = f"{namespace}faces:layout"
        self.keys_version = f"{namespace}faces:keys-version"
        self.id_key_name = f"{namespace}faces:face-id-key"
        self._id_key: bytes | None = None  # read by open()
        self.index = AsyncSearchIndex(self.schema(), redis_client=client)
        self.store_name = f"{namespace}faces"  # in the registry of live servers
        self.settings = f"FACE_LAYOUT={self.layout}"
        self.definition = fingerprint(self.index.schema)
        self.watch = DefinitionWatch(  # changed under this process: SERVICE_UNAVAILABLE
            client,
            {
                self.marker: self.layout.encode(),
                definition_key(self.index.schema): self.definition.encode(),
            },
            "the face index",
            self.settings,
        )
        self._searches = SearchPipeline(self.reads, self.index.name, self.watch)

    def schema(self) -> IndexSchema:
        raise NotImplementedError

    def person_key(self, person_id: str) -> str:
        return f"{self.ns}face-person:{{{person_id}}}"

    def use(self) -> IndexUse:
        """What a server announces it needs of the faces (``index_users``): the layout and
        its index's definition."""
        return IndexUse(self.store_name, f"{self.layout}:{self.definition}", self.settings)

    async def open(self) -> None:
        """Check the layout, rename keys of earlier versions, bring the index up to date.

        With nobody enrolled the layout may change freely: there is nothing to misread.
        """
        async with redis_errors():
            await self.redis.set(self.marker, self.layout, nx=True)
            stored = _text(await self.redis.get(self.marker))
            if stored != self.layout:
                enrolled = await self.redis.zcard(self.registry)
                if enrolled:
                    raise ServiceUnavailable(
                        f"this Redis holds {enrolled} enrolled people in the {stored} layout, "
                        f"but FACE_LAYOUT is {self.layout}: set FACE_LAYOUT={stored} to keep "
                        f"them, or forget them first (FACE_LAYOUT={stored} lookalike faces "
                        "forget ID) to start over"
                    )
                await refuse_while_used(
                    self.redis,
                    self.store_name,
                    what=f"the face store (FACE_LAYOUT={stored})",
                    settings=self.settings,
                    convert="stop them first",
                    force=False,
                )
                await self.redis.set(self.marker, self.layout)
            await self._rename_old_keys()
            await self.redis.set(self.id_key_name, secrets.token_hex(32), nx=True)
            self._id_key = _text(await self.redis.get(self.id_key_name)).encode()
        conversion = Conversion(self.store_name, self.settings, "stop them first")
        if await ensure_index(self.redis, self.index.schema, conversion=conversion) != "unchanged":
            await self._until_indexed()

    async def _until_indexed(self, limit: float = 600.0) -> None:
        """Wait while Redis indexes the documents already there (a rebuilt index starts
        empty and fills in the background): until then a face would go unrecognised."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        async with redis_errors():
            while loop.time() < deadline:
                if fully_indexed(await index_info(self.redis, self.index.name) or {}):
                    return
                await asyncio.sleep(0.05)
        log.warning("the face index is still being built after %g s", limit)

    async def _rename_old_keys(self) -> None:
        """Earlier versions named keys without a hash tag (``face:<person>:<hash>``,
        ``face-person:<person>``): rename them (RENAME, a standalone Redis), once, under a
        lock so that processes starting together do it once."""
        if await self.redis.get(self.keys_version) == KEYS_VERSION:
            return
        async with held_lock(self.redis, f"lock:{self.keys_version}"):
            if await self.redis.get(self.keys_version) == KEYS_VERSION:
                return
            renamed = 0
            if await self.redis.zcard(self.registry):  # nobody enrolled: nothing to rename
                renamed = await self._rename_keys()
            await self.redis.set(self.keys_version, KEYS_VERSION)
        if renamed:
            log.warning("renamed %d face keys of an earlier version (hash tags)", renamed)

    async def _rename_keys(self) -> int:
        people, faces = f"{self.ns}face-person:", f"{self.ns}face:"
        old = [
            _text(key)
            async for key in self.redis.scan_iter(match=f"{self.ns}face*", count=1000)
            if b"{" not in key
        ]
        renamed = 0
        for key in sorted(old, key=lambda k: not k.startswith(people)):  # records first
            if key.startswith(people):
                person_id, image = key[len(people) :], None
            elif key.startswith(faces) and key.count(":") == faces.count(":") + 1:
                person_id, image = key[len(faces) :].split(":")
            else:
                continue
            new = (
                self.person_key(person_id)
                if image is None
                else f"{self.ns}face:{{{person_id}}}:{image}"
            )
            try:
                if not await self.redis.renamenx(key, new):
                    log.error("kept %s: %s exists already", key, new)
                    continue
            except ResponseError:  # gone meanwhile
                continue
            if image is not None:
                await self.redis.hset(self.person_key(person_id), f"{FACE_FIELD}{image}", 1)
            renamed += 1
        return renamed

    def face_id(self, person_id: str, image_hash: str) -> str:
        """The id the API shows for this face (``face_ids``)."""
        if self._id_key is None:
            raise RuntimeError("the face store is not open")
        return str(FaceId(person_id, token(self._id_key, person_id, image_hash)))

    def _matching(self, face: FaceId, image_hashes: Sequence[str]) -> str | None:
        """The one of a person's image hashes whose face has this id."""
        return next((h for h in image_hashes if self.face_id(face.person_id, h) == str(face)), None)

    async def page(self, first: int, after: str | None) -> PeoplePage:
        self.watch.check()
        low = f"({after}" if after is not None else "-"

        async def read(client: Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zrangebylex(self.registry, low, "+", start=0, num=first + 1)
                pipe.zcard(self.registry)
                return await pipe.execute()

        async with redis_errors():
            ids, total = await self.reads.run(read)
        ids = [i.decode() for i in ids]
        return PeoplePage(person_ids=ids[:first], total=total, has_next=len(ids) > first)

    async def count(self) -> int:
        async def read(client: Redis) -> int:
            return int(await client.zcard(self.registry))

        async with redis_errors():
            return await self.reads.run(read)

    async def nearest(self, vector: bytes, k: int) -> list[Nearest]:
        """The k nearest distinct people by their nearest face, nearest first."""
        (found,) = await self.nearest_many([vector], k)
        return found

    def _nearest_query(self, vector: bytes, num_results: int) -> VectorQuery:
        return self._query(vector, num_results)

    def _hits(self, reply: Reply, vector: bytes) -> list[Nearest]:
        """A KNN reply's hits, nearest first, each with the enrolled face it matched."""
        raise NotImplementedError

    # Faces a KNN asks for, per person wanted: a person has several faces in the hash layout
    # (one hit each), one hit in the JSON layout (the multi-value index ranks people).
    hits_per_person = 1

    async def nearest_many(self, vectors: Sequence[bytes], k: int) -> list[list[Nearest]]:
        """The k nearest distinct people of each vector (as ``nearest``), every vector's KNN
        in one round trip; a vector whose window of faces held fewer than k people (hash
        layout) asks again with a window four times wider, the others' answers kept."""
        found: list[list[Nearest]] = [[] for _ in vectors]
        pending = list(range(len(vectors)))
        window = k * self.hits_per_person
        while pending:
            queries = [self._nearest_query(vectors[i], window) for i in pending]
            replies = await self._searches.run(queries)
            again = []
            for i, reply in zip(pending, replies, strict=True):
                people: dict[str, Nearest] = {}
                hits = self._hits(reply, vectors[i])
                for hit in hits:
                    people.setdefault(hit.person_id, hit)
                found[i] = list(people.values())[:k]
                if len(people) < k and len(hits) == window:
                    again.append(i)
            pending, window = again, window * 4
        return found

    async def distance_to(self, person_id: str, vector: bytes) -> float | None:
        """The distance to this person's nearest face; None if they have none. The KNN query
        is filtered on the person, so no other person's vector is read."""
        query = self._query(vector, 1)
        query.set_filter(Tag("person_id") == person_id)
        (reply,) = await self._searches.run([query])
        distances = reply.texts(b"vector_distance")
        return float(distances[0]) if distances else None

    async def get_many(self, person_ids: Sequence[str]) -> list[Person | None]:
        raise NotImplementedError

    async def faces_of_many(self, person_ids: Sequence[str]) -> list[list[EnrolledFace]]:
        """Each person's faces (none for an unknown id), all people in one round trip."""
        raise NotImplementedError

    async def enroll(
        self,
        person_id: str,
        name: str | None,
        image_hash: str,
        vector: bytes,
        quality: FaceQuality | None = None,
    ) -> Enrolment:
        """Add one face with its quality and the time (not ``added`` when this image was
        enrolled for this person already: it keeps what was recorded then), and read the
        person back in the same transaction."""
        raise NotImplementedError

    async def delete(self, person_id: str) -> bool:
        raise NotImplementedError

    async def delete_face(self, face: FaceId) -> FaceRemoval:
        """Remove one face of the person the id names (the person too if it was their last),
        in one transaction on that person's keys; nobody else's keys are read."""
        raise NotImplementedError

    async def drop(self) -> None:
        """Remove the index and every key of this namespace (evaluation clean-up)."""
        await drop_index(self.redis, self.index.schema, documents=True)
        async with redis_errors():
            keys = [key async for key in self.redis.scan_iter(match=f"{self.ns}face*", count=1000)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:  # one key a command: keys of many slots
                    pipe.unlink(key)
                await pipe.execute()

    async def _watched(
        self, keys: Sequence[str], change: Callable[[Pipeline], Awaitable[Callable[[list[Any]], T]]]
    ) -> T:
        """Run ``change`` as an optimistic transaction on one person's keys (WATCH, read,
        MULTI, write), again if another client changed them meanwhile; ``change`` hands back
        what makes the result of the transaction's replies. On a cluster it runs on the shard
        that holds the person's slot (``CountingCluster.node_client``)."""
        client = transaction_client(self.redis, keys[0])
        async with redis_errors("face"):
            for attempt in range(WATCH_ATTEMPTS):
                try:
                    async with client.pipeline(transaction=True) as pipe:
                        await pipe.watch(*keys)
                        result = await change(pipe)
                        replies = await pipe.execute()
                        note_write()
                        return result(replies)
                except WatchError:
                    # back off a random while that grows: enrolments of one person arriving
                    # together would otherwise starve a delete that reads more than they do
                    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise ServiceUnavailable("too many concurrent changes of the same person; try again")

    async def _sync_registry(self, person_id: str) -> None:
        """List the person in the registry if their record exists, else unlist them: run
        after every change of a person, outside its transaction (another slot)."""
        async with redis_errors("face"):
            if await self.redis.exists(self.person_key(person_id)):
                await self.redis.zadd(self.registry, {person_id: 0})
            else:
                await self.redis.zrem(self.registry, person_id)

    def _query(self, vector: bytes, num_results: int, fields: Sequence[str] = ()) -> VectorQuery:
        return VectorQuery(
            vector=vector,
            vector_field_name="embedding",
            return_fields=["person_id", *fields],
            num_results=num_results,
            ef_runtime=max(self.ef_runtime, num_results),
        )


class HashFaceStore(FaceStore):
    layout: Layout = "hash"
    hits_per_person = 8

    def schema(self) -> IndexSchema:
        return IndexSchema.from_dict(
            {
                "index": {
                    "name": f"{self.ns}faces_hash",
                    "prefix": f"{self.ns}face:",
                    "storage_type": "hash",
                },
                "fields": [
                    {"name": "person_id", "type": "tag", "attrs": {"case_sensitive": True}},
                    {
                        "name": "embedding",
                        "type": "vector",
                        "attrs": _vector_attrs(self.ef_runtime),
                    },
                ],
            }
        )

    def face_key(self, person_id: str, image_hash: str) -> str:
        return f"{self.ns}face:{{{person_id}}}:{image_hash[:32]}"

    def _hits(self, reply: Reply, vector: bytes) -> list[Nearest]:
        """Each hit's key names its image."""
        ids, distances = reply.texts(b"person_id"), reply.texts(b"vector_distance")
        images = [key.rsplit(":", 1)[1] for key, _ in reply.hits]
        return [
            Nearest(person_id, float(distance), self.face_id(person_id, image))
            for person_id, distance, image in zip(ids, distances, images, strict=True)
        ]

    async def faces_of_many(self, person_ids: Sequence[str]) -> list[list[EnrolledFace]]:
        self.watch.check()

        async def read(client: Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for person_id in person_ids:  # one key a command: people live in many slots
                    pipe.hgetall(self.person_key(person_id))
                return await pipe.execute()

        async with redis_errors():
            records = await self.reads.run(read)
        galleries = []
        for person_id, record in zip(person_ids, records, strict=True):
            faces = []
            for field, value in record.items():
                name = _text(field)
                if name.startswith(FACE_FIELD):
                    face_id = self.face_id(person_id, name[len(FACE_FIELD) :])
                    faces.append(_enrolled(face_id, _stored_record(value)))
            galleries.append(_gallery_order(faces))
        return galleries

    async def get_many(self, person_ids: Sequence[str]) -> list[Person | None]:
        self.watch.check()

        async def read(client: Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for person_id in person_ids:
                    pipe.hmget(self.person_key(person_id), HASH_PERSON_FIELDS)
                return await pipe.execute()

        async with redis_errors():
            rows = await self.reads.run(read)
        return [
            None if row[1] is None or int(row[1]) == 0 else _hash_person(pid, row)
            for pid, row in zip(person_ids, rows, strict=True)
        ]

    async def enroll(
        self,
        person_id: str,
        name: str | None,
        image_hash: str,
        vector: bytes,
        quality: FaceQuality | None = None,
    ) -> Enrolment:
        self.watch.check()
        face_key = self.face_key(person_id, image_hash)
        person_key = self.person_key(person_id)

        async def change(pipe: Pipeline) -> Callable[[list[Any]], Enrolment]:
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
                pipe.hset(person_key, f"{FACE_FIELD}{image_hash[:32]}", _face_record(quality))
            if name is not None:
                pipe.hset(person_key, "name", name)
            pipe.hmget(person_key, HASH_PERSON_FIELDS)
            return lambda replies: Enrolment(new, _hash_person(person_id, replies[-1]))

        done = await self._watched([face_key, person_key], change)
        await self._sync_registry(person_id)
        return done

    async def delete(self, person_id: str) -> bool:
        self.watch.check()
        person_key = self.person_key(person_id)

        async def change(pipe: Pipeline) -> Callable[[list[Any]], bool]:
            fields = [_text(f) for f in await pipe.hkeys(person_key)]
            faces = [
                self.face_key(person_id, f[len(FACE_FIELD) :])
                for f in fields
                if f.startswith(FACE_FIELD)
            ]
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(person_key, *faces)
            return lambda _: bool(fields)

        deleted = await self._watched([person_key], change)
        await self._sync_registry(person_id)
        return deleted

    async def delete_face(self, face: FaceId) -> FaceRemoval:
        self.watch.check()
        person_id = face.person_id
        person_key = self.person_key(person_id)

        async def change(pipe: Pipeline) -> Callable[[list[Any]], FaceRemoval]:
            fields = [_text(f) for f in await pipe.hkeys(person_key)]
            images = [f[len(FACE_FIELD) :] for f in fields if f.startswith(FACE_FIELD)]
            image = self._matching(face, images)
            pipe.multi()  # type: ignore[no-untyped-call]
            if image is None:
                return lambda _: FaceRemoval(False, None)
            if len(images) == 1:  # their last face: the person goes with it
                pipe.delete(person_key, self.face_key(person_id, image))
                return lambda _: FaceRemoval(True, None)
            pipe.delete(self.face_key(person_id, image))
            pipe.hdel(person_key, f"{FACE_FIELD}{image}")
            pipe.hincrby(person_key, "face_count", -1)
            pipe.hmget(person_key, HASH_PERSON_FIELDS)
            return lambda replies: FaceRemoval(True, _hash_person(person_id, replies[-1]))

        done = await self._watched([person_key], change)
        if done.found:
            await self._sync_registry(person_id)
        return done


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
                    {
                        "name": "person_id",
                        "type": "tag",
                        "path": "$.id",
                        "attrs": {"case_sensitive": True},
                    },
                    {
                        "name": "embedding",
                        "type": "vector",
                        "path": "$.embeddings[*]",
                        "attrs": _vector_attrs(self.ef_runtime),
                    },
                ],
            }
        )

    async def _documents(self, person_ids: Sequence[str], *paths: str) -> list[Any]:
        """These JSONPaths of each person's document, in one round trip (None: no document)."""
        self.watch.check()

        async def read(client: Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for person_id in person_ids:  # one key a command: people live in many slots
                    pipe.execute_command("JSON.GET", self.person_key(person_id), *paths)
                return await pipe.execute()

        async with redis_errors():
            rows = await self.reads.run(read)
        return [json.loads(row) if row else None for row in rows]

    async def get_many(self, person_ids: Sequence[str]) -> list[Person | None]:
        documents = await self._documents(person_ids, *JSON_PERSON_PATHS)
        return [
            _json_person(person_id, values)
            if values and values["$.image_hashes"] and values["$.image_hashes"][0]
            else None
            for person_id, values in zip(person_ids, documents, strict=True)
        ]

    def _nearest_query(self, vector: bytes, num_results: int) -> VectorQuery:
        return self._query(vector, num_results, ["$.image_hashes", "$.embeddings"])

    def _hits(self, reply: Reply, vector: bytes) -> list[Nearest]:
        """The multi-value index ranks whole documents and does not say which of a person's
        vectors was nearest, so the search returns each candidate's vectors and that face is
        found here (numpy, k people)."""
        photo = np.frombuffer(vector, dtype=np.float32)
        found = []
        for _, fields in reply.hits:
            person_id = _text(fields[b"person_id"])
            hashes = json.loads(fields[b"$.image_hashes"])
            faces = np.asarray(json.loads(fields[b"$.embeddings"]), dtype=np.float32)
            norms = np.linalg.norm(faces, axis=1) * np.linalg.norm(photo)
            nearest = int(np.argmax(faces @ photo / np.maximum(norms, 1e-12)))
            distance = float(fields[b"vector_distance"])
            found.append(Nearest(person_id, distance, self.face_id(person_id, hashes[nearest])))
        return found

    async def faces_of_many(self, person_ids: Sequence[str]) -> list[list[EnrolledFace]]:
        documents = await self._documents(person_ids, "$.image_hashes", "$.faces")
        galleries = []
        for person_id, found in zip(person_ids, documents, strict=True):
            values = found or {}
            hashes = (values.get("$.image_hashes") or [[]])[0]
            records = (values.get("$.faces") or [{}])[0]
            faces = [_enrolled(self.face_id(person_id, h), records.get(h)) for h in hashes]
            galleries.append(_gallery_order(faces))
        return galleries

    async def enroll(
        self,
        person_id: str,
        name: str | None,
        image_hash: str,
        vector: bytes,
        quality: FaceQuality | None = None,
    ) -> Enrolment:
        self.watch.check()
        key = self.person_key(person_id)
        record = _face_record(quality)
        floats = json.dumps(np.frombuffer(vector, dtype=np.float32).tolist())

        async def change(pipe: Pipeline) -> Callable[[list[Any]], Enrolment]:
            raw: Any = await pipe.execute_command("JSON.GET", key, "$.image_hashes")
            hashes = json.loads(raw)[0] if raw else None
            pipe.multi()  # type: ignore[no-untyped-call]
            new = hashes is None or image_hash not in hashes
            if hashes is None:
                document = {
                    "id": person_id,
                    "name": name,
                    "image_hashes": [image_hash],
                    "faces": {image_hash: json.loads(record)},
                }
                pipe.execute_command("JSON.SET", key, "$", json.dumps(document))
                pipe.execute_command("JSON.SET", key, "$.embeddings", f"[{floats}]")
            else:
                if new:
                    pipe.execute_command("JSON.ARRAPPEND", key, "$.embeddings", floats)
                    pipe.execute_command(
                        "JSON.ARRAPPEND", key, "$.image_hashes", json.dumps(image_hash)
                    )
                    # documents of earlier versions have no $.faces yet
                    pipe.execute_command("JSON.SET", key, "$.faces", "{}", "NX")
                    pipe.execute_command("JSON.SET", key, _faces_path(image_hash), record)
                if name is not None:
                    pipe.execute_command("JSON.SET", key, "$.name", json.dumps(name))
            pipe.execute_command("JSON.GET", key, *JSON_PERSON_PATHS)
            return lambda replies: Enrolment(new, _json_person(person_id, json.loads(replies[-1])))

        done = await self._watched([key], change)
        await self._sync_registry(person_id)
        return done

    async def delete(self, person_id: str) -> bool:
        self.watch.check()
        async with redis_errors():
            deleted = await self.redis.delete(self.person_key(person_id))
        note_write()
        await self._sync_registry(person_id)
        return bool(deleted)

    async def delete_face(self, face: FaceId) -> FaceRemoval:
        self.watch.check()
        person_id = face.person_id
        key = self.person_key(person_id)

        async def change(pipe: Pipeline) -> Callable[[list[Any]], FaceRemoval]:
            raw: Any = await pipe.execute_command("JSON.GET", key, "$.image_hashes")
            hashes: list[str] = json.loads(raw)[0] if raw else []
            image = self._matching(face, hashes)
            pipe.multi()  # type: ignore[no-untyped-call]
            if image is None:
                return lambda _: FaceRemoval(False, None)
            if len(hashes) == 1:  # their last face: the person goes with it
                pipe.delete(key)
                return lambda _: FaceRemoval(True, None)
            at = hashes.index(image)
            pipe.execute_command("JSON.ARRPOP", key, "$.embeddings", at)
            pipe.execute_command("JSON.ARRPOP", key, "$.image_hashes", at)
            pipe.execute_command("JSON.DEL", key, _faces_path(image))
            pipe.execute_command("JSON.GET", key, *JSON_PERSON_PATHS)
            return lambda replies: FaceRemoval(
                True, _json_person(person_id, json.loads(replies[-1]))
            )

        done = await self._watched([key], change)
        if done.found:
            await self._sync_registry(person_id)
        return done


# What a person is read as (a change reads them back last in its transaction, to answer with
# the person as it left them)
HASH_PERSON_FIELDS = ["name", "face_count"]
JSON_PERSON_PATHS = ("$.name", "$.image_hashes")


def _hash_person(person_id: str, reply: list[Any]) -> Person:
    """The person from HMGET of HASH_PERSON_FIELDS on their hash."""
    stored, count = reply
    return Person(person_id, stored.decode() if stored else None, int(count))


def _json_person(person_id: str, values: dict[str, Any]) -> Person:
    """The person from JSON.GET of JSON_PERSON_PATHS on their document (parsed)."""
    return Person(person_id, values["$.name"][0], len(values["$.image_hashes"][0]))


def _faces_path(image_hash: str) -> str:
    """The JSON path of a face's record (bracketed: a hex digest may start with a digit)."""
    return f'$.faces["{image_hash}"]'


def _stored_record(value: Any) -> Any:
    """A hash-layout face field's value: the JSON record, or ``1`` from earlier versions."""
    text = _text(value)
    return json.loads(text) if text.startswith("{") else None


def face_store(
    layout: Layout, client: Redis, namespace: str = "", reads: Reads | None = None
) -> FaceStore:
    stores: dict[Layout, type[FaceStore]] = {"hash": HashFaceStore, "json": JsonFaceStore}
    return stores[layout](client, namespace, reads=reads)
