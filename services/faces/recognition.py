"""Enrolling people from photos, identifying who a photo shows, verifying that it is someone.

The photo itself is never stored: only the face vector, the SHA-256 of the uploaded bytes
(which makes enrolling the same photo twice a no-op) and the person's id and name. Input is
checked cheapest first (ids and k, then the image header, then the model), so a refused
request spends neither the model nor Redis.

A face that is not usable (``quality``) is never named as a person, and never enrolled: poor
enrolment photos are what later causes wrong matches. Its candidates are still shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from lookalike.services.core.errors import (
    BadUserInput,
    FaceNotFound,
    FaceQualityTooLow,
    MoreThanOneFace,
    NoFace,
    PayloadTooLarge,
    PersonNotFound,
    check_range,
    check_text,
)
from lookalike.services.core.settings import Settings
from lookalike.services.faces.face_ids import FaceId
from lookalike.services.faces.images import ImageLimits
from lookalike.services.faces.model import MODEL_LABEL, FacePick, weight_files
from lookalike.services.faces.quality import FaceQuality, Reason
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
    quality: FaceQuality  # of the face identified; not usable: person_id is None


@dataclass(frozen=True, slots=True)
class IdentifiedFace:
    """One face of a photo: where it is, who it is (one person names one face at most)."""

    box: tuple[int, int, int, int]  # x, y, width, height in the upright photo's pixels
    person_id: str | None
    distance: float | None  # to the person named, else to the nearest candidate
    candidates: list[Nearest]
    quality: FaceQuality


@dataclass(frozen=True, slots=True)
class Verification:
    person: Person
    match: bool  # a usable face, closer than the threshold to the nearest of the person's faces
    distance: float
    threshold: float
    faces_detected: int
    quality: FaceQuality


def name_faces(
    candidates: list[list[Nearest]], usable: list[bool], threshold: float
) -> list[Nearest | None]:
    """The person each face is named as: one person names one face at most.

    Every (face, candidate) pair closer than the threshold is taken nearest first: the face
    that matches a person best keeps the name, and a face whose best person was taken gets
    its next candidate still free (or none). Equal distances go to the larger face (the
    earlier one). A face that is not usable is named as nobody and takes nobody's name.
    """
    pairs = sorted(
        (
            (candidate.distance, face, n)
            for face, nearest in enumerate(candidates)
            if usable[face]
            for n, candidate in enumerate(nearest)
            if candidate.distance < threshold
        ),
    )
    named: list[Nearest | None] = [None] * len(candidates)
    taken: set[str] = set()
    for _, face, n in pairs:
        candidate = candidates[face][n]
        if named[face] is None and candidate.person_id not in taken:
            named[face] = candidate
            taken.add(candidate.person_id)
    return named


def validate_person_id(person_id: str) -> None:
    """Ids become Redis key names and TAG values: only a safe alphabet gets that far."""
    if not PERSON_ID.fullmatch(person_id):
        raise BadUserInput(
            "a person id is 1 to 64 letters, digits, '-' or '_'", argument="personId"
        )


class FaceService:
    def __init__(
        self,
        store: FaceStore,
        embedder: FaceWorkers,
        threshold: float,
        max_bytes: int,
        max_faces: int = 20,
    ):
        self.store = store
        self.embedder = embedder
        self.threshold = threshold
        self.max_bytes = max_bytes
        self.max_faces = max_faces

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
        known = best is not None and best.distance < self.threshold and face.quality.usable
        return Identification(
            person_id=best.person_id if known and best else None,
            distance=best.distance if best else None,
            candidates=candidates,
            threshold=self.threshold,
            model=MODEL_LABEL,
            faces_detected=face.faces_detected,
            quality=face.quality,
        )

    async def identify_faces(self, data: bytes, max_faces: int, k: int) -> list[IdentifiedFace]:
        """Every face of the photo (the ``max_faces`` largest, largest first), embedded in
        one worker call and searched in one round trip. A photo with no face has none."""
        check_range("maxFaces", max_faces, 1, self.max_faces)
        check_range("k", k, 1, MAX_K)
        self._check_size(data)
        try:
            found = await self.embedder.embed(data, FacePick(0, max_faces, every=True))
        except NoFace:
            return []
        faces = found.faces
        candidates = await self.store.nearest_many([f.vector for f in faces], k)
        names = name_faces(candidates, [f.quality.usable for f in faces], self.threshold)
        return [
            IdentifiedFace(
                box=face.box,
                person_id=name.person_id if name else None,
                distance=name.distance if name else nearest[0].distance if nearest else None,
                candidates=nearest,
                quality=face.quality,
            )
            for face, nearest, name in zip(faces, candidates, names, strict=True)
        ]

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
            match=distance < self.threshold and face.quality.usable,
            distance=distance,
            threshold=self.threshold,
            faces_detected=face.faces_detected,
            quality=face.quality,
        )

    async def enroll(
        self, person_id: str, data: bytes, name: str | None, face_index: int | None = None
    ) -> Person:
        """Enrol the photo's one face, or with ``face_index`` that face of the order
        identifyFaces gives; a face that is not usable, or a photo of several faces with no
        index, stores nothing."""
        validate_person_id(person_id)
        if name is not None:
            if not 1 <= len(name.strip()) <= MAX_NAME:
                raise BadUserInput(f"a name is 1 to {MAX_NAME} characters", argument="name")
            check_text("name", name)
        if face_index is not None:
            check_range("faceIndex", face_index, 0, self.max_faces - 1)
        self._check_size(data)
        pick = FacePick(face_index or 0, 1, every=True, enrolling=True)
        face = await self.embedder.embed(data, pick)
        if face_index is None and face.faces_detected > 1:
            raise MoreThanOneFace(
                f"the photo shows {face.faces_detected} faces: say which one with faceIndex "
                "(0 is the largest, in the order identifyFaces gives)",
                facesDetected=face.faces_detected,
                reasons=[Reason.MORE_THAN_ONE_FACE.value],
            )
        if not face.faces:
            raise BadUserInput(
                f"faceIndex {face_index} is past the {face.faces_detected} faces found "
                f"(0 to {face.faces_detected - 1})",
                argument="faceIndex",
                facesDetected=face.faces_detected,
            )
        if not face.quality.usable:
            reasons = [reason.value for reason in face.quality.reasons]
            raise FaceQualityTooLow(
                f"the face is not good enough to enrol ({', '.join(reasons)}): send another photo",
                reasons=reasons,
                score=float(face.quality.score),
            )
        image_hash = hashlib.sha256(data).hexdigest()
        named = name.strip() if name else None
        enrolment = await self.store.enroll(person_id, named, image_hash, face.vector, face.quality)
        return enrolment.person

    async def get(self, person_id: str) -> Person:
        (person,) = await self.store.get_many([person_id])
        if person is None:
            raise PersonNotFound.for_id(person_id)
        return person

    async def delete(self, person_id: str) -> bool:
        validate_person_id(person_id)
        return await self.store.delete(person_id)

    async def delete_face(self, face_id: str) -> Person | None:
        return await forget_face(self.store, face_id)

    async def page(self, first: int, after: str | None) -> PeoplePage:
        check_range("first", first, 0, 100)
        if after is not None:
            validate_person_id(after)
        return await self.store.page(first, after)


async def forget_face(store: FaceStore, face_id: str) -> Person | None:
    """Forget one face: the person as it leaves them, None when it was their last (a person
    with no face cannot be identified, so they go with it). An id this API did not issue, or
    whose face is gone, is FACE_NOT_FOUND and changes nothing. (No model: the command line
    calls it on a bare store.)"""
    face = FaceId.parse(face_id)
    if face is None or not PERSON_ID.fullmatch(face.person_id):
        raise FaceNotFound.for_id(face_id)
    removal = await store.delete_face(face)
    if not removal.found:
        raise FaceNotFound.for_id(face_id)
    return removal.person


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
        yield FaceService(
            store,
            embedder,
            settings.face_threshold,
            settings.max_upload_bytes,
            settings.face_max_faces,
        )
