"""The face types, queries and mutations."""

from __future__ import annotations

import enum
from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload

from lookalike.resolvers import faces
from lookalike.resolvers.context import Context
from lookalike.schema.types.pagination import AFTER, Connection
from lookalike.services.faces.quality import FaceQuality as FaceQualityRecord
from lookalike.services.faces.quality import Reason
from lookalike.services.faces.recognition import IdentifiedFace as IdentifiedFaceRecord
from lookalike.services.faces.store import EnrolledFace as EnrolledFaceRecord
from lookalike.services.faces.store import Nearest
from lookalike.services.faces.store import Person as PersonRecord

Info = strawberry.Info[Context, None]

IMAGE = (
    "The photo, as a file part of a multipart request (the GraphQL multipart request spec "
    "that Apollo's upload clients send): JPEG, PNG, WebP, HEIC/HEIF, AVIF, MPO or BMP, at "
    "most LOOKALIKE_MAX_UPLOAD_BYTES (10 MiB by default). Errors: INVALID_IMAGE, "
    "UNSUPPORTED_IMAGE, IMAGE_TOO_LARGE, PAYLOAD_TOO_LARGE, NO_FACE (none found)."
)
THRESHOLD = (
    "The server's LOOKALIKE_FACE_THRESHOLD: a face nearer than this cosine distance is the "
    "same person."
)
DISTANCE = "Cosine distance between the two faces' vectors: 0 identical, 2 opposite."
PERSON_ID = "The person's id: 1 to 64 of A-Z a-z 0-9 - _ (BAD_USER_INPUT otherwise)."
Image = Annotated[Upload, strawberry.argument(description=IMAGE)]
PersonId = Annotated[strawberry.ID, strawberry.argument(description=PERSON_ID)]
# What a face enrolled before times and qualities were recorded shows (``recorded: false``).
UNRECORDED_ADDED_AT = "1970-01-01T00:00:00.000Z"
UNRECORDED_QUALITY = FaceQualityRecord(usable=True, score=0.0, reasons=())


@strawberry.type(description="An enrolled person: only face vectors are kept, never photos.")
class Person:
    id: strawberry.ID = strawberry.field(
        description="Chosen at enrolment: 1 to 64 of A-Z a-z 0-9 - _."
    )
    name: str | None = strawberry.field(
        description="A display name given at enrolment (the last one given); null if none."
    )
    face_count: int = strawberry.field(
        description="Distinct photos enrolled for this person (the same photo counts once)."
    )

    @classmethod
    def from_record(cls, record: PersonRecord) -> Person:
        return cls(id=strawberry.ID(record.id), name=record.name, face_count=record.face_count)

    @strawberry.field(
        description="The person's enrolled faces, oldest first, each with its id for "
        "deleteFace (read for a whole page of people at once)."
    )
    async def faces(self, info: Info) -> list[EnrolledFace]:
        return [EnrolledFace.from_record(f) for f in await faces.faces_of(info.context, self.id)]


ENUM_VALUES: dict[enum.Enum, str] = {
    Reason.SMALL_FACE: "The face is too few pixels across to be told apart (under 40 pixels "
    "wide in the upright photo): come closer or use a larger photo.",
    Reason.BLURRY: "The face is out of focus or moved: hold the phone still, tap to focus.",
    Reason.TOO_DARK: "The face is underexposed: find more light, not behind the person.",
    Reason.TOO_BRIGHT: "The face is overexposed (washed out): avoid direct light or flash.",
    Reason.TURNED_AWAY: "The face is turned too far from the camera (its landmarks): look "
    "straight at it.",
    Reason.MORE_THAN_ONE_FACE: "Enrolment only: the photo shows several faces; say which with "
    "faceIndex, or send a photo of one person.",
}
FaceQualityReason = strawberry.enum(
    Reason,
    name="FaceQualityReason",
    description="Why a face is not good enough: what an app can ask the user to change.",
)


