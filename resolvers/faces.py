"""Face resolvers: read the upload, call the face service, load people in one batch."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile

from lookalike.resolvers import cursors
from lookalike.resolvers.context import Context
from lookalike.services.core.errors import InvalidImage, PersonNotFound
from lookalike.services.faces.face_ids import FaceId
from lookalike.services.faces.recognition import (
    PERSON_ID,
    Identification,
    IdentifiedFace,
    Verification,
)
from lookalike.services.faces.store import EnrolledFace, PeoplePage, Person


async def read_upload(upload: Any) -> bytes:
    """The uploaded bytes; the request's size was already bounded while it was received.

    Read from the start: one file may fill two variables (Apollo's clients map a repeated
    file that way) or be given to two fields (identify and verify one photo), and each reader
    gets all of it."""
    if not isinstance(upload, UploadFile):
        raise InvalidImage("image must be a file part of a multipart request")
    await upload.seek(0)
    return await upload.read()


async def identify(ctx: Context, upload: Any, k: int) -> tuple[Identification, list[Person]]:
    found = await ctx.faces.identify(await read_upload(upload), k)
    people = await ctx.loaders.people.load_many([c.person_id for c in found.candidates])
    return found, [p for p in people if p is not None]


async def identify_faces(
    ctx: Context, upload: Any, max_faces: int, k: int
) -> tuple[list[IdentifiedFace], list[Person]]:
    """Every face of the photo, and every candidate person of any face in one batch."""
    found = await ctx.faces.identify_faces(await read_upload(upload), max_faces, k)
    ids = list(dict.fromkeys(c.person_id for face in found for c in face.candidates))
    people = await ctx.loaders.people.load_many(ids)
    return found, [p for p in people if p is not None]


async def verify(ctx: Context, person_id: str, upload: Any) -> Verification:
    found = await ctx.faces.verify(person_id, await read_upload(upload))
    ctx.loaders.people.prime(person_id, found.person, force=True)
    return found


async def enroll(
    ctx: Context, person_id: str, upload: Any, name: str | None, face_index: int | None = None
) -> Person:
    person = await ctx.faces.enroll(person_id, await read_upload(upload), name, face_index)
    ctx.loaders.people.prime(person.id, person, force=True)
    ctx.loaders.faces_changed(person.id)
    return person


async def delete(ctx: Context, person_id: str) -> bool:
    deleted = await ctx.faces.delete(person_id)
    ctx.loaders.people.prime(person_id, None, force=True)  # gone, for the rest of the request
    ctx.loaders.enrolled_faces.prime(person_id, [], force=True)
    return deleted


async def delete_face(ctx: Context, face_id: str) -> Person | None:
    person = await ctx.faces.delete_face(face_id)
    face = FaceId.parse(face_id)  # valid: the service found the face
    if face is not None:
        ctx.loaders.people.prime(face.person_id, person, force=True)
        ctx.loaders.faces_changed(face.person_id)
    return person


async def faces_of(ctx: Context, person_id: str) -> list[EnrolledFace]:
    return await ctx.loaders.enrolled_faces.load(person_id)


async def person(ctx: Context, person_id: str) -> Person:
    """An id that cannot be a person's is not looked up: nobody is enrolled as it."""
    found = await ctx.loaders.people.load(person_id) if PERSON_ID.fullmatch(person_id) else None
    if found is None:
        raise PersonNotFound.for_id(person_id)
    return found


async def people_page(
    ctx: Context, first: int, after: str | None
) -> tuple[PeoplePage, list[Person]]:
    start = (
        None
        if after is None
        else cursors.decode("person", after, lambda key: PERSON_ID.fullmatch(key) is not None)
    )
    page = await ctx.faces.page(first, start)
    found = await ctx.loaders.people.load_many(page.person_ids)
    return page, [p for p in found if p is not None]


def encode_cursor(person_id: str) -> str:
    return cursors.encode("person", person_id)
