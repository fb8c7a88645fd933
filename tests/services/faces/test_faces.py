"""identifyFace, enrollFace, deletePerson, person and people over GraphQL, on both layouts.

A real Redis per layout, and a real 3-shard cluster per layout (each person's keys share a
hash slot, people are spread over the shards); the real model on a handful of ORL faces
(s1..s4 enrolled with images 1-3; other images and people are the queries).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from lookalike.services.faces.store import Layout
from tests.conftest import API_KEY, error_codes, gql, redis_dump, sync_client
from tests.photos import (
    ENROLL,
    IDENTIFY,
    IDENTIFY_FACES,
    ORL,
    PERSON,
    PREFLIGHT,
    VERIFY,
    encoded,
    enrol_people,
    group,
    orl,
    orl_image,
    phone_photo,
    send,
)
from tests.redis_cluster import running_redis

ENROLLED = ("s1", "s2", "s3", "s4")
MAX_UPLOAD = 2 * 1024 * 1024
MAX_PIXELS = 13_000_000  # a 12-megapixel phone photo fits
IDENTIFY_KEY = "identify-only-key-for-the-app"


def identify(api: TestClient, image: bytes, k: int = 3) -> dict[str, Any]:
    body = send(api, IDENTIFY, image, k=k).json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["identifyFace"]
    return result


@pytest.fixture(
    scope="module",
    params=[("hash", "redis"), ("json", "redis"), ("hash", "cluster"), ("json", "cluster")],
    ids=lambda param: "-".join(param),
)
def face_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    layout, backend = request.param
    with running_redis(backend, tmp_path_factory.mktemp(f"faces-{layout}-{backend}")) as url:
        yield from _face_api(layout, url, tmp_path_factory)


def _face_api(
    layout: Layout, url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    settings = Settings(
        redis_url=url,
        data_dir=tmp_path_factory.mktemp("data"),
        face_layout=layout,
        max_upload_bytes=MAX_UPLOAD,
        max_image_pixels=MAX_PIXELS,
        api_keys=[SecretStr(API_KEY)],
        identify_keys=[SecretStr(IDENTIFY_KEY)],
        face_workers=2,  # the gallery is enrolled two people at a time
    )
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(settings), headers=headers) as api:
        photos = {person: [orl(person, number) for number in (1, 2, 3)] for person in ENROLLED}
        enrol_people(api, photos, name_of=lambda person: f"Person {person}")
        yield api, settings.redis_url or ""


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
    face = Image.open(ORL / "s2" / "7.png").convert("L").resize((276, 336))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels lie on their side
    sixteen = Image.fromarray(np.asarray(face, dtype=np.uint16) * 257)
    colour = face.convert("RGB")
    on_its_side = colour.transpose(Image.Transpose.ROTATE_90)
    someone_else = orl_image("s3", 7).resize((276, 336))
    return {
        # as phones save them: an iPhone's HEIC (the rotation stored as HEIF's own
        # transform, from the EXIF orientation), a camera's multi-picture JPEG whose second
        # picture is another (enrolled) person, AVIF with an EXIF orientation
        "heic": encoded(colour, "HEIF", quality=80),
        "heic-rotated": encoded(on_its_side, "HEIF", quality=80, exif=exif.tobytes()),
        "heic-grayscale": encoded(face, "HEIF", quality=80),
        "mpo": encoded(colour, "MPO", quality=90, save_all=True, append_images=[someone_else]),
        "mpo-rotated": encoded(
            on_its_side,
            "MPO",
            quality=90,
            exif=exif.tobytes(),
            save_all=True,
            append_images=[someone_else],
        ),
        "avif-rotated": encoded(on_its_side, "AVIF", quality=80, exif=exif.tobytes()),
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
    image = _photo_variants()[variant]
    assert Image.open(io.BytesIO(image)).format in {"JPEG", "MPO", "HEIF", "AVIF", "WEBP",
                                                    "PNG", "BMP"}  # fmt: skip
    found = identify(api, image)
    assert found["facesDetected"] == 1
    assert found["person"] is not None
    assert found["person"]["id"] == "s2"
    assert found["candidates"][0]["person"]["id"] == "s2"


def test_of_several_faces_the_largest_is_identified(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    big = Image.open(ORL / "s2" / "7.png").convert("L").resize((184, 224))
    small = Image.open(ORL / "s5" / "7.png").convert("L")
    group = Image.new("L", (360, 270), 200)
    group.paste(big, (20, 20))
    alone = group.copy()
    group.paste(small, (240, 20))
    both = identify(api, encoded(group, "PNG"))
    only_big = identify(api, encoded(alone, "PNG"))
    assert (both["facesDetected"], only_big["facesDetected"]) == (2, 1)
    assert both["candidates"] == only_big["candidates"]


def test_identify_faces_names_every_face_on_every_backend(face_api: tuple[TestClient, str]) -> None:
    """Every face's KNN in one pipeline (nearest_many): on a cluster too, and in both layouts."""
    api, _ = face_api
    photo, pasted = group([("s3", 8), ("s9", 8), ("s2", 8)])
    body = send(api, IDENTIFY_FACES, encoded(photo, "PNG"), k=2).json()
    assert "errors" not in body, body
    found = {}
    for face in body["data"]["identifyFaces"]:
        centre = face["box"]["x"] + face["box"]["width"] / 2
        place = next(n for n, (x, _, w, _) in enumerate(pasted) if x <= centre <= x + w)
        found[place] = (face["person"] or {}).get("id")
        assert len(face["candidates"]) == 2
    assert found == {0: "s3", 1: None, 2: "s2"}


