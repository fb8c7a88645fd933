"""Copies of a face photo made worse on purpose: what the quality thresholds were chosen on
and what ``lookalike faces eval`` and the tests check them and the model's robustness with.

Two families. **Degradations** are parameterised by how bad they are, relative to the face
(a blur's sigma as a share of the face's width, an exposure as a factor of the photo's own):
each should earn one quality reason past its boundary and none before it. **Held-out
variants** are what phones and people do to an ordinary photo (a mirror, uneven light, a
little blur, strong compression, a tilt, a larger frame with a busy background, ...): the
face in them should still be named.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from lookalike.services.faces.quality import Reason


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def blurred(image: Image.Image, sigma_share: float, face_width: float) -> Image.Image:
    """A Gaussian blur whose sigma is ``sigma_share`` of the face's width (0.03: 3%)."""
    return image.filter(ImageFilter.GaussianBlur(sigma_share * face_width))


def exposed(image: Image.Image, factor: float) -> Image.Image:
    """Every grey level times ``factor`` (0.25: a quarter of the photo's brightness), clipped
    at white."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) * factor
    return Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))


def shrunk(image: Image.Image, face_width: float, width: float) -> Image.Image:
    """The photo scaled so that the face is ``width`` pixels wide, in the middle of a grey
    frame three times its size (so that the detector still sees a whole photo)."""
    ratio = width / face_width
    size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    small = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    frame = Image.new("RGB", (max(160, 3 * small.width), max(160, 3 * small.height)), (96,) * 3)
    frame.paste(small, ((frame.width - small.width) // 2, (frame.height - small.height) // 2))
    return frame


@dataclass(frozen=True, slots=True)
class Degradation:
    """One degradation at one level, the reason it should earn (None: it should earn none)."""

    name: str
    expected: Reason | None
    make: Callable[[Image.Image, float], Image.Image]  # (photo, face width) -> degraded photo


# The boundaries the issue sets (sigma 3% -> BLURRY, 1% -> not; a quarter of the brightness ->
# TOO_DARK; under 40 px -> SMALL_FACE) and the other side of each.
DEGRADATIONS = (
    Degradation("blur sigma 1% of face width", None, lambda i, w: blurred(i, 0.01, w)),
    Degradation("blur sigma 3% of face width", Reason.BLURRY, lambda i, w: blurred(i, 0.03, w)),
    Degradation("brightness x0.5", None, lambda i, w: exposed(i, 0.5)),
    Degradation("brightness x0.25", Reason.TOO_DARK, lambda i, w: exposed(i, 0.25)),
    Degradation("brightness x1.25", None, lambda i, w: exposed(i, 1.25)),
    Degradation("brightness x2.5", Reason.TOO_BRIGHT, lambda i, w: exposed(i, 2.5)),
    Degradation("face 60 px wide", None, lambda i, w: shrunk(i, w, 60)),
    Degradation("face 30 px wide", Reason.SMALL_FACE, lambda i, w: shrunk(i, w, 30)),
)


def _uneven_light(image: Image.Image) -> Image.Image:
    """Light from one side: half the brightness on the left, a fifth more on the right."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    ramp = np.linspace(0.5, 1.2, pixels.shape[1], dtype=np.float32)[None, :, None]
    return Image.fromarray((pixels * ramp).clip(0, 255).astype(np.uint8))


def _busy_frame(image: Image.Image, seed: int) -> Image.Image:
    """The face at twice the size, somewhere in a 640 x 480 frame of random noise."""
    rng = np.random.default_rng(seed)
    frame = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    big = image.convert("RGB").resize((2 * image.width, 2 * image.height), Image.Resampling.LANCZOS)
    x = int(rng.integers(0, max(1, 640 - big.width)))
    y = int(rng.integers(0, max(1, 480 - big.height)))
    frame.paste(big, (x, y))
    return frame


def _sensor_noise(image: Image.Image, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    noisy = pixels + rng.normal(0, 12, pixels.shape[:2])[..., None]
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    return encoded(image.convert("RGB"), "JPEG", quality=quality)


# name -> (photo, face width, seed) -> the bytes a phone would send
HELD_OUT: dict[str, Callable[[Image.Image, float, int], bytes]] = {
    "mirrored": lambda i, w, s: _jpeg(i.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "side light": lambda i, w, s: _jpeg(_uneven_light(i)),
    "slight blur": lambda i, w, s: _jpeg(blurred(i, 0.01, w)),
    "JPEG quality 10": lambda i, w, s: _jpeg(i, 10),
    "tilted 10 degrees": lambda i, w, s: _jpeg(
        i.convert("RGB").rotate(10, Image.Resampling.BICUBIC, expand=True, fillcolor=(128,) * 3)
    ),
    "x2 on a busy background": lambda i, w, s: _jpeg(_busy_frame(i, s)),
    # and four of this project's own
    "tilted 30 degrees": lambda i, w, s: _jpeg(
        i.convert("RGB").rotate(-30, Image.Resampling.BICUBIC, expand=True, fillcolor=(128,) * 3)
    ),
    "dim (brightness x0.5)": lambda i, w, s: _jpeg(exposed(i, 0.5)),
    "sensor noise": lambda i, w, s: _jpeg(_sensor_noise(i, s)),
    "face 60 px wide, JPEG 75": lambda i, w, s: _jpeg(shrunk(i, w, 60), 75),
}
