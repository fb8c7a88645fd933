"""Turning uploaded bytes into upright RGB pixels for the face model, within limits.

The pixel count is read from the header before anything is decoded, so a decompression bomb
costs a few hundred bytes of parsing. Photos come in every shape phones and scanners make:
JPEG, the multi-picture JPEG (MPO) many Android cameras save (its first picture is the
photo), HEIC/HEIF as iPhones save them (pillow-heif, libheif inside its wheel), AVIF and WebP
(Pillow), PNG and BMP; EXIF-rotated, grayscale, palette, RGBA, 16-bit: all become upright
8-bit RGB, as a viewer shows them.

A JPEG can be decoded at 1/2, 1/4 or 1/8 scale in the DCT (libjpeg's scaled decoding), for a
fraction of the time of the full picture: the face model asks for the coarsest scale that
still gives it what it needs, first to find the face, then to read it. Other formats are
decoded at full resolution.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.services.core.errors import ImageTooLarge, InvalidImage

# HEIF's primary image only: thumbnails, depth maps and auxiliary images are not the photo.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

FORMATS = {"JPEG", "MPO", "HEIF", "AVIF", "WEBP", "PNG", "BMP"}
FORMAT_NAMES = "JPEG (or MPO), HEIC/HEIF, AVIF, WebP, PNG or BMP"
SCALABLE = {"JPEG", "MPO"}  # decodable at 1/2, 1/4, 1/8 scale
SCALES = (8, 4, 2, 1)

RGBImage = npt.NDArray[np.uint8]
# what Pillow and its plugins raise for bytes they cannot decode (libheif: RuntimeError)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, RuntimeError, Image.DecompressionBombError)


@dataclass(frozen=True, slots=True)
class Picture:
    """Upright RGB pixels of a photo, ``scale`` times smaller than its full resolution."""

    rgb: RGBImage
    scale: int


class Photo:
    """An upload whose header has been checked: a supported format, not too many pixels."""

    def __init__(self, data: bytes, max_pixels: int) -> None:
        self.data = data
        image = _open(data, max_pixels)
        self.format: str = image.format or ""
        self.longer_side = max(image.size)

    def scale_for(self, longer_side: int) -> int:
        """The largest reduction (1, 2, 4 or 8) that keeps the longer side at least this
        long; 1 for formats that can only be decoded whole."""
        if self.format not in SCALABLE:
            return 1
        return next(s for s in SCALES if s == 1 or self.longer_side / s >= longer_side)

    def pixels(self, scale: int = 1) -> Picture:
        """Decode at 1/scale (JPEG) or at full resolution (everything else)."""
        image = _open(self.data, max_pixels=None)
        width, height = image.size
        try:
            if scale > 1 and self.format in SCALABLE:
                image.draft("RGB", (math.ceil(width / scale), math.ceil(height / scale)))
            decoded_width = image.size[0]
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
        except (
            OSError,
            ValueError,
            SyntaxError,
            RuntimeError,
            Image.DecompressionBombError,
        ) as exc:
            raise InvalidImage(f"the image could not be decoded: {exc}") from None
        return Picture(np.ascontiguousarray(rgb), max(1, round(width / decoded_width)))


def _open(data: bytes, max_pixels: int | None) -> Image.Image:
    """Parse the header only: refuse what is not a supported image, or is too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        image = None
    except (OSError, ValueError, SyntaxError, RuntimeError) as exc:
        raise InvalidImage(f"the upload is not a readable image: {exc}") from None
    if image is None or image.format not in FORMATS:
        kind = image.format if image is not None else "unrecognised data"
        raise InvalidImage(f"expected a {FORMAT_NAMES} image, got {kind}")
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} = {width * height:,} pixels, more than the "
            f"{max_pixels:,} allowed",
            pixels=width * height,
            max=max_pixels,
        )
    return image


def _to_rgb(image: Image.Image) -> RGBImage:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit samples: keep the high byte, as any viewer shows them (no contrast stretch)
        wide = np.asarray(image, dtype=np.uint32)
        gray = (wide >> 8 if wide.max() > 255 else wide).astype(np.uint8)
        return np.stack([gray] * 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
