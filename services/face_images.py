"""Turning uploaded bytes into the BGR array the face model takes, within limits.

The pixel count is read from the header before anything is decoded, so a decompression bomb
costs a few hundred bytes of parsing. Photos come in every shape phones and scanners make:
EXIF-rotated, grayscale, palette, RGBA, 16-bit; all become 8-bit RGB. Large photos are decoded
at reduced scale (JPEG draft mode) to at most MAX_SIDE pixels a side: a face that fills a
reasonable part of a phone photo keeps far more than the 150 px the model looks at.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.services.errors import ImageTooLarge, InvalidImage

FORMATS = {"JPEG", "PNG", "BMP", "WEBP"}
MAX_SIDE = 1600

BGRImage = npt.NDArray[np.uint8]


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only: refuse what is not a supported image, or is too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        image = None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"the upload is not a readable image: {exc}") from None
    if image is None or image.format not in FORMATS:
        kind = image.format if image is not None else "unrecognised data"
        raise InvalidImage(f"expected a JPEG, PNG, BMP or WebP image, got {kind}")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} = {width * height:,} pixels, more than the "
            f"{max_pixels:,} allowed",
            pixels=width * height,
            max=max_pixels,
        )
    return image


def decode(data: bytes, max_pixels: int) -> BGRImage:
    image = open_image(data, max_pixels)
    try:
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        image = ImageOps.exif_transpose(image)
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        rgb = _to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"the image could not be decoded: {exc}") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _to_rgb(image: Image.Image) -> npt.NDArray[np.uint8]:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit samples: keep the high byte, as any viewer shows them (no contrast stretch)
        wide = np.asarray(image, dtype=np.uint32)
        gray = (wide >> 8 if wide.max() > 255 else wide).astype(np.uint8)
        return np.stack([gray] * 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
