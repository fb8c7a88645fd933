"""Photos and the multipart requests that carry them, as Apollo's upload clients send them."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image
from starlette.testclient import TestClient

from bench.phone_photos import ORL, Rect, group, phone_photo

PREFLIGHT = {"Apollo-Require-Preflight": "true"}

IDENTIFY = """mutation($image: Upload!, $k: Int!) { identifyFace(image: $image, k: $k) {
  person { id name faceCount } distance threshold model facesDetected
  candidates { distance person { id faceCount } } } }"""
ENROLL = """mutation($id: ID!, $image: Upload!, $name: String) {
  enrollFace(personId: $id, image: $image, name: $name) { id name faceCount } }"""
VERIFY = """mutation($id: ID!, $image: Upload!) { verifyFace(personId: $id, image: $image) {
  person { id name faceCount } match distance threshold facesDetected } }"""
PERSON = "query($id: ID!) { person(id: $id) { id name faceCount } }"
IDENTIFY_FACES = """mutation($image: Upload!, $maxFaces: Int, $k: Int) {
  identifyFaces(image: $image, maxFaces: $maxFaces, k: $k) {
    box { x y width height } person { id } distance
    candidates { distance person { id } } quality { usable score reasons } } }"""
ENROLL_INDEX = """mutation($id: ID!, $image: Upload!, $faceIndex: Int) {
  enrollFace(personId: $id, image: $image, faceIndex: $faceIndex) { id faceCount } }"""


# ORL's photos whose face is turned too far to enrol (TURNED_AWAY: docs/decisions.md, "Face
# quality"); tests that enrol ORL photos in bulk leave them out
TURNED_AWAY = frozenset({("s1", 5), ("s4", 10), ("s23", 9), ("s32", 7)})


def orl(person: str, number: int) -> bytes:
    return (ORL / person / f"{number}.png").read_bytes()


__all__ = ["ORL", "Rect", "group", "phone_photo"]  # the bench times them too


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def send(api: TestClient, query: str, image: bytes, headers: dict[str, str] | None = None,
         **variables: Any) -> Any:  # fmt: skip
    """A GraphQL multipart request (the spec Apollo's upload clients speak)."""
    operations = {"query": query, "variables": {**variables, "image": None}}
    return api.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.image"]})},
        files={"0": ("photo", image, "application/octet-stream")},
        headers=PREFLIGHT if headers is None else headers,
    )


def enrol_people(
    api: TestClient,
    photos: Mapping[str, Sequence[bytes]],
    name_of: Callable[[str], str | None] = lambda person: None,
    at_once: int = 2,
) -> dict[str, list[dict[str, Any]]]:
    """Each person's photos enrolled in order, ``at_once`` people side by side: a gallery
    enrolled on every face worker of the app (give it that many), as a bulk import is, where
    one at a time leaves a core idle. Each person's ``enrollFace`` answers, in order; any
    error fails the caller's test."""

    def one(person: str) -> list[dict[str, Any]]:
        answers = []
        for image in photos[person]:
            body = send(api, ENROLL, image, id=person, name=name_of(person)).json()
            assert "errors" not in body, (person, body)
            answers.append(body["data"]["enrollFace"])
        return answers

    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="enrol") as pool:
        return dict(zip(photos, pool.map(one, photos), strict=True))


def orl_image(person: str, number: int) -> Image.Image:
    return Image.open(ORL / person / f"{number}.png").convert("RGB")


def tiled(people: list[tuple[str, int]], columns: int) -> Image.Image:
    """ORL faces side by side, a grid of ``columns``: a crowd for the detector."""
    rows = -(-len(people) // columns)
    sheet = Image.new("RGB", (92 * columns, 112 * rows), (200, 200, 200))
    for n, (person, number) in enumerate(people):
        sheet.paste(orl_image(person, number), (92 * (n % columns), 112 * (n // columns)))
    return sheet
