"""A phone's photo of an ORL face: what bench/faces.py times and tests/ identify.

A 12-megapixel JPEG (4032 x 3024, as a phone's main camera takes) with an ORL face scaled
into it, on a wall: light gradients, blotches and sensor noise (random noise alone would make
a 15 MB JPEG), so the file has a phone photo's size, about 1.7 MB.
"""

from __future__ import annotations

import functools
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

# The ORL faces (AT&T Cambridge, 40 people x 10 photos, 92 x 112 grayscale), from the course's
# MIT-licensed repository (LICENSE beside them), converted losslessly from BMP to PNG.
ORL = Path(__file__).resolve().parents[1] / "tests" / "data" / "orl"


@functools.lru_cache(maxsize=1)  # 36 MB a wall
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
    """The photo, with ORL's ``person``/``number`` scaled ``scale`` times (x9: 828 x 1008,
    a portrait at arm's length) a little off centre."""
    return phone_photo_of(ORL / person / f"{number}.png", scale, seed)


def phone_photo_of(path: Path, scale: int = 9, seed: int = 0) -> bytes:
    """The photo, with the face photo at ``path`` (any data set's) scaled into it."""
    photo = _wall(seed).copy()
    width, height = photo.size
    face = Image.open(path).convert("RGB")
    face = face.resize((face.width * scale, face.height * scale), Image.Resampling.LANCZOS)
    photo.paste(face, ((width - face.width) // 2 + 300, (height - face.height) // 2 - 100))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


Rect = tuple[int, int, int, int]  # x, y, width, height


def group(people: list[tuple[str, int]], scale: int = 2, gap: int = 40,
          sizes: list[float] | None = None) -> tuple[Image.Image, list[Rect]]:  # fmt: skip
    """ORL faces in a row, ``scale`` times their size (each times its ``sizes`` entry), on a
    grey wall: a group photo, and where each face was pasted."""
    faces = [
        Image.open(ORL / person / f"{number}.png")
        .convert("RGB")
        .resize((round(92 * scale * size), round(112 * scale * size)), Image.Resampling.LANCZOS)
        for (person, number), size in zip(people, sizes or [1.0] * len(people), strict=True)
    ]
    width = sum(face.width for face in faces) + gap * (len(faces) + 1)
    height = max(face.height for face in faces) + 2 * gap
    photo = Image.new("RGB", (width, height), (200, 200, 200))
    pasted: list[Rect] = []
    x = gap
    for face in faces:
        photo.paste(face, (x, gap))
        pasted.append((x, gap, face.width, face.height))
        x += face.width + gap
    return photo, pasted


async def timed_upload(
    client: httpx.AsyncClient, url: str, query: str, image: bytes
) -> tuple[float, dict[str, Any]]:
    """Milliseconds to the answer of ``query`` with ``image`` as its ``$image`` upload (the
    multipart request Apollo's upload clients send), and the answer's body."""
    operations = json.dumps({"query": query, "variables": {"image": None}})
    started = time.perf_counter()
    response = await client.post(
        url,
        data={"operations": operations, "map": json.dumps({"0": ["variables.image"]})},
        files={"0": ("photo", image, "application/octet-stream")},
        headers={"Apollo-Require-Preflight": "true"},
    )
    body: dict[str, Any] = response.json()
    return (time.perf_counter() - started) * 1000, body
