"""Face ids: stable, opaque, and telling nothing about the photo.

A face is stored under the SHA-256 of its photo (enrolling the same photo twice adds
nothing), but that hash is not its id: whoever holds a photo could hash it and learn from a
listing that exactly this photo was enrolled, and for whom. The id's token is an HMAC of the
person id and the photo's hash under a key made once at random and kept in Redis
(``faces:face-id-key``), so it cannot be computed from the photo, differs for the same photo
enrolled as two people, and is the same every time it is read, also for faces enrolled before
ids existed (nothing per face is stored for it). The person id travels in the id too: a face
is found by reading that one person's record, never by a search, so no id can reach another
person's faces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

KIND = "face"
TOKEN = re.compile(r"[0-9a-f]{32}")
PERSON_PART = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a person id's alphabet (recognition.PERSON_ID)


@dataclass(frozen=True, slots=True)
class FaceId:
    person_id: str
    token: str

    def __str__(self) -> str:
        return base64.urlsafe_b64encode(f"{KIND}:{self.person_id}:{self.token}".encode()).decode()

    @classmethod
    def parse(cls, text: str) -> FaceId | None:
        """The id, or None for any string this API would not have issued (one spelling per
        id: other base64 paddings or alphabets, separators or key syntax in the person part
        are all None)."""
        try:
            parts = base64.urlsafe_b64decode(text.encode("ascii")).decode("ascii").split(":")
        except (binascii.Error, UnicodeError, ValueError):
            return None
        if len(parts) != 3 or parts[0] != KIND:
            return None
        if not (PERSON_PART.fullmatch(parts[1]) and TOKEN.fullmatch(parts[2])):
            return None
        found = cls(parts[1], parts[2])
        return found if str(found) == text else None


def token(key: bytes, person_id: str, image_hash: str) -> str:
    """The token of the photo whose SHA-256 (hex) starts with ``image_hash`` (32 digits or
    more: the hash layout's key names keep the first 32) enrolled as ``person_id``."""
    message = f"{person_id}:{image_hash[:32]}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
