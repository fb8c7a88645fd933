"""identifyFaces (every face of a photo), face quality, and enrolment that keeps the gallery
clean, over GraphQL on a real Redis (both layouts) with the real model.

s1, s2 and s3 are enrolled from images 1-3; s9 and s10 are strangers. A group photo is made
of ORL faces pasted in a row, so where each face is, and who it is, is known.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from lookalike.services.faces.store import Layout
from lookalike.services.redis.embedded import EmbeddedRedis
from tests.conftest import API_KEY, error_codes, gql, redis_dump
from tests.photos import (
    ENROLL,
    ENROLL_INDEX,
    IDENTIFY,
    IDENTIFY_FACES,
    VERIFY,
    Rect,
    encoded,
    enrol_people,
    group,
    orl,
    orl_image,
    send,
)

ENROLLED = ("s1", "s2", "s3")
MAX_FACES = 10  # LOOKALIKE_FACE_MAX_FACES here: the default maxFaces
MAX_COST = 25_000  # takes maxFaces 11 (refused by the setting, not the cost), not 2 x 6 faces
# Enrolled and strangers in turn, so that no name can come from a face's place in the row.
ROW = [("s1", 7), ("s9", 7), ("s2", 7), ("s10", 7), ("s3", 7)]
ROTATIONS = {  # EXIF orientation -> how to store the pixels so that a viewer shows them upright
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.fixture(scope="module", params=["hash", "json"])
def faces_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str, Layout]]:
    layout: Layout = request.param
    with contextlib.ExitStack() as stack:
        server = EmbeddedRedis(tmp_path_factory.mktemp(f"identify-faces-{layout}"))
        url = server.start()
        stack.callback(server.stop)
        settings = Settings(
            redis_url=url,
            data_dir=tmp_path_factory.mktemp("data"),
            face_layout=layout,
            api_keys=[SecretStr(API_KEY)],
            face_max_faces=MAX_FACES,
            max_query_cost=MAX_COST,
            face_workers=2,  # the gallery is enrolled two people at a time
        )
        headers = {"Authorization": f"Bearer {API_KEY}"}
        api = stack.enter_context(TestClient(create_app(settings), headers=headers))
        enrol_people(api, {person: [orl(person, n) for n in (1, 2, 3)] for person in ENROLLED})
        yield api, url, layout


def identify_faces(api: TestClient, image: bytes, **variables: Any) -> list[dict[str, Any]]:
    body = send(api, IDENTIFY_FACES, image, **variables).json()
    assert "errors" not in body, body["errors"]
    faces: list[dict[str, Any]] = body["data"]["identifyFaces"]
    return faces


def where(face: dict[str, Any], pasted: list[Rect]) -> int:
    """Which pasted face a returned box lies on: its centre inside the pasted rectangle, and
    the box within it give or take a sixth of its width (Haar's boxes are square)."""
    box = face["box"]
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    on = [n for n, (x, y, w, h) in enumerate(pasted) if x <= cx <= x + w and y <= cy <= y + h]
    assert len(on) == 1, (box, pasted)
    x, y, w, h = pasted[on[0]]
    slack = w / 6
    assert x - slack <= box["x"], (box, pasted[on[0]])
    assert box["x"] + box["width"] <= x + w + slack, (box, pasted[on[0]])
    assert y - slack <= box["y"], (box, pasted[on[0]])
    assert box["y"] + box["height"] <= y + h + slack, (box, pasted[on[0]])
    assert box["width"] >= w / 2, (box, pasted[on[0]])
    return on[0]


def names(faces: list[dict[str, Any]], pasted: list[Rect]) -> dict[int, str | None]:
    """The person named on each pasted face."""
    found = {where(face, pasted): (face["person"] or {}).get("id") for face in faces}
    assert len(found) == len(faces)  # no pasted face got two boxes
    return found


def assert_largest_first(faces: list[dict[str, Any]]) -> None:
    areas = [face["box"]["width"] * face["box"]["height"] for face in faces]
    assert areas == sorted(areas, reverse=True)


def test_a_group_photo_names_each_enrolled_face_and_leaves_strangers_unknown(
    faces_api: tuple[TestClient, str, Layout],
) -> None:
    api, _, _ = faces_api
    photo, pasted = group(ROW)
    faces = identify_faces(api, encoded(photo, "PNG"))
    assert len(faces) == 5
    assert names(faces, pasted) == {0: "s1", 1: None, 2: "s2", 3: None, 4: "s3"}
    assert_largest_first(faces)
    for face in faces:
        assert face["quality"]["usable"] is True
        assert face["quality"]["reasons"] == []
        assert len(face["candidates"]) == 3
        assert face["distance"] == face["candidates"][0]["distance"]
        if face["person"] is not None:
            assert face["candidates"][0]["person"] == face["person"]
            assert face["distance"] < 0.05
        else:
            assert face["distance"] >= 0.05


def test_five_faces_take_the_redis_round_trips_of_one(
    faces_api: tuple[TestClient, str, Layout],
) -> None:
    """Every face's KNN goes in one round trip, and every candidate person in one more."""
    api, _, _ = faces_api
    photo, _ = group(ROW)
    one = send(api, IDENTIFY_FACES, encoded(photo.crop((0, 0, 264, 304)), "PNG")).json()
    five = send(api, IDENTIFY_FACES, encoded(photo, "PNG")).json()
    assert (len(one["data"]["identifyFaces"]), len(five["data"]["identifyFaces"])) == (1, 5)
    trips = one["extensions"]["cost"]["redisRoundTrips"]
    assert five["extensions"]["cost"]["redisRoundTrips"] == trips <= 2


@pytest.mark.parametrize("faces_api", ["hash"], indirect=True)  # a photo reads alike in both
@pytest.mark.parametrize("orientation", sorted(ROTATIONS))
@pytest.mark.parametrize("kind", ["JPEG", "HEIF"])
def test_a_rotated_photo_gives_boxes_in_the_upright_photo(
    faces_api: tuple[TestClient, str, Layout], kind: str, orientation: int
) -> None:
    """Stored on its side (or mirrored) with an EXIF orientation; pillow-heif writes a HEIC's
    as HEIF's own transforms (irot, imir)."""
    api, _, _ = faces_api
    photo, pasted = group(ROW)
    turn = ROTATIONS[orientation]
    stored = photo.transpose(turn) if turn is not None else photo
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = encoded(stored, kind, quality=92, exif=exif.tobytes())
    if kind == "HEIF" and orientation != 1:
        assert b"irot" in image or b"imir" in image
    faces = identify_faces(api, image)
    assert names(faces, pasted) == {0: "s1", 1: None, 2: "s2", 3: None, 4: "s3"}


def test_the_same_person_twice_is_named_once(
    faces_api: tuple[TestClient, str, Layout],
) -> None:
    """Two photos of s2 in one: both match s2, the nearer keeps the name, the other gets its
    next candidate closer than the threshold (none here: the others are far)."""
    api, _, _ = faces_api
    photo, pasted = group([("s2", 8), ("s9", 8), ("s2", 9)])
    faces = identify_faces(api, encoded(photo, "PNG"))
    by_place = {where(face, pasted): face for face in faces}
    assert sorted(by_place) == [0, 1, 2]
    to_s2 = {
        n: next(c["distance"] for c in by_place[n]["candidates"] if c["person"]["id"] == "s2")
        for n in (0, 2)
    }
    assert max(to_s2.values()) < 0.05  # both are s2 by distance: only the rule tells them apart
    winner, other = sorted(to_s2, key=lambda n: to_s2[n])
    assert by_place[winner]["person"] == {"id": "s2"}
    assert by_place[winner]["distance"] == to_s2[winner]
    next_free = [
        c
        for c in by_place[other]["candidates"]
        if c["person"]["id"] != "s2" and c["distance"] < 0.05
    ]
    assert by_place[other]["person"] == (next_free[0]["person"] if next_free else None)
    assert by_place[other]["person"] is None
    assert by_place[1]["person"] is None


@pytest.mark.parametrize("max_faces", [1, 2, 4])
def test_max_faces_keeps_the_largest(
    faces_api: tuple[TestClient, str, Layout], max_faces: int
) -> None:
    api, _, _ = faces_api
    photo, pasted = group(ROW, sizes=[0.7, 1.0, 0.85, 1.2, 0.6])
    image = encoded(photo, "PNG")
    every = identify_faces(api, image)
    assert len(every) == 5
    assert_largest_first(every)
    assert [where(face, pasted) for face in every] == [3, 1, 2, 0, 4]  # by pasted size
    some = identify_faces(api, image, maxFaces=max_faces)
    assert [face["box"] for face in some] == [face["box"] for face in every[:max_faces]]


@pytest.mark.parametrize(
    "variables",
    [{"maxFaces": 0}, {"maxFaces": -1}, {"maxFaces": MAX_FACES + 1}, {"k": 0}, {"k": 21}],
    ids=["maxFaces-0", "maxFaces-negative", "maxFaces-over-the-setting", "k-0", "k-21"],
)
def test_max_faces_out_of_bounds_is_bad_user_input(
    faces_api: tuple[TestClient, str, Layout], variables: dict[str, Any]
) -> None:
    api, url, _ = faces_api
    before = redis_dump(url, "face*")
    body = send(api, IDENTIFY_FACES, orl("s1", 7), **variables).json()
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["argument"] == next(iter(variables))
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0  # refused before Redis
    assert redis_dump(url, "face*") == before


# Two identifyFaces of n faces each: 2 x 5 faces fit MAX_COST, 2 x 6 do not; two photos of
# one face each would cost a fifth of it.
PRICED = {
    "literal": ("mutation($image: Upload!) { a: identifyFaces(image: $image, maxFaces: {n}) "
                "{ box { x } } b: identifyFaces(image: $image, maxFaces: {n}) { box { x } } }",
                {}),
    "variable": ("mutation($image: Upload!, $m: Int!) { a: identifyFaces(image: $image, "
                 "maxFaces: $m) { box { x } } b: identifyFaces(image: $image, maxFaces: $m) "
                 "{ box { x } } }", {"m": "{n}"}),
    "variable default": ("mutation($image: Upload!, $m: Int = {n}) { a: identifyFaces("
                         "image: $image, maxFaces: $m) { box { x } } b: identifyFaces("
                         "image: $image, maxFaces: $m) { box { x } } }", {}),
    "fragments": ("mutation($image: Upload!) { ...A ...B } fragment A on Mutation { "
                  "a: identifyFaces(image: $image, maxFaces: {n}) { box { x } } } "
                  "fragment B on Mutation { ... on Mutation { b: identifyFaces(image: $image, "
                  "maxFaces: {n}) { box { x } } } }", {}),
}  # fmt: skip


@pytest.mark.parametrize("faces_api", ["hash"], indirect=True)  # priced before any layout
@pytest.mark.parametrize("way", sorted(PRICED))
def test_the_cost_limit_prices_every_face(
    faces_api: tuple[TestClient, str, Layout], way: str
) -> None:
    api, url, _ = faces_api
    query, variables = PRICED[way]
    image = orl("s1", 7)

    def run(n: int) -> dict[str, Any]:
        values: dict[str, Any] = {k: int(v.format(n=n)) for k, v in variables.items()}
        body: dict[str, Any] = send(api, query.replace("{n}", str(n)), image, **values).json()
        return body

    allowed = run(5)
    assert "errors" not in allowed, allowed
    assert len(allowed["data"]["a"]) == len(allowed["data"]["b"]) == 1
    before = redis_dump(url, "face*")
    refused = run(6)
    assert error_codes(refused) == ["QUERY_TOO_COMPLEX"], refused
    assert refused.get("data") is None
    assert refused["extensions"]["cost"]["redisRoundTrips"] == 0
    assert redis_dump(url, "face*") == before


def test_the_default_max_faces_fits_the_default_cost_limit_and_one_more_does_not() -> None:
    from lookalike.schema.limits.cost import FIELD_WORK

    price = FIELD_WORK["Mutation.identifyFaces"]
    assert callable(price)
    limit = Settings().max_query_cost

    def cost(faces: int) -> int:
        work = price({"maxFaces": faces, "k": 3}, 0)
        return work.items + work.extra

    assert cost(10) <= limit < cost(11)
    assert Settings().face_max_faces >= 10


def tiny_face() -> tuple[bytes, bytes]:
    """s5's face 34 pixels wide (too small to name), and the same photo upscaled 3x (a usable
    face a few thousandths away from it)."""
    face = orl_image("s5", 7).resize((34, 41), Image.Resampling.LANCZOS)
    photo = Image.new("RGB", (120, 120), (200, 200, 200))
    photo.paste(face, (40, 30))
    big = photo.resize((360, 360), Image.Resampling.BICUBIC)
    return encoded(photo, "PNG"), encoded(big, "PNG")


@pytest.fixture
def tiny_enrolled(faces_api: tuple[TestClient, str, Layout]) -> Iterator[bytes]:
    """The tiny face's upscaled copy enrolled as tiny-probe: the tiny face is its match by
    distance, so only its quality keeps it unnamed."""
    api, _, _ = faces_api
    tiny, big = tiny_face()
    body = send(api, ENROLL, big, id="tiny-probe").json()
    assert "errors" not in body, body
    try:
        yield tiny
    finally:
        gql(api, 'mutation { deletePerson(id: "tiny-probe") }')


def test_a_face_too_small_is_never_named_but_keeps_its_candidates(
    faces_api: tuple[TestClient, str, Layout], tiny_enrolled: bytes
) -> None:
    api, _, _ = faces_api
    quality = {"usable": False, "reasons": ["SMALL_FACE"]}

    (face,) = identify_faces(api, tiny_enrolled)
    assert {k: face["quality"][k] for k in quality} == quality
    assert face["person"] is None
    assert face["candidates"][0]["person"]["id"] == "tiny-probe"
    assert face["candidates"][0]["distance"] < 0.05

    single = send(api, IDENTIFY, tiny_enrolled, k=3).json()["data"]["identifyFace"]
    assert single["person"] is None
    assert single["candidates"][0]["person"]["id"] == "tiny-probe"
    assert single["distance"] < single["threshold"]
    query = (
        "mutation($image: Upload!) { identifyFace(image: $image) { quality { usable reasons } } }"
    )
    shown = send(api, query, tiny_enrolled).json()["data"]["identifyFace"]["quality"]
    assert shown == quality

    verify_query = VERIFY.replace("facesDetected", "facesDetected quality { usable reasons }")
    verified = send(api, verify_query, tiny_enrolled, id="tiny-probe").json()["data"]["verifyFace"]
    assert verified["distance"] < verified["threshold"]
    assert verified["match"] is False
    assert verified["quality"] == quality


def test_a_usable_face_shows_its_quality_everywhere(
    faces_api: tuple[TestClient, str, Layout],
) -> None:
    api, _, _ = faces_api
    both = """mutation($image: Upload!) {
        identifyFace(image: $image) { person { id } quality { usable score reasons } }
        verifyFace(personId: "s2", image: $image) { match quality { usable score reasons } } }"""
    body = send(api, both, orl("s2", 8)).json()
    assert "errors" not in body, body
    identified, verified = body["data"]["identifyFace"], body["data"]["verifyFace"]
    assert identified["person"] == {"id": "s2"}
    assert verified["match"] is True
    for quality in (identified["quality"], verified["quality"]):
        assert quality["usable"] is True
        assert quality["reasons"] == []
        assert 0 < quality["score"] <= 1


def test_enrolling_a_face_too_small_is_refused_with_its_reasons(
    faces_api: tuple[TestClient, str, Layout],
) -> None:
    api, url, _ = faces_api
    tiny, _ = tiny_face()
    before = redis_dump(url, "face*")
    for person_id in ("s1", "new-person"):
        body = send(api, ENROLL, tiny, id=person_id).json()
        assert error_codes(body) == ["FACE_QUALITY_TOO_LOW"], body
        assert body["errors"][0]["extensions"]["reasons"] == ["SMALL_FACE"]
        assert body["data"] is None
    assert redis_dump(url, "face*") == before


def test_enrolling_a_group_photo_needs_a_face_index(
    faces_api: tuple[TestClient, str, Layout],
) -> None:
    api, url, _ = faces_api
    photo, _ = group(ROW)
    before = redis_dump(url, "face*")
    body = send(api, ENROLL, encoded(photo, "PNG"), id="group-probe").json()
    assert error_codes(body) == ["MORE_THAN_ONE_FACE"], body
    assert body["errors"][0]["extensions"]["facesDetected"] == 5
    assert body["errors"][0]["extensions"]["reasons"] == ["MORE_THAN_ONE_FACE"]
    assert redis_dump(url, "face*") == before


@pytest.mark.parametrize("face_index", [5, 19, -1, 20])
def test_a_face_index_out_of_range_is_refused(
    faces_api: tuple[TestClient, str, Layout], face_index: int
) -> None:
    api, url, _ = faces_api
    photo, _ = group(ROW)
    before = redis_dump(url, "face*")
    body = send(api, ENROLL_INDEX, encoded(photo, "PNG"), id="group-probe", faceIndex=face_index)
    assert error_codes(body.json()) == ["BAD_USER_INPUT"], body.json()
    assert body.json()["errors"][0]["extensions"]["argument"] == "faceIndex"
    assert redis_dump(url, "face*") == before


def test_a_face_index_enrols_that_face(faces_api: tuple[TestClient, str, Layout]) -> None:
    """Each stranger of the group photo enrolled by its index in identifyFaces' order, then
    recognised from other photos of theirs."""
    api, _, _ = faces_api
    photo, pasted = group(ROW)
    image = encoded(photo, "PNG")
    order = [where(face, pasted) for face in identify_faces(api, image)]
    try:
        for stranger, place in (("s9", 1), ("s10", 3)):
            body = send(api, ENROLL_INDEX, image, id=f"probe-{stranger}",
                        faceIndex=order.index(place)).json()  # fmt: skip
            assert body["data"]["enrollFace"] == {"id": f"probe-{stranger}", "faceCount": 1}
        for stranger in ("s9", "s10"):
            found = send(api, IDENTIFY, orl(stranger, 9), k=1).json()["data"]["identifyFace"]
            assert found["person"]["id"] == f"probe-{stranger}"
        again = identify_faces(api, image)
        assert names(again, pasted) == {0: "s1", 1: "probe-s9", 2: "s2", 3: "probe-s10", 4: "s3"}
    finally:
        for stranger in ("s9", "s10"):
            gql(api, f'mutation {{ deletePerson(id: "probe-{stranger}") }}')


def test_a_photo_with_no_face_has_no_faces(faces_api: tuple[TestClient, str, Layout]) -> None:
    api, _, _ = faces_api
    grey = encoded(Image.new("RGB", (200, 200), (128, 128, 128)), "PNG")
    assert identify_faces(api, grey) == []
