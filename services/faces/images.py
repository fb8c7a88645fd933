"""Turning uploaded bytes into upright RGB pixels for the face model, at a bounded cost.

Photos come in every shape phones and scanners make: JPEG, the multi-picture JPEG (MPO) many
Android cameras save (its first picture is the photo), HEIC/HEIF as iPhones save them
(pillow-heif, libheif inside its wheel), AVIF and WebP (Pillow), PNG and BMP; EXIF-rotated,
grayscale, palette, RGBA, 16-bit: all become upright 8-bit RGB, as a viewer shows them.

What a photo may cost is decided from its header, before a pixel is decoded, because a few
kilobytes can declare an image that takes seconds to decode (issue 22). Everything that is
let through decodes in C at a cost bounded by its pixel count:

- **Only these formats are parsed at all** (``Image.open(formats=...)``): Pillow's other
  plugins (GIF, TIFF, TGA, PCX, ICO, PSD, SGI, EPS, which would run Ghostscript, ...) never
  see the bytes, so their slow or unbounded decoders cannot be reached.
- **The structure Pillow parses in Python is bounded first**: the markers of a JPEG before its
  first scan and every chunk of a PNG are walked (C searches, one Python step per block) and
  refused past ``MAX_BLOCKS``; fill or junk bytes between JPEG markers (which Pillow skips
  one byte at a time) past ``MAX_SKIPPED``; compressed PNG text past ``MAX_PNG_TEXT``; EXIF
  (its entries parsed in Python to find the orientation) past ``MAX_EXIF``.
  Progressive JPEG scans are each a pass over the whole picture at any scale: scans times
  pixels are bounded (``SCAN_PASSES``).
- **Pixel formats that decode in C only**: an allow-list of modes; BMP must be uncompressed
  or bit-fields (RLE4/RLE8 are decoded in Python, a pixel at a time); a raw BMP shorter than
  the pixels it declares is refused as truncated before its pixels are allocated.
- **Pixels**: no side over ``MAX_SIDE`` (a 1 x 50,000,000 PNG costs a decoder call a row), at
  most ``max_pixels`` from the header whatever the file's size, and at most
  ``max_decoded_pixels`` decoded at full resolution, 16-bit samples counting double (they are
  twice the bytes to inflate and unpack). A JPEG is decoded at 1/2, 1/4 or 1/8 scale in the
  DCT (libjpeg's scaled decoding), never finer than that limit allows; other formats are
  decoded whole, once, and reduced in C.
- **One frame**: only the first picture of an MPO, the primary image of a HEIF and the first
  frame of an animated PNG, WebP or AVIF is decoded; the others are never read.
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import ExifTags, Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from lookalike.services.core.errors import ImageTooLarge, InvalidImage, UnsupportedImage

# HEIF's primary image only: thumbnails, depth maps and auxiliary images are not the photo.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# What Image.open tries, in this order. JPEG's opener also returns MPO files.
OPENERS = ("JPEG", "PNG", "HEIF", "AVIF", "WEBP", "BMP")
FORMAT_NAMES = "JPEG (or MPO), HEIC/HEIF, AVIF, WebP, PNG or BMP"
SCALABLE = {"JPEG", "MPO"}  # decodable at 1/2, 1/4, 1/8 scale
SCALES = (8, 4, 2, 1)
# Modes these formats decode to in C (8 or 16 bits a sample), each turned into RGB by _to_rgb.
MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I;16B", "I;16L"}
WIDE_MODES = {"I;16", "I;16B", "I;16L"}
REDUCIBLE = {"L", "LA", "RGB", "RGBA"}  # modes Image.reduce averages in place of _to_rgb
MAX_SIDE = 20_000
MAX_BLOCKS = 8_192  # JPEG markers before the first scan, PNG chunks (IDAT included)
MAX_SKIPPED = 1_024  # fill and junk bytes between JPEG markers
# A JPEG's scans (counted in the whole file: all its pictures and thumbnails) times its
# pixels, in passes over max_decoded_pixels.
SCAN_PASSES = 20
MAX_PNG_TEXT = 4 * 1024 * 1024  # decompressed text and ICC profile in a PNG, in bytes
MAX_EXIF = 65_536  # bytes of EXIF (all a JPEG segment holds), parsed in Python for rotation

# Pillow's documented limit on decompressed PNG text (64 MB by default): inflating that much
# would cost more than decoding a phone photo.
PngImagePlugin.MAX_TEXT_MEMORY = MAX_PNG_TEXT

RGBImage = npt.NDArray[np.uint8]
# what Pillow and its plugins raise for bytes they cannot decode (libheif: RuntimeError)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, RuntimeError, Image.DecompressionBombError)
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FILL = re.compile(rb"\xff+")
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # markers without a length: TEM, RSTn, SOI


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """How large a photo may be: ``max_pixels`` in its header (a JPEG is decoded reduced),
    ``max_decoded_pixels`` decoded at full resolution (every other format, 16-bit samples
    counting double; and the finest scale a JPEG is decoded at)."""

    max_pixels: int
    max_decoded_pixels: int


@dataclass(frozen=True, slots=True)
class Picture:
    """Upright RGB pixels of a photo, ``scale`` times smaller than its full resolution."""

    rgb: RGBImage
    scale: int


class Photo:
    """An upload whose header has passed every limit; ``decoded_pixels`` counts the pixels
    the decoders were asked for so far (0 until the first ``pixels`` call)."""

    def __init__(self, data: bytes, limits: ImageLimits) -> None:
        self.data = data
        self.decoded_pixels = 0
        self._image: ImageFile.ImageFile | None = _open(data)
        self.format: str = self._image.format or ""
        self.size: tuple[int, int] = self._image.size
        self.longer_side = max(self.size)
        self.finest = _check_cost(self._image, limits, data)
        self._whole: Image.Image | None = None  # formats decoded whole: the decoded image

    def scale_for(self, longer_side: int) -> int:
        """The largest reduction (1, 2, 4 or 8) that keeps the longer side at least this
        long, and no finer than the decoding limit allows."""
        scale = next(s for s in SCALES if s == 1 or self.longer_side / s >= longer_side)
        return max(scale, self.finest)

    def pixels(self, scale: int = 1) -> Picture:
        """Decode at 1/scale: in the DCT for a JPEG, else decoded whole once and reduced."""
        width, height = self.size
        try:
            if self.format in SCALABLE:
                source: Image.Image = self._image or _open(self.data)
                self._image = None  # a JPEG decodes once: the next scale opens it again
                source.draft("RGB", (math.ceil(width / scale), math.ceil(height / scale)))
                self.decoded_pixels += source.size[0] * source.size[1]
                image, pending = source, 1
            else:
                if self._whole is None:
                    assert self._image is not None
                    self.decoded_pixels += width * height
                    self._image.load()
                    self._whole = self._image
                source = image = self._whole
                pending = scale  # reduced before the conversion if reduce() takes the mode
                if scale > 1 and image.mode in REDUCIBLE:
                    image, pending = image.reduce(scale), 1
            rgb = _to_rgb(image)
            if pending > 1:
                rgb = rgb.reduce(pending)
            decoded_width = rgb.size[0]
            transpose = _TRANSPOSES.get(source.getexif().get(ExifTags.Base.Orientation, 1))
            if transpose is not None:
                rgb = rgb.transpose(transpose)
            pixels = np.asarray(rgb, dtype=np.uint8)
        except DECODE_ERRORS as exc:
            raise InvalidImage(f"the image could not be decoded: {exc}") from None
        return Picture(np.ascontiguousarray(pixels), max(1, round(width / decoded_width)))


def _open(data: bytes) -> ImageFile.ImageFile:
    """Parse the header only (of a file whose structure has been bounded): refuse what is
    not one of the formats read here."""
    _check_structure(data)
    try:
        with warnings.catch_warnings():
            # our own limits are lower; Pillow's error, at twice its own limit, is kept
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=OPENERS)
    except UnidentifiedImageError:
        raise InvalidImage(f"expected a {FORMAT_NAMES} image") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge(
            f"the image has more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels"
        ) from None
    except (OSError, ValueError, SyntaxError, RuntimeError) as exc:
        raise InvalidImage(f"the upload is not a readable image: {exc}") from None
    return image


def _check_structure(data: bytes) -> None:
    """Refuse JPEG and PNG files whose structure would cost Pillow's Python parser more than
    decoding a photo does; the walk itself is a bounded number of steps."""
    if data.startswith(b"\xff\xd8\xff"):
        _check_jpeg(data)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        _check_png(data)


def _check_jpeg(data: bytes) -> None:
    pos, blocks, skipped = 2, 0, 0
    while True:
        at = data.find(b"\xff", pos)
        if at < 0:
            return  # no scan: Pillow says what is wrong
        fill = _FILL.match(data, at)
        assert fill is not None
        skipped += at - pos + fill.end() - at - 1
        pos = fill.end() + 1
        if pos > len(data):
            return
        marker = data[pos - 1]
        if marker == 0x00:  # an escaped 0xFF: junk Pillow skips
            skipped += 2
        elif marker == 0xDA:
            break
        else:
            blocks += 1
            if marker not in _JPEG_STANDALONE:
                pos += int.from_bytes(data[pos : pos + 2], "big")
        if skipped > MAX_SKIPPED:
            raise UnsupportedImage(
                f"the JPEG has more than {MAX_SKIPPED:,} bytes of padding or junk between its "
                "markers; re-encode it",
                reason="jpeg-padding",
            )
        if blocks > MAX_BLOCKS:
            raise UnsupportedImage(
                f"the JPEG has more than {MAX_BLOCKS:,} markers before its image data; "
                "re-encode it",
                reason="jpeg-markers",
            )


def _check_png(data: bytes) -> None:
    pos, blocks = 8, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        blocks += 1
        if blocks > MAX_BLOCKS:
            raise UnsupportedImage(
                f"the PNG has more than {MAX_BLOCKS:,} chunks; re-encode it",
                reason="png-chunks",
            )
        if kind == b"IEND":
            return
        if kind == b"eXIf" and length > MAX_EXIF:
            raise _exif_too_large(length)
        pos += 12 + length


def _exif_too_large(size: int) -> UnsupportedImage:
    return UnsupportedImage(
        f"the image has {size:,} bytes of EXIF, more than the {MAX_EXIF:,} read here",
        reason="exif",
    )


def _check_cost(image: ImageFile.ImageFile, limits: ImageLimits, data: bytes) -> int:
    """Refuse what cannot be decoded cheaply, from the header; the finest scale (1, 2, 4 or
    8) the photo may be decoded at."""
    kind = f"{image.format} image" if image.format else "image"
    exif = image.info.get("exif")
    if isinstance(exif, bytes) and len(exif) > MAX_EXIF:
        raise _exif_too_large(len(exif))
    if image.mode not in MODES:
        raise UnsupportedImage(
            f"the {kind} has pixels of mode {image.mode}, which is not read here; "
            "re-encode it as 8-bit RGB",
            reason="mode",
        )
    codecs = {tile.codec_name for tile in image.tile}
    if image.format == "BMP" and codecs != {"raw"}:
        raise UnsupportedImage(
            "the BMP is run-length encoded (RLE), which decodes a pixel at a time; "
            "send it uncompressed or as JPEG or PNG",
            reason="bmp-rle",
        )
    width, height = image.size
    pixels = width * height
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(
            f"the image is {width:,} x {height:,} pixels; no side may be longer than {MAX_SIDE:,}",
            maxSide=MAX_SIDE,
        )
    if pixels > limits.max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} = {pixels:,} pixels, more than the "
            f"{limits.max_pixels:,} allowed",
            pixels=pixels,
            max=limits.max_pixels,
        )
    if image.format in SCALABLE:
        # Each scan of a progressive JPEG is a pass over every block, whatever the scale.
        scans = data.count(b"\xff\xda")
        if scans * pixels > SCAN_PASSES * limits.max_decoded_pixels:
            raise UnsupportedImage(
                f"the JPEG has {scans:,} scans of {pixels:,} pixels; re-encode it "
                "(a progressive photo has about 10)",
                reason="jpeg-scans",
                scans=scans,
            )
        finest = next(
            (s for s in SCALES[::-1] if math.ceil(width / s) * math.ceil(height / s)
             <= limits.max_decoded_pixels),
            None,
        )  # fmt: skip
        if finest is None:
            raise ImageTooLarge(
                f"the image has {pixels:,} pixels, too many to decode even at 1/8 scale",
                pixels=pixels,
                max=limits.max_decoded_pixels * 64,
            )
        return finest
    wide = image.mode in WIDE_MODES or any(";16" in str(tile.args) for tile in image.tile)
    cost = pixels * (2 if wide else 1)
    if cost > limits.max_decoded_pixels:
        depth = "16-bit " if wide else ""
        raise ImageTooLarge(
            f"the {depth}{kind} has {width}x{height} = {pixels:,} pixels, more than the "
            f"{limits.max_decoded_pixels // (2 if wide else 1):,} a {depth}{image.format} "
            "may have (it is decoded whole); send it as JPEG",
            pixels=pixels,
            max=limits.max_decoded_pixels // (2 if wide else 1),
        )
    if image.format == "BMP":  # raw rows: the file must hold them all
        tile = image.tile[0]
        stride = tile.args[1] if isinstance(tile.args, tuple) else 0  # (rawmode, stride, dir)
        if isinstance(stride, int) and tile.offset + stride * height > len(data):
            raise InvalidImage(
                f"the BMP is truncated: its {width}x{height} pixels need "
                f"{tile.offset + stride * height:,} bytes, the file has {len(data):,}"
            )
    return 1


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in WIDE_MODES:
        # 16-bit samples: keep the high byte, as any viewer shows them (no contrast stretch)
        wide = np.asarray(image, dtype=np.uint32)
        gray = (wide >> 8 if wide.max() > 255 else wide).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")
