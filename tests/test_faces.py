"""identifyFace, enrollFace, deletePerson, person and people over GraphQL, on both layouts.

A real Redis per layout, the real model on a handful of ORL faces (s1..s4 enrolled with
images 1-3; other images and people are the queries).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.embedded_redis import EmbeddedRedis
from lookalike.services.settings import Settings
from tests.conftest import API_KEY, error_codes, gql, redis_dump
from tests.photos import ENROLL, IDENTIFY, ORL, PERSON, PREFLIGHT, encoded, orl, send

ENROLLED = ("s1", "s2", "s3", "s4")
MAX_UPLOAD = 2 * 1024 * 1024
MAX_PIXELS = 4_000_000


def identify(api: TestClient, image: bytes, k: int = 3) -> dict[str, Any]:
    body = send(api, IDENTIFY, image, k=k).json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["identifyFace"]
    return result


@pytest.fixture(scope="module", params=["hash", "json"])
def face_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    layout = request.param
    server = EmbeddedRedis(tmp_path_factory.mktemp(f"faces-{layout}"))
    settings = Settings(
        redis_url=server.start(),
        data_dir=tmp_path_factory.mktemp("data"),
        face_layout=layout,
        max_upload_bytes=MAX_UPLOAD,
        max_image_pixels=MAX_PIXELS,
        api_keys=[SecretStr(API_KEY)],
    )
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with TestClient(create_app(settings), headers=headers) as api:
            for person in ENROLLED:
                for number in (1, 2, 3):
                    body = send(
                        api, ENROLL, orl(person, number), id=person, name=f"Person {person}"
                    )
                    assert "errors" not in body.json(), body.json()
            yield api, settings.redis_url or ""
    finally:
        server.stop()


def test_identifies_an_enrolled_person_from_another_photo(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    found = identify(api, orl("s2", 7))
    assert found["person"] == {"id": "s2", "name": "Person s2", "faceCount": 3}
    assert found["distance"] < found["threshold"] == 0.05
    assert found["facesDetected"] == 1
    assert "Dlib" in found["model"]
    candidates = found["candidates"]
    assert candidates[0]["person"]["id"] == "s2"
    assert len({c["person"]["id"] for c in candidates}) == 3
    assert [c["distance"] for c in candidates] == sorted(c["distance"] for c in candidates)
    assert candidates[0]["distance"] == found["distance"]


def test_a_stranger_is_unknown_but_still_gets_candidates(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    found = identify(api, orl("s9", 7), k=2)
    assert found["person"] is None
    assert found["distance"] >= found["threshold"]
    assert len(found["candidates"]) == 2
    assert {c["person"]["id"] for c in found["candidates"]} <= set(ENROLLED)


def test_k_counts_distinct_people_up_to_everyone_enrolled(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    assert len(identify(api, orl("s3", 8), k=1)["candidates"]) == 1
    everyone = identify(api, orl("s3", 8), k=20)["candidates"]
    assert sorted(c["person"]["id"] for c in everyone) == list(ENROLLED)


def test_enrolling_the_same_photo_twice_adds_nothing(face_api: tuple[TestClient, str]) -> None:
    api, redis_url = face_api
    before = redis_dump(redis_url, "face*")
    again = send(api, ENROLL, orl("s1", 1), id="s1").json()["data"]["enrollFace"]
    assert again == {"id": "s1", "name": "Person s1", "faceCount": 3}
    assert redis_dump(redis_url, "face*") == before


def test_delete_person_forgets_every_face(face_api: tuple[TestClient, str]) -> None:
    api, redis_url = face_api
    for number in (1, 2):
        send(api, ENROLL, orl("s6", number), id="temp-6")
    assert identify(api, orl("s6", 9))["candidates"][0]["person"]["id"] == "temp-6"

    assert gql(api, 'mutation { deletePerson(id: "temp-6") }')["data"] == {"deletePerson": True}
    assert not [key for key in redis_dump(redis_url, "face*") if b"temp-6" in key]
    gone = gql(api, PERSON, id="temp-6")
    assert gone["data"] == {"person": None}
    assert error_codes(gone) == ["PERSON_NOT_FOUND"]
    assert "temp-6" not in {
        c["person"]["id"] for c in identify(api, orl("s6", 9), 20)["candidates"]
    }
    assert gql(api, 'mutation { deletePerson(id: "temp-6") }')["data"] == {"deletePerson": False}


def test_people_pages_in_id_order_with_cursors(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    page = """query($after: String) { people(first: 3, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } edges { node { id faceCount } } } }"""
    first = gql(api, page)["data"]["people"]
    assert first["totalCount"] == 4
    assert [e["node"]["id"] for e in first["edges"]] == ["s1", "s2", "s3"]
    rest = gql(api, page, after=first["pageInfo"]["endCursor"])["data"]["people"]
    assert [e["node"] for e in rest["edges"]] == [{"id": "s4", "faceCount": 3}]
    assert rest["pageInfo"]["hasNextPage"] is False
    assert error_codes(gql(api, page, after="bm9wZQ==")) == ["BAD_USER_INPUT"]


def _photo_variants() -> dict[str, bytes]:
    face = Image.open(ORL / "s2" / "7.bmp").convert("L").resize((276, 336))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels lie on their side
    sixteen = Image.fromarray(np.asarray(face, dtype=np.uint16) * 257)
    return {
        "jpeg": encoded(face.convert("RGB"), "JPEG", quality=92),
        "png-grayscale": encoded(face, "PNG"),
        "bmp": encoded(face.convert("RGB"), "BMP"),
        "webp": encoded(face.convert("RGB"), "WEBP", quality=90),
        "png-rgba": encoded(face.convert("RGBA"), "PNG"),
        "png-palette": encoded(
            face.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG"
        ),
        "png-16-bit": encoded(sixteen, "PNG"),
        "jpeg-exif-rotated": encoded(
            face.convert("RGB").transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes()
        ),
    }


@pytest.mark.parametrize("variant", sorted(_photo_variants()))
def test_every_photo_kind_is_read_as_the_same_face(
    face_api: tuple[TestClient, str], variant: str
) -> None:
    api, _ = face_api
    found = identify(api, _photo_variants()[variant])
    assert found["facesDetected"] == 1
    assert found["candidates"][0]["person"]["id"] == "s2"


def test_of_several_faces_the_largest_is_identified(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    big = Image.open(ORL / "s2" / "7.bmp").convert("L").resize((184, 224))
    small = Image.open(ORL / "s5" / "7.bmp").convert("L")
    group = Image.new("L", (360, 270), 200)
    group.paste(big, (20, 20))
    alone = group.copy()
    group.paste(small, (240, 20))
    both = identify(api, encoded(group, "PNG"))
    only_big = identify(api, encoded(alone, "PNG"))
    assert (both["facesDetected"], only_big["facesDetected"]) == (2, 1)
    assert both["candidates"] == only_big["candidates"]


BAD_IMAGES = {
    "text": (b"this is not an image", "INVALID_IMAGE"),
    "gif": (encoded(Image.new("RGB", (64, 64)), "GIF"), "INVALID_IMAGE"),
    "truncated-png": (encoded(Image.new("RGB", (300, 300), "red"), "PNG")[:120], "INVALID_IMAGE"),
    "too-many-pixels": (encoded(Image.new("1", (3000, 3000)), "PNG"), "IMAGE_TOO_LARGE"),
    "no-face": (encoded(Image.new("RGB", (200, 200), (128, 128, 128)), "PNG"), "NO_FACE"),
}


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
@pytest.mark.parametrize("operation", ["identify", "enroll"])
def test_a_bad_photo_gets_its_code_and_writes_nothing(
    face_api: tuple[TestClient, str], kind: str, operation: str
) -> None:
    api, redis_url = face_api
    image, code = BAD_IMAGES[kind]
    before = redis_dump(redis_url, "face*")
    if operation == "identify":
        body = send(api, IDENTIFY, image, k=3).json()
    else:
        body = send(api, ENROLL, image, id="s1").json()
    assert error_codes(body) == [code]
    assert redis_dump(redis_url, "face*") == before


@pytest.mark.parametrize("streamed", [False, True])
def test_an_upload_over_the_limit_is_refused_while_it_arrives(
    face_api: tuple[TestClient, str], streamed: bool
) -> None:
    api, redis_url = face_api
    before = redis_dump(redis_url, "face*")
    boundary = "lookalike-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
        + json.dumps({"query": IDENTIFY, "variables": {"image": None, "k": 3}})
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n'
        + '{"0": ["variables.image"]}'
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="0"; filename="big.bmp"\r\n'
        + "Content-Type: image/bmp\r\n\r\n"
    ).encode()
    chunks = [head] + [b"\0" * 65536] * (MAX_UPLOAD // 65536 + 4)
    headers = {"content-type": f"multipart/form-data; boundary={boundary}", **PREFLIGHT}
    content: Any = iter(chunks) if streamed else b"".join(chunks)
    response = api.post("/graphql", content=content, headers=headers)
    assert response.status_code == 413
    assert error_codes(response.json()) == ["PAYLOAD_TOO_LARGE"]
    assert redis_dump(redis_url, "face*") == before


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (IDENTIFY, {"k": 0}),
        (IDENTIFY, {"k": 21}),
        (ENROLL, {"id": "has space"}),
        (ENROLL, {"id": ""}),
        (ENROLL, {"id": "x" * 65}),
        (ENROLL, {"id": "a}|@id:{b"}),
        (ENROLL, {"id": "ok-id", "name": " "}),
    ],
)
def test_bad_arguments_are_bad_user_input_and_write_nothing(
    face_api: tuple[TestClient, str], query: str, variables: dict[str, Any]
) -> None:
    api, redis_url = face_api
    before = redis_dump(redis_url, "face*")
    body = send(api, query, orl("s1", 4), **variables).json()
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert redis_dump(redis_url, "face*") == before


def test_multipart_without_a_preflight_header_is_refused(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    response = send(api, IDENTIFY, orl("s2", 7), headers={}, k=3)
    assert response.status_code == 400
    assert "Apollo-Require-Preflight" in response.json()["errors"][0]["message"]


def test_unknown_person_is_null_with_person_not_found(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    body = gql(api, PERSON, id="nobody")
    assert body["data"] == {"person": None}
    assert error_codes(body) == ["PERSON_NOT_FOUND"]
    known = gql(api, PERSON, id="s3")["data"]["person"]
    assert known == {"id": "s3", "name": "Person s3", "faceCount": 3}