@strawberry.type(description="Whether a face is good enough to name or to enrol, and why not.")
class FaceQuality:
    usable: bool = strawberry.field(
        description="False: the face is never named as a person and cannot be enrolled."
    )
    score: float = strawberry.field(description="0 (useless) to 1 (a clean, frontal, lit face).")
    reasons: list[FaceQualityReason] = strawberry.field(  # type: ignore[valid-type]
        description="What makes the face unusable; empty when it is usable."
    )

    @classmethod
    def from_record(cls, record: FaceQualityRecord) -> FaceQuality:
        return cls(usable=record.usable, score=record.score, reasons=list(record.reasons))


@strawberry.type(description="One enrolled face of a person (its vector; the photo is not kept).")
class EnrolledFace:
    id: strawberry.ID = strawberry.field(
        description="Stable and opaque: what deleteFace takes and FaceCandidate.faceId shows. "
        "It does not reveal the photo's hash."
    )
    added_at: str = strawberry.field(
        description="When it was enrolled, ISO 8601 in UTC (2026-01-31T09:30:00.000Z); "
        f"{UNRECORDED_ADDED_AT} when not recorded."
    )
    quality: FaceQuality = strawberry.field(
        description="As measured when it was enrolled; when not recorded: usable, score 0, "
        "no reasons."
    )
    recorded: bool = strawberry.field(
        description="False for a face enrolled before lookalike recorded each face's time and "
        "quality: addedAt and quality are then placeholders (the photo is not kept, so they "
        "cannot be measured again)."
    )

    @classmethod
    def from_record(cls, record: EnrolledFaceRecord) -> EnrolledFace:
        recorded = record.added_at is not None and record.quality is not None
        return cls(
            id=strawberry.ID(record.id),
            added_at=record.added_at or UNRECORDED_ADDED_AT,
            quality=FaceQuality.from_record(record.quality or UNRECORDED_QUALITY),
            recorded=recorded,
        )


@strawberry.type(description="A person near the photo: their nearest face's cosine distance.")
class FaceCandidate:
    person: Person = strawberry.field(description="The enrolled person.")
    distance: float = strawberry.field(description=f"To their nearest face. {DISTANCE}")
    face_id: strawberry.ID = strawberry.field(
        description="Which of the person's enrolled faces is the nearest (its EnrolledFace.id)."
    )


def _candidates(nearest: list[Nearest], by_id: dict[str, Person]) -> list[FaceCandidate]:
    """The candidates whose person could be read (one forgotten meanwhile is left out)."""
    return [
        FaceCandidate(
            person=by_id[c.person_id], distance=c.distance, face_id=strawberry.ID(c.face_id)
        )
        for c in nearest
        if c.person_id in by_id
    ]


@strawberry.type(description="Where a face is: a rectangle in the pixels of the upright photo.")
class FaceBox:
    x: int = strawberry.field(description="Left edge, in pixels from the photo's left.")
    y: int = strawberry.field(description="Top edge, in pixels from the photo's top.")
    width: int = strawberry.field(description="In pixels.")
    height: int = strawberry.field(description="In pixels.")


@strawberry.type(description="One face of a photo, and who it is.")
class IdentifiedFace:
    box: FaceBox = strawberry.field(
        description="Where the face is, in the pixels of the photo as a viewer shows it "
        "(after its EXIF or HEIF rotation)."
    )
    person: Person | None = strawberry.field(
        description="Null when unknown: no candidate closer than the threshold that no other "
        "face of the photo matches better, or a face that is not usable. A person names one "
        "face of a photo at most."
    )
    distance: float | None = strawberry.field(
        description="To the person named; when none is, to the nearest candidate (null with "
        "nobody enrolled)."
    )
    candidates: list[FaceCandidate] = strawberry.field(
        description="The k nearest distinct people of this face, nearest first, also when "
        "unknown or not usable."
    )
    quality: FaceQuality = strawberry.field(
        description="Whether the face is good enough to be named, and why not."
    )

    @classmethod
    def from_record(cls, face: IdentifiedFaceRecord, by_id: dict[str, Person]) -> IdentifiedFace:
        x, y, width, height = face.box
        return cls(
            box=FaceBox(x=x, y=y, width=width, height=height),
            person=by_id.get(face.person_id) if face.person_id else None,
            distance=face.distance,
            candidates=_candidates(face.candidates, by_id),
            quality=FaceQuality.from_record(face.quality),
        )


