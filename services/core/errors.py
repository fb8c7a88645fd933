"""Errors the domain raises on purpose, each with the code clients see.

The GraphQL layer turns these into ``extensions.code``; the command line prints the message.
Anything else that escapes a resolver is a bug and is reported as INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import re


class LookalikeError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions

    def __reduce__(self) -> tuple[object, ...]:
        # Face errors are raised in the embedding worker process and re-raised here.
        return (_rebuild, (type(self), self.message, self.extensions))


def _rebuild(cls: type[LookalikeError], message: str, extensions: dict[str, object]) -> object:
    return cls(message, **extensions)


class BadUserInput(LookalikeError):
    code = "BAD_USER_INPUT"


class CostLimit(LookalikeError):
    """Work found to be over the cost limit once it is known (the embeddings a change needs),
    with the code of the limit checked before execution."""

    code = "QUERY_TOO_COMPLEX"


class BookNotFound(LookalikeError):
    code = "BOOK_NOT_FOUND"

    @classmethod
    def for_id(cls, book_id: str) -> BookNotFound:
        return cls(f"no book has id {quote(book_id)}", id=book_id[:64])


class ServiceUnavailable(LookalikeError):
    """Redis cannot be reached, or lacks the modules lookalike needs."""

    code = "SERVICE_UNAVAILABLE"


class PersonNotFound(LookalikeError):
    code = "PERSON_NOT_FOUND"

    @classmethod
    def for_id(cls, person_id: str) -> PersonNotFound:
        return cls(f"nobody is enrolled as {quote(person_id)}", id=person_id[:64])


class FaceNotFound(LookalikeError):
    code = "FACE_NOT_FOUND"

    @classmethod
    def for_id(cls, face_id: str) -> FaceNotFound:
        return cls(f"no enrolled face has id {quote(face_id)}", id=face_id[:100])


class InvalidImage(LookalikeError):
    """Not a decodable JPEG, MPO, HEIC/HEIF, AVIF, WebP, PNG or BMP."""

    code = "INVALID_IMAGE"


class ImageTooLarge(LookalikeError):
    """More pixels than the limits allow (a side, the header's count, the pixels decoded
    whole), found from the header before decoding."""

    code = "IMAGE_TOO_LARGE"


class UnsupportedImage(LookalikeError):
    """A format read here, encoded in a way that cannot be decoded cheaply (RLE BMP, a JPEG
    of hundreds of scans, ...): refused from the header; re-encoding it as JPEG helps."""

    code = "UNSUPPORTED_IMAGE"


class PayloadTooLarge(LookalikeError):
    code = "PAYLOAD_TOO_LARGE"


class NoFace(LookalikeError):
    code = "NO_FACE"


class FaceQualityTooLow(LookalikeError):
    """Enrolment of a face that is not usable: ``extensions.reasons`` says why."""

    code = "FACE_QUALITY_TOO_LOW"


class MoreThanOneFace(LookalikeError):
    """Enrolment of a photo of several faces without ``faceIndex``: which one is meant?"""

    code = "MORE_THAN_ONE_FACE"


class CatalogueError(LookalikeError):
    """The catalogue files or a source folder are not what the loader expects."""

    code = "CATALOGUE_ERROR"


def quote(value: str, limit: int = 40) -> str:
    """Input quoted in a message: at most a short prefix of it (an error must not echo 1 MB)."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(name: str, value: str, *, multiline: bool = False) -> None:
    """Refuse control characters (NUL above all) in text that reaches Redis or a model;
    ``multiline`` text may hold tabs and line breaks."""
    if (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value):
        raise BadUserInput(f"{name} must not hold control characters", argument=name)


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Refuse an argument outside [low, high] with a message that names the bounds."""
    if not low <= value <= high:
        raise BadUserInput(
            f"{name} must be between {low:g} and {high:g}, got {value!r}",  # unrounded
            argument=name,
            min=low,
            max=high,
        )