BAD_IMAGES = {
    "text": (b"this is not an image", "INVALID_IMAGE"),
    "gif": (encoded(Image.new("RGB", (64, 64)), "GIF"), "INVALID_IMAGE"),
    "truncated-png": (encoded(Image.new("RGB", (300, 300), "red"), "PNG")[:120], "INVALID_IMAGE"),
    "too-many-pixels": (encoded(Image.new("1", (4000, 4000)), "PNG"), "IMAGE_TOO_LARGE"),
    "truncated-heic": (encoded(Image.new("RGB", (300, 300), "red"), "HEIF")[:300], "INVALID_IMAGE"),
    "truncated-jpeg": (encoded(Image.new("RGB", (300, 300), "red"), "JPEG")[:200], "INVALID_IMAGE"),
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
        (ENROLL, {"id": "ok-id", "name": "a\u0000b"}),
        (ENROLL, {"id": "ok-id", "name": "bell\u0007"}),
        (ENROLL, {"id": "ok-id", "name": "next\u0085line"}),
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


def test_a_12_megapixel_phone_photo_gives_the_answer_of_the_face_cropped_by_hand(
    face_api: tuple[TestClient, str],
) -> None:
    api, _ = face_api
    photo = phone_photo("s2", 7)
    assert len(photo) < MAX_UPLOAD
    assert Image.open(io.BytesIO(photo)).size == (4032, 3024)
    big, cropped = identify(api, photo), identify(api, orl("s2", 7))
    assert big["facesDetected"] == 1
    assert big["person"] == cropped["person"] == {"id": "s2", "name": "Person s2", "faceCount": 3}
    assert [c["person"]["id"] for c in big["candidates"]] == [
        c["person"]["id"] for c in cropped["candidates"]
    ]
    assert abs(big["distance"] - cropped["distance"]) < 0.01


@pytest.mark.parametrize("angle", [25, -30, 40])
def test_a_head_tilted_past_what_the_detector_sees_is_found_and_named(
    face_api: tuple[TestClient, str], angle: int
) -> None:
    """OpenCV's cascade finds faces within about 15 degrees of upright (ORL's query photos
    turned 25 degrees: 15 of 40 found, 30: 5, 40: none); none of these is found upright, so
    the answer comes from the turned copies the model searches next (model.ROTATIONS)."""
    api, _ = face_api
    turned = (
        orl_image("s2", 7)
        .convert("RGB")
        .rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    )
    found = identify(api, encoded(turned, "JPEG", quality=90))
    assert found["facesDetected"] == 1
    assert found["person"] == {"id": "s2", "name": "Person s2", "faceCount": 3}


def test_a_tilted_12_megapixel_phone_photo_is_named(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    photo = Image.open(io.BytesIO(phone_photo("s2", 7))).rotate(
        30, Image.Resampling.BILINEAR, fillcolor=(128, 128, 128)
    )
    found = identify(api, encoded(photo, "JPEG", quality=85))
    assert found["person"] == {"id": "s2", "name": "Person s2", "faceCount": 3}


@pytest.mark.parametrize(
    "copy",
    ["jpeg-q75", "upscaled-x3", "upscaled-x3-jpeg", "in-a-12-megapixel-photo"],
)
def test_a_face_and_its_copy_are_the_same_face(face_api: tuple[TestClient, str], copy: str) -> None:
    """The distance between a photo and a re-encoded or resized copy of it is far below the
    threshold (it was 0.07-0.09 when the model got deepface's crop)."""
    api, _ = face_api
    face = orl_image("s9", 3)  # nobody enrolled has this face
    x3 = face.resize((276, 336), Image.Resampling.BICUBIC)
    copies = {
        "jpeg-q75": lambda: encoded(face, "JPEG", quality=75),
        "upscaled-x3": lambda: encoded(x3, "PNG"),
        "upscaled-x3-jpeg": lambda: encoded(x3, "JPEG", quality=90),
        "in-a-12-megapixel-photo": lambda: phone_photo("s9", 3, scale=8, seed=1),
    }
    enrolled = send(api, ENROLL, orl("s9", 3), id="copy-probe").json()
    assert "errors" not in enrolled, enrolled
    try:
        found = identify(api, copies[copy](), k=1)
        assert (found["person"] or {}).get("id") == "copy-probe"
        assert found["distance"] < 0.01
    finally:
        gql(api, 'mutation { deletePerson(id: "copy-probe") }')


def verify(api: TestClient, person_id: str, image: bytes) -> dict[str, Any]:
    return dict(send(api, VERIFY, image, id=person_id).json())


def test_verify_face_accepts_the_same_person(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    body = verify(api, "s2", orl("s2", 8))
    assert "errors" not in body, body
    found = body["data"]["verifyFace"]
    assert found["person"] == {"id": "s2", "name": "Person s2", "faceCount": 3}
    assert found["match"] is True
    assert found["distance"] < found["threshold"] == 0.05
    assert found["facesDetected"] == 1


def test_verify_face_compares_with_that_person_only(face_api: tuple[TestClient, str]) -> None:
    """Another enrolled person's photo: no match, and the distance is the one to the claimed
    person's nearest face (as identifyFace ranks it), not to the photo's own person."""
    api, _ = face_api
    body = verify(api, "s2", orl("s3", 8))
    assert "errors" not in body, body
    found = body["data"]["verifyFace"]
    assert found["match"] is False
    assert found["person"]["id"] == "s2"
    everyone = identify(api, orl("s3", 8), k=20)
    assert everyone["person"]["id"] == "s3"
    to_s2 = next(c["distance"] for c in everyone["candidates"] if c["person"]["id"] == "s2")
    assert found["distance"] == pytest.approx(to_s2, abs=1e-5)
    assert found["distance"] > everyone["distance"]


@pytest.mark.parametrize(
    ("person_id", "image", "code"),
    [
        ("nobody", "s2", "PERSON_NOT_FOUND"),
        ("S2", "s2", "PERSON_NOT_FOUND"),  # ids are exact
        ("not an id", "s2", "BAD_USER_INPUT"),
        ("s2", "no-face", "NO_FACE"),
        ("s2", "text", "INVALID_IMAGE"),
        ("s2", "too-many-pixels", "IMAGE_TOO_LARGE"),
    ],
)
def test_verify_face_errors_are_those_of_identify(
    face_api: tuple[TestClient, str], person_id: str, image: str, code: str
) -> None:
    api, redis_url = face_api
    before = redis_dump(redis_url, "face*")
    photo = orl("s2", 8) if image == "s2" else BAD_IMAGES[image][0]
    body = verify(api, person_id, photo)
    assert body.get("data") is None
    assert error_codes(body) == [code]
    if code in ("PERSON_NOT_FOUND", "BAD_USER_INPUT"):
        assert body["extensions"]["cost"]["redisRoundTrips"] <= 1  # refused before the model
    assert redis_dump(redis_url, "face*") == before


def test_ids_that_differ_in_case_or_share_a_prefix_are_different_people(
    face_api: tuple[TestClient, str],
) -> None:
    api, redis_url = face_api
    people = {"a": "s5", "a-1": "s6", "A": "s7", "PROBE-A": "s8", "probe-a": "s10"}
    photos = {person_id: [orl(source, 1), orl(source, 2)] for person_id, source in people.items()}
    for person_id, answers in enrol_people(api, photos).items():
        assert [answer["faceCount"] for answer in answers] == [1, 2], (person_id, answers)
    try:
        for gone in ("a", "probe-a"):
            assert gql(api, f'mutation {{ deletePerson(id: "{gone}") }}')["data"] == {
                "deletePerson": True
            }
        left = {p: s for p, s in people.items() if p not in ("a", "probe-a")}
        for person_id, source in left.items():
            assert gql(api, PERSON, id=person_id)["data"]["person"]["faceCount"] == 2
            found = identify(api, orl(source, 9))
            assert (found["person"] or {}).get("id") == person_id
            assert verify(api, person_id, orl(source, 9))["data"]["verifyFace"]["match"] is True
        for gone in ("a", "probe-a"):
            assert error_codes(gql(api, PERSON, id=gone)) == ["PERSON_NOT_FOUND"]
        keys = [key.decode() for key in redis_dump(redis_url, "face*")]
        assert not [k for k in keys if "{a}" in k or "{probe-a}" in k]
        for person_id in left:  # a record and two faces each, all under the person's tag
            assert sum(1 for k in keys if f"{{{person_id}}}" in k) in (1, 3)
    finally:
        for person_id in people:
            gql(api, f'mutation {{ deletePerson(id: "{person_id}") }}')


def test_every_key_of_a_person_shares_one_hash_tag(face_api: tuple[TestClient, str]) -> None:
    _, redis_url = face_api
    keys = [k.decode() for k in redis_dump(redis_url, "face*") if not k.startswith(b"faces:")]
    assert keys
    for key in keys:
        assert re.fullmatch(r"face(-person)?:\{[A-Za-z0-9_-]+\}(:[0-9a-f]{32})?", key), key


def test_listing_tolerates_a_registry_left_behind_by_a_crash(
    face_api: tuple[TestClient, str],
) -> None:
    """The registry is written after a person's own transaction: a crash in between leaves
    an id listed with no person (listing skips it), or a person not listed (still found by
    id and by photo, and listed again at the next enrolment)."""
    api, redis_url = face_api
    client = sync_client(redis_url)
    page = "{ people(first: 10) { edges { node { id faceCount } } } }"
    try:
        client.zadd("faces:people", {"ghost": 0})
        listed = [e["node"]["id"] for e in gql(api, page)["data"]["people"]["edges"]]
        assert listed == list(ENROLLED)
        client.zrem("faces:people", "s3")
        listed = [e["node"]["id"] for e in gql(api, page)["data"]["people"]["edges"]]
        assert listed == ["s1", "s2", "s4"]
        assert gql(api, PERSON, id="s3")["data"]["person"]["faceCount"] == 3
        assert identify(api, orl("s3", 9))["person"]["id"] == "s3"
        again = send(api, ENROLL, orl("s3", 1), id="s3").json()["data"]["enrollFace"]
        assert again["faceCount"] == 3  # the same photo: nothing added, but listed again
        listed = [e["node"]["id"] for e in gql(api, page)["data"]["people"]["edges"]]
        assert listed == list(ENROLLED)
        assert gql(api, 'mutation { deletePerson(id: "ghost") }')["data"] == {"deletePerson": False}
        assert client.zscore("faces:people", "ghost") is None  # unlisted by the attempt
    finally:
        client.zrem("faces:people", "ghost")
        client.zadd("faces:people", {"s3": 0})
        client.close()


def with_key(api: TestClient, key: str | None) -> TestClient:
    """A client of the same running app that sends this key (or none)."""
    other = TestClient(api.app, headers={"Authorization": f"Bearer {key}"} if key else {})
    other.portal = api.portal
    return other


def upload(
    api: TestClient, query: str, variables: dict[str, Any], operation: str | None = None
) -> dict[str, Any]:
    """A multipart request whose every ``$image...`` variable gets an ORL photo."""
    names = [name for name in ("image", "image2") if f"${name}" in query]
    if not names:
        return gql(api, query, **variables)
    operations = {"query": query, "variables": {**variables, **dict.fromkeys(names)}}
    if operation:
        operations["operationName"] = operation
    response = api.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({str(n): [f"variables.{name}"] for n, name in enumerate(names)}),
        },
        files={str(n): ("photo", orl("s2", 8), "image/png") for n in range(len(names))},
        headers=PREFLIGHT,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# Every mutation of the schema that changes data, as an identify-only key might try it.
CHANGES = {
    "enrollFace": 'mutation($image: Upload!) { enrollFace(personId: "s1", image: $image) { id } }',
    "deletePerson": 'mutation { deletePerson(id: "s1") }',
    "deleteFace": 'mutation { deleteFace(id: "ZmFjZTpzMTp4") { id } }',
    "aliased": 'mutation { whoIsIt: deletePerson(id: "s1") }',
    "beside identify": """mutation($image: Upload!, $image2: Upload!) {
        identifyFace(image: $image) { facesDetected }
        enrollFace(personId: "s1", image: $image2) { id } }""",
    "aliases mixed": """mutation($image: Upload!) {
        a: verifyFace(personId: "s2", image: $image) { match }
        b: deletePerson(id: "s1") c: identifyFace(image: $image) { facesDetected } }""",
    "fragment": """mutation { ...Forget }
        fragment Forget on Mutation { deletePerson(id: "s1") }""",
    "nested fragments": """mutation { ...A } fragment A on Mutation { ...B }
        fragment B on Mutation { ... on Mutation { gone: deletePerson(id: "s1") } }""",
    "skipped": 'mutation { deletePerson(id: "s1") @skip(if: true) __typename }',
    "second operation": """mutation Who($image: Upload!) {
        identifyFace(image: $image) { facesDetected } }
        mutation Forget { deletePerson(id: "s1") }""",
    "second operation, the other one named": """mutation Who($image: Upload!) {
        identifyFace(image: $image) { facesDetected } }
        mutation Forget { deletePerson(id: "s1") }""",
}
OPERATION_NAMES = {"second operation, the other one named": "Who"}


def test_every_mutation_that_changes_data_is_covered() -> None:
    """A mutation added later must be added to CHANGES (and so be tried with the key)."""
    from graphql import build_schema

    from lookalike.schema.execution.schema import sdl

    mutation = build_schema(sdl()).mutation_type
    assert mutation is not None
    tried = {name for name in CHANGES if name in mutation.fields}
    # the catalogue's changes: every key kind in tests/schema/types/test_book_changes.py
    books = {"upsertBooks", "deleteBooks"}
    assert set(mutation.fields) - {"identifyFace", "identifyFaces", "verifyFace"} - books == tried


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_an_identify_key_may_not_change_data(face_api: tuple[TestClient, str], change: str) -> None:
    api, redis_url = face_api
    before = redis_dump(redis_url, "face*")
    body = upload(with_key(api, IDENTIFY_KEY), CHANGES[change], {}, OPERATION_NAMES.get(change))
    assert body.get("data") is None  # refused before execution: no data at all
    if change == "second operation":  # several operations and none named: no operation
        assert error_codes(body) == ["OPERATION_RESOLUTION_FAILURE"]
    else:
        assert error_codes(body) == ["FORBIDDEN"]
        assert "only identify and verify" in body["errors"][0]["message"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0
    assert redis_dump(redis_url, "face*") == before


def test_an_identify_key_identifies_and_verifies(face_api: tuple[TestClient, str]) -> None:
    api, redis_url = face_api
    before = redis_dump(redis_url, "face*")
    app = with_key(api, IDENTIFY_KEY)
    both = """mutation($image: Upload!) { who: identifyFace(image: $image) { person { id } }
        check: verifyFace(personId: "s2", image: $image) { match } __typename
        every: identifyFaces(image: $image, maxFaces: 2) { person { id } } }"""
    body = upload(app, both, {})
    assert "errors" not in body, body
    assert body["data"]["who"] == {"person": {"id": "s2"}}
    assert body["data"]["every"] == [{"person": {"id": "s2"}}]
    assert body["data"]["check"] == {"match": True}
    named = """query Who { person(id: "s2") { id } }
        mutation Check($image: Upload!) { verifyFace(personId: "s2", image: $image) { match } }"""
    body = upload(app, named, {}, "Check")
    assert body["data"] == {"verifyFace": {"match": True}}
    assert gql(app, PERSON, id="s2")["data"]["person"]["faceCount"] == 3  # queries: open
    assert redis_dump(redis_url, "face*") == before


@pytest.mark.parametrize(
    ("key", "code"), [(None, "UNAUTHENTICATED"), (IDENTIFY_KEY.upper(), "FORBIDDEN")]
)
def test_identify_needs_a_key_too(
    face_api: tuple[TestClient, str], key: str | None, code: str
) -> None:
    api, _ = face_api
    body = upload(with_key(api, key), IDENTIFY, {"k": 1})
    assert error_codes(body) == [code]


def test_a_full_key_keeps_every_right(face_api: tuple[TestClient, str]) -> None:
    api, _ = face_api
    body = upload(api, CHANGES["beside identify"], {})
    assert "errors" not in body, body
    assert body["data"]["enrollFace"] == {"id": "s1"}  # s2's photo, enrolled as s1 ...
    gql(api, 'mutation { deletePerson(id: "s1") }')  # ... so s1 starts over
    for number in (1, 2, 3):
        send(api, ENROLL, orl("s1", number), id="s1", name="Person s1")
    assert gql(api, PERSON, id="s1")["data"]["person"]["faceCount"] == 3


def test_one_file_mapped_to_two_variables_is_read_by_both(
    face_api: tuple[TestClient, str],
) -> None:
    """Apollo's upload client sends a file used twice once, mapped to both variables."""
    api, _ = face_api
    query = """mutation($a: Upload!, $b: Upload!) { identifyFace(image: $a) { person { id } }
        verifyFace(personId: "s2", image: $b) { match } }"""
    operations = {"query": query, "variables": {"a": None, "b": None}}
    response = api.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.a", "variables.b"]}),
        },
        files={"0": ("photo", orl("s2", 8), "image/png")},
        headers=PREFLIGHT,
    )
    assert response.json()["data"] == {
        "identifyFace": {"person": {"id": "s2"}},
        "verifyFace": {"match": True},
    }
