"""Photos and the multipart requests that carry them, as Apollo's upload clients send them."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from starlette.testclient import TestClient

ORL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "orl"
PREFLIGHT = {"Apollo-Require-Preflight": "true"}

IDENTIFY = """mutation($image: Upload!, $k: Int!) { identifyFace(image: $image, k: $k) {
  person { id name faceCount } distance threshold model facesDetected
  candidates { distance person { id faceCount } } } }"""
ENROLL = """mutation($id: ID!, $image: Upload!, $name: String) {
  enrollFace(personId: $id, image: $image, name: $name) { id name faceCount } }"""
VERIFY = """mutation($id: ID!, $image: Upload!) { verifyFace(personId: $id, image: $image) {
  person { id name faceCount } match distance threshold facesDetected } }"""
PERSON = "query($id: ID!) { person(id: $id) { id name faceCount } }"


def orl(person: str, number: int) -> bytes:
    return (ORL / person / f"{number}.bmp").read_bytes()


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


def orl_image(person: str, number: int) -> Image.Image:
    return Image.open(ORL / person / f"{number}.bmp").convert("RGB")


@functools.cache
def _wall(seed: int) -> Image.Image:
    """A 4032 x 3024 background: light gradients, blotches and sensor noise, as a wall or
    a sky looks to a phone (random noise alone would make a 15 MB JPEG)."""
    rng = np.random.default_rng(seed)
    width, height = 4032, 3024
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [120 + 60 * x / width, 110 + 50 * y / height, 100 + 40 * (x + y) / (width + height)], -1
    )
    coarse = rng.normal(128, 20, (height // 32, width // 32, 3)).clip(0, 255).astype(np.uint8)
    texture = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
    )
    pixels = base + texture - 128 + rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def phone_photo(person: str, number: int, scale: int = 9, seed: int = 0) -> bytes:
    """A 12-megapixel JPEG (4032 x 3024, as a phone's main camera takes) with an ORL face
    scaled ``scale`` times into it (x9: 828 x 1008, a portrait at arm's length), on a wall
    (the file has a phone photo's size, about 1.7 MB)."""
    photo = _wall(seed).copy()
    width, height = photo.size
    face = orl_image(person, number)
    face = face.resize((face.width * scale, face.height * scale), Image.Resampling.LANCZOS)
    photo.paste(face, ((width - face.width) // 2 + 300, (height - face.height) // 2 - 100))
    return encoded(photo, "JPEG", quality=90)


def tiled(people: list[tuple[str, int]], columns: int) -> Image.Image:
    """ORL faces side by side, a grid of ``columns``: a crowd for the detector."""
    rows = -(-len(people) // columns)
    sheet = Image.new("RGB", (92 * columns, 112 * rows), (200, 200, 200))
    for n, (person, number) in enumerate(people):
        sheet.paste(orl_image(person, number), (92 * (n % columns), 112 * (n // columns)))
    return sheet
