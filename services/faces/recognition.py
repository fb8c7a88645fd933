"""Enrolling people from photos, identifying who a photo shows, verifying that it is someone.

The photo itself is never stored: only the face vector, the SHA-256 of the uploaded bytes
(which makes enrolling the same photo twice a no-op) and the person's id and name. Input is
checked cheapest first (ids and k, then the image header, then the model), so a refused
request spends neither the model nor Redis.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from lookalike.services.core.errors import (
    BadUserInput,
    PayloadTooLarge,
    PersonNotFound,
    check_range,
    check_text,
)
from lookalike.services.core.settings import Settings
from lookalike.services.faces.images import ImageLimits
from lookalike.services.faces.model import MODEL_LABEL, weight_files
from lookalike.services.faces.store import FaceStore, Nearest, PeoplePage, Person, face_store
from lookalike.services.faces.workers import FaceWorkers
from lookalike.services.redis.connection import Redis
from lookalike.services.redis.coordination.index_users import announced
from lookalike.services.redis.replicas import Reads

PERSON_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_K = 20
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Identification:
    person_id: str | None  # None: the nearest face is farther than the threshold
    distance: float | None
    candidates: list[Nearest]
    threshold: float
    model: str
    faces_detected: int


@dataclass(frozen=True, slots=True)
class Verification:
    person: Person
    match: bool  # the nearest of the person's faces is closer than the threshold
    distance: float
    threshold: float
    faces_detected: int


def validate_person_id(person_id: str) -> None:
    """Ids become Redis key names and TAG values: only a safe alphabet gets that far."""
    if not PERSON_ID.fullmatch(person_id):
        raise BadUserInput(
            "a person id is 1 to 64 letters, digits, '-' or '_'", argument="personId"
        )


class FaceService:
    def __init__(self, store: FaceStore, embedder: FaceWorkers, threshold: float, max_bytes: int):
        self.store = store
        self.embedder = embedder
        self.threshold = threshold
        self.max_bytes = max_bytes

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"the upload has {len(data):,} bytes, more than the {self.max_bytes:,} allowed",
                max=self.max_bytes,
            )

    async def identify(self, data: bytes, k: int) -> Identification:
        check_range("k", k, 1, MAX_K)
        self._check_size(data)
        face = await self.embedder.embed(data)
        candidates = await self.store.nearest(face.vector, k)
        best = candidates[0] if candidates else None
        known = best is not None and best.distance < self.threshold
        return Identification(
            person_id=best.person_id if known and best else None,
            distance=best.distance if best else None,
            candidates=candidates,
            threshold=self.threshold,
            model=MODEL_LABEL,
            faces_detected=face.faces_detected,
        )

    async def verify(self, person_id: str, data: bytes) -> Verification:
        """Is this photo that person? Compared with that person's faces only (a KNN query
        filtered on the person), so nobody else's vectors are read."""
        validate_person_id(person_id)
        self._check_size(data)
        person = await self.get(person_id)  # an unknown id spends no model time
        face = await self.embedder.embed(data)
        distance = await self.store.distance_to(person_id, face.vector)
        if distance is None:  # forgotten while the photo was in the model
            raise PersonNotFound(f"nobody is enrolled as {person_id!r}", id=person_id)
        return Verification(
            person=person,
            match=distance < self.threshold,
            distance=distance,
            threshold=self.threshold,
            faces_detected=face.faces_detected,
        )

    async def enroll(self, person_id: str, data: bytes, name: str | None) -> Person:
        validate_person_id(person_id)
        if name is not None:
            if not 1 <= len(name.strip()) <= MAX_NAME:
                raise BadUserInput(f"a name is 1 to {MAX_NAME} characters", argument="name")
            check_text("name", name)
        self._check_size(data)
        face = await self.embedder.embed(data)
        image_hash = hashlib.sha256(data).hexdigest()
        named = name.strip() if name else None
        return (await self.store.enroll(person_id, named, image_hash, face.vector)).person

    async def get(self, person_id: str) -> Person:
        (person,) = await self.store.get_many([person_id])
        if person is None:
            raise PersonNotFound.for_id(person_id)
        return person

    async def delete(self, person_id: str) -> bool:
        validate_person_id(person_id)
        return await self.store.delete(person_id)

    async def page(self, first: int, after: str | None) -> PeoplePage:
        check_range("first", first, 0, 100)
        if after is not None:
            validate_person_id(after)
        return await self.store.page(first, after)


@contextlib.asynccontextmanager
async def open_faces(
    settings: Settings, client: Redis, reads: Reads | None = None, *, announce: bool = False
) -> AsyncIterator[FaceService]:
    """The face service on this Redis: model files found, keys and index up to date, workers
    started with the model loaded. Reads go through ``reads`` (replicas) when given. A server
    ``announce``s its use of the faces first (``index_users``), as ``open_catalogue`` does."""
    weight_files()  # a missing file: one sentence now, not one per worker
    limits = ImageLimits(settings.max_image_pixels, settings.max_decoded_pixels)
    embedder = FaceWorkers(settings.process_face_workers, limits)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(embedder.close)
        store = face_store(settings.face_layout, client, reads=reads)
        if announce:
            await stack.enter_async_context(announced(client, [store.use()]))
        await store.open()
        await embedder.start()
        yield FaceService(store, embedder, settings.face_threshold, settings.max_upload_bytes)
