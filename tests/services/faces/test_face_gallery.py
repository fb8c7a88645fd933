"""A person's photos: Person.faces, deleteFace, and which face an identification matched.

On both layouts, on one Redis and on a real 3-shard cluster, with the real model on ORL
faces. Twenty people (p01..p20, one photo each) are enrolled for the whole module; every
other person a test enrols is its own and is forgotten at its end.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from lookalike.services.faces.images import ImageLimits, Photo
from lookalike.services.faces.model import FaceModel
from lookalike.services.faces.store import Layout
from tests.conftest import API_KEY, error_codes, gql, redis_dump
from tests.photos import ENROLL, IDENTIFY, PERSON, enrol_people, orl, send
from tests.redis_cluster import running_redis

IDENTIFY_KEY = "identify-only-key-for-the-gallery"
LISTED = [f"p{n:02}" for n in range(1, 21)]  # s11..s30, one photo each
FACES = """query($id: ID!) { person(id: $id) { id faceCount
  faces { id addedAt recorded quality { usable score reasons } } } }"""
DELETE_FACE = "mutation($id: ID!) { deleteFace(id: $id) { id name faceCount faces { id } } }"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(
    scope="module",
    params=[("hash", "redis"), ("json", "redis"), ("hash", "cluster"), ("json", "cluster")],
    ids=lambda param: "-".join(param),
)
def gallery(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    layout, backend = request.param
    with running_redis(backend, tmp_path_factory.mktemp(f"gallery-{layout}-{backend}")) as url:
        yield from _gallery(layout, url, tmp_path_factory)


def _gallery(
    layout: Layout, url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    settings = Settings(
        redis_url=url,
        data_dir=tmp_path_factory.mktemp("data"),
        face_layout=layout,
        api_keys=[SecretStr(API_KEY)],
        identify_keys=[SecretStr(IDENTIFY_KEY)],
        face_workers=2,  # the listed people are enrolled two at a time
    )
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(settings), headers=headers) as api:
        photos = {person: [orl(f"s{n}", 1)] for n, person in enumerate(LISTED, start=11)}
        enrol_people(api, photos, name_of=lambda person: f"Person {person}")
        yield api, url


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel()


def enrol(api: TestClient, person: str, source: str, number: int) -> dict[str, Any]:
    body = send(api, ENROLL, orl(source, number), id=person, name=f"Person {person}").json()
    assert "errors" not in body, body
    enrolled: dict[str, Any] = body["data"]["enrollFace"]
    return enrolled


def faces_of(api: TestClient, person: str) -> list[dict[str, Any]]:
    body = gql(api, FACES, id=person)
    assert "errors" not in body, body
    found: list[dict[str, Any]] = body["data"]["person"]["faces"]
    return found


def identify(api: TestClient, image: bytes, k: int = 3) -> dict[str, Any]:
    body = send(api, IDENTIFY.replace("candidates {", "candidates { faceId"), image, k=k).json()
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"]["identifyFace"]
    return found


def delete_face(api: TestClient, face_id: Any) -> dict[str, Any]:
    return gql(api, DELETE_FACE, id=face_id)


def forget(api: TestClient, *people: str) -> None:
    for person in people:
        gql(api, "mutation($id: ID!) { deletePerson(id: $id) }", id=person)


def crafted(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_person_faces_lists_each_face_with_its_time_and_quality(
    gallery: tuple[TestClient, str], model: FaceModel
) -> None:
    api, _ = gallery
    started = datetime.now(UTC)
    try:
        for number in (1, 2, 3):
            enrol(api, "g-list", "s5", number)
        ended = datetime.now(UTC)
        faces = faces_of(api, "g-list")
        assert len(faces) == 3 == gql(api, PERSON, id="g-list")["data"]["person"]["faceCount"]
        assert len({face["id"] for face in faces}) == 3
        times = [face["addedAt"] for face in faces]
        assert all(ISO_UTC.fullmatch(t) for t in times), times
        assert times == sorted(times)  # oldest first: in enrolment order
        parsed = [datetime.fromisoformat(t) for t in times]
        assert started.replace(microsecond=0) <= parsed[0]
        assert parsed[-1] <= ended
        limits = ImageLimits(10_000_000, 10_000_000)
        for face, number in zip(faces, (1, 2, 3), strict=True):
            measured = model.embed(Photo(orl("s5", number), limits)).quality
            assert face["recorded"] is True
            assert face["quality"] == {
                "usable": measured.usable,
                "score": pytest.approx(measured.score),
                "reasons": [r.value for r in measured.reasons],
            }
        assert faces_of(api, "g-list") == faces  # ids and all: stable
        enrol(api, "g-list", "s5", 1)  # the same photo again: nothing added or re-stamped
        assert faces_of(api, "g-list") == faces
    finally:
        forget(api, "g-list")


def test_identify_names_the_face_that_matched(gallery: tuple[TestClient, str]) -> None:
    """One person enrolled with two different people's faces: the photo of each is matched
    with that face, so faceId is the matching face, not any face of the person."""
    api, _ = gallery
    try:
        enrol(api, "g-mixed", "s6", 1)
        enrol(api, "g-mixed", "s7", 1)
        first, second = (face["id"] for face in faces_of(api, "g-mixed"))
        for source, expected in (("s6", first), ("s7", second)):
            found = identify(api, orl(source, 9))
            assert found["person"]["id"] == "g-mixed"
            assert found["candidates"][0]["faceId"] == expected
        everyone = identify(api, orl("s12", 5), k=20)  # p02's face
        assert everyone["candidates"][0]["person"]["id"] == "p02"
        for candidate in everyone["candidates"]:
            listed = {face["id"] for face in faces_of(api, candidate["person"]["id"])}
            assert candidate["faceId"] in listed
    finally:
        forget(api, "g-mixed")


def test_delete_face_removes_exactly_that_face(gallery: tuple[TestClient, str]) -> None:
    api, url = gallery
    try:
        for number in (1, 2, 3):
            enrol(api, "g-del", "s8", number)
        before = faces_of(api, "g-del")
        others = {k: v for k, v in redis_dump(url, "face*").items() if b"{g-del}" not in k}
        matched = identify(api, orl("s8", 9))["candidates"][0]
        assert matched["person"]["id"] == "g-del"

        body = delete_face(api, matched["faceId"])
        assert "errors" not in body, body
        kept = [face for face in before if face["id"] != matched["faceId"]]
        assert body["data"]["deleteFace"] == {
            "id": "g-del",
            "name": "Person g-del",
            "faceCount": 2,
            "faces": [{"id": face["id"]} for face in kept],
        }
        assert faces_of(api, "g-del") == kept  # the others as they were
        after = {k: v for k, v in redis_dump(url, "face*").items() if b"{g-del}" not in k}
        assert after == others  # nobody else's keys changed
        again = identify(api, orl("s8", 9))["candidates"][0]
        assert again["person"]["id"] == "g-del"
        assert again["faceId"] in {face["id"] for face in kept}
        assert again["distance"] > matched["distance"]

        gone = delete_face(api, matched["faceId"])  # twice: it is not there any more
        assert gone["data"] == {"deleteFace": None}
        assert error_codes(gone) == ["FACE_NOT_FOUND"]
    finally:
        forget(api, "g-del")


def test_deleting_the_last_face_forgets_the_person(gallery: tuple[TestClient, str]) -> None:
    api, url = gallery
    try:
        enrol(api, "g-last", "s9", 1)
        enrol(api, "g-last", "s9", 2)
        first, second = (face["id"] for face in faces_of(api, "g-last"))
        assert delete_face(api, first)["data"]["deleteFace"]["faceCount"] == 1
        body = delete_face(api, second)
        assert "errors" not in body, body
        assert body["data"] == {"deleteFace": None}
        assert error_codes(gql(api, PERSON, id="g-last")) == ["PERSON_NOT_FOUND"]
        assert not [key for key in redis_dump(url, "face*") if b"g-last" in key]
        page = gql(api, "{ people(first: 100) { totalCount edges { node { id } } } }")
        assert "g-last" not in {e["node"]["id"] for e in page["data"]["people"]["edges"]}
        assert page["data"]["people"]["totalCount"] == len(LISTED)
        found = identify(api, orl("s9", 9), k=20)
        assert "g-last" not in {c["person"]["id"] for c in found["candidates"]}
    finally:
        forget(api, "g-last")


def test_crafted_face_ids_are_face_not_found_and_change_nothing(
    gallery: tuple[TestClient, str],
) -> None:
    """Ids this API did not issue, in every shape: another person's face id with the person
    swapped (also one differing in case only), separators and key syntax in the person part,
    the token of a real face with something appended, other spellings of a real id."""
    api, url = gallery
    try:
        enrol(api, "g-case", "s10", 1)
        enrol(api, "G-CASE", "s10", 1)  # the same photo, another person
        (mine,) = faces_of(api, "g-case")
        (theirs,) = faces_of(api, "G-CASE")
        assert mine["id"] != theirs["id"]  # the same photo as two people: two ids
        _, person, token = base64.urlsafe_b64decode(mine["id"]).decode().split(":")
        assert person == "g-case"
        assert len(token) == 32
        ids = [
            "",
            "nope",
            "x" * 10_000,
            crafted(f"face:G-CASE:{token}"),  # my face's token, another person
            crafted(f"face:p01:{token}"),
            crafted(f"face:g-case:{'0' * 32}"),
            crafted(f"face:g-case:{token.upper()}"),
            crafted(f"face:g-case:{token}:x"),
            crafted(f"face:g-case:x:{token}"),
            crafted(f"face:g-case}}:{token}"),
            crafted(f"face:{{g-case}}:{token}"),
            crafted(f"face:g-case*:{token}"),
            crafted(f"face:g-case\r\nDEL face-person:{{p01}}:{token}"),
            crafted(f"face:g-case {token}"),
            crafted(f"face::{token}"),
            crafted(f"book:g-case:{token}"),
            mine["id"].rstrip("="),  # another spelling of a real id (it is padded)
            mine["id"] + "==",
            base64.b64encode(base64.urlsafe_b64decode(mine["id"])).decode().replace("=", "") + "\n",
            f"face:g-case:{token}",  # the real id's content, not encoded
        ]
        before = redis_dump(url, "face*")
        for face_id in ids:
            body = delete_face(api, face_id)
            assert body["data"] == {"deleteFace": None}, face_id
            assert error_codes(body) == ["FACE_NOT_FOUND"], face_id
        literal = gql(api, "mutation { deleteFace(id: 123) { id } }")  # an ID given as Int
        assert error_codes(literal) == ["FACE_NOT_FOUND"]
        assert redis_dump(url, "face*") == before
        assert faces_of(api, "G-CASE") == [theirs]
    finally:
        forget(api, "g-case", "G-CASE")


def with_key(api: TestClient, key: str | None) -> TestClient:
    other = TestClient(api.app, headers={"Authorization": f"Bearer {key}"} if key else {})
    other.portal = api.portal
    return other


def test_delete_face_needs_a_full_key(gallery: tuple[TestClient, str]) -> None:
    api, url = gallery
    try:
        enrol(api, "g-key", "s31", 1)
        enrol(api, "g-key", "s31", 2)
        (face, _) = faces_of(api, "g-key")
        before = redis_dump(url, "face*")
        for key, code in ((None, "UNAUTHENTICATED"), (IDENTIFY_KEY, "FORBIDDEN")):
            body = delete_face(with_key(api, key), face["id"])
            assert body.get("data") is None
            assert error_codes(body) == [code]
        assert redis_dump(url, "face*") == before
        listed = gql(with_key(api, IDENTIFY_KEY), FACES, id="g-key")  # queries stay open
        assert len(listed["data"]["person"]["faces"]) == 2
        assert delete_face(api, face["id"])["data"]["deleteFace"]["faceCount"] == 1
    finally:
        forget(api, "g-key")


def test_a_page_of_people_with_their_faces_is_read_in_fixed_round_trips(
    gallery: tuple[TestClient, str],
) -> None:
    api, _ = gallery
    page = """query($first: Int!) { people(first: $first) { edges { node { id
        faces { id addedAt quality { score } } } } } }"""
    trips = {}
    for first in (1, 20):
        body = gql(api, page, first=first)
        assert "errors" not in body, body
        edges = body["data"]["people"]["edges"]
        assert [e["node"]["id"] for e in edges] == LISTED[:first]
        assert all(len(e["node"]["faces"]) == 1 for e in edges)
        trips[first] = body["extensions"]["cost"]["redisRoundTrips"]
    assert trips[20] == trips[1] == 3  # the page, its people, their faces