@strawberry.type(description="Who the largest face of a photo is, and who else it is near.")
class FaceIdentification:
    person: Person | None = strawberry.field(
        description="Null when the nearest face is farther than the threshold: unknown."
    )
    distance: float | None = strawberry.field(
        description=f"To the nearest enrolled face; null when nobody is enrolled. {DISTANCE}"
    )
    candidates: list[FaceCandidate] = strawberry.field(
        description="The k nearest distinct people, nearest first, also when unknown."
    )
    threshold: float = strawberry.field(description=THRESHOLD)
    model: str = strawberry.field(
        description="The face model that made the vectors (its distances only compare with its "
        "own): detector, alignment and embedding."
    )
    faces_detected: int = strawberry.field(
        description="Faces found in the photo; the largest one is the one identified."
    )
    quality: FaceQuality = strawberry.field(
        description="Of the face identified: one that is not usable is never named."
    )


@strawberry.type(description="Whether a photo shows one enrolled person.")
class FaceVerification:
    person: Person = strawberry.field(description="The person the photo was compared with.")
    match: bool = strawberry.field(
        description="True when the face is usable and the nearest of the person's faces is "
        "closer than the threshold."
    )
    distance: float = strawberry.field(
        description=f"To the nearest of the person's faces. {DISTANCE}"
    )
    threshold: float = strawberry.field(description=THRESHOLD)
    faces_detected: int = strawberry.field(
        description="Faces found in the photo; the largest one is the one compared."
    )
    quality: FaceQuality = strawberry.field(
        description="Of the face compared: one that is not usable never matches."
    )


@strawberry.type
class FaceQuery:
    @strawberry.field(description="A person by id; null (with PERSON_NOT_FOUND) if unknown.")
    async def person(self, info: Info, id: PersonId) -> Person | None:
        return Person.from_record(await faces.person(info.context, str(id)))

    @strawberry.field(
        description="Enrolled people in id order, a page at a time (first: 0 to 100)."
    )
    async def people(
        self,
        info: Info,
        first: Annotated[
            int | None,
            strawberry.argument(description="People on this page: 0 to 100 (0: only totals)."),
        ] = 20,
        after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    ) -> Connection[Person]:
        page, found = await faces.people_page(info.context, 20 if first is None else first, after)
        return Connection[Person].of(
            [Person.from_record(p) for p in found],
            lambda person: faces.encode_cursor(person.id),
            total=page.total,
            has_next=page.has_next,
            after=after,
        )


@strawberry.type(
    description="Changes and photo uploads. With LOOKALIKE_API_KEYS set, every mutation needs "
    "Authorization: Bearer <key> (UNAUTHENTICATED without one, FORBIDDEN for a wrong one); "
    "with no keys, only from the server's own machine. Photos are never stored: only the "
    "vectors of enrolled faces."
)
class FaceMutation:
    @strawberry.mutation(
        description="Who is in this photo? The largest face is compared with every enrolled "
        "face; k (1 to 20) nearest people are returned as candidates."
    )
    async def identify_face(
        self,
        info: Info,
        image: Image,
        k: Annotated[
            int, strawberry.argument(description="How many nearest people to list: 1 to 20.")
        ] = 3,
    ) -> FaceIdentification:
        found, people = await faces.identify(info.context, image, k)
        by_id = {p.id: Person.from_record(p) for p in people}
        return FaceIdentification(
            person=by_id.get(found.person_id) if found.person_id else None,
            distance=found.distance,
            candidates=_candidates(found.candidates, by_id),
            threshold=found.threshold,
            model=found.model,
            faces_detected=found.faces_detected,
            quality=FaceQuality.from_record(found.quality),
        )

    @strawberry.mutation(
        description="Who is in this photo, face by face: its faces (at most maxFaces, the "
        "largest first), each with a box, a person and its k (1 to 20) nearest people. The "
        "photo is decoded and searched once and its faces embedded in one model call. A "
        "person names one face at most. No face: an empty list."
    )
    async def identify_faces(
        self,
        info: Info,
        image: Annotated[
            Upload,
            strawberry.argument(
                description="The photo: JPEG, MPO, HEIC/HEIF, AVIF, WebP, PNG or BMP."
            ),
        ],
        max_faces: Annotated[
            int,
            strawberry.argument(
                description="The most faces to identify, the largest first: 1 to "
                "LOOKALIKE_FACE_MAX_FACES (20 by default), and within the query's cost limit."
            ),
        ] = 10,
        k: Annotated[int, strawberry.argument(description="Candidates per face: 1 to 20.")] = 3,
    ) -> list[IdentifiedFace]:
        found, people = await faces.identify_faces(info.context, image, max_faces, k)
        by_id = {p.id: Person.from_record(p) for p in people}
        return [IdentifiedFace.from_record(face, by_id) for face in found]

    @strawberry.mutation(
        description="Is this photo that person? The largest face is compared with that "
        "person's enrolled faces only. PERSON_NOT_FOUND for an unknown id."
    )
    async def verify_face(self, info: Info, person_id: PersonId, image: Image) -> FaceVerification:
        found = await faces.verify(info.context, str(person_id), image)
        return FaceVerification(
            person=Person.from_record(found.person),
            match=found.match,
            distance=found.distance,
            threshold=found.threshold,
            faces_detected=found.faces_detected,
            quality=FaceQuality.from_record(found.quality),
        )

    @strawberry.mutation(
        description="Add the face of this photo to a person (created if new). The same photo "
        "twice adds nothing. personId: 1-64 of A-Z a-z 0-9 - _. A face that is not usable is "
        "refused (FACE_QUALITY_TOO_LOW, extensions.reasons), and so is a photo of several "
        "faces without faceIndex (MORE_THAN_ONE_FACE); nothing is stored then."
    )
    async def enroll_face(
        self,
        info: Info,
        person_id: Annotated[
            strawberry.ID,
            strawberry.argument(
                description="Who the photo shows: an existing person's id adds a face to them, "
                f"a new one creates them. {PERSON_ID}"
            ),
        ],
        image: Image,
        name: Annotated[
            str | None,
            strawberry.argument(
                description="A display name (1 to 200 characters, trimmed): replaces the "
                "stored one; null keeps it."
            ),
        ] = None,
        face_index: Annotated[
            int | None,
            strawberry.argument(
                description="Which face of a photo of several to enrol: its index in the "
                "largest-first order identifyFaces gives (0 is the largest)."
            ),
        ] = None,
    ) -> Person:
        person = await faces.enroll(info.context, str(person_id), image, name, face_index)
        return Person.from_record(person)

    @strawberry.mutation(description="Forget a person and every face vector of theirs.")
    async def delete_person(self, info: Info, id: PersonId) -> bool:
        return await faces.delete(info.context, str(id))

    @strawberry.mutation(
        description="Forget one enrolled face (a bad photo), the person's other faces kept. "
        "The person as it leaves them; null when it was their last face, which forgets the "
        "person too. FACE_NOT_FOUND (nothing changed) for an id that names no enrolled face."
    )
    async def delete_face(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="An EnrolledFace.id of Person.faces.")
        ],
    ) -> Person | None:
        person = await faces.delete_face(info.context, str(id))
        return Person.from_record(person) if person is not None else None
