"""Opaque Relay cursors: ``base64url("<kind>:<key>")``.

A cursor names the last item seen (keyset paging), so items added while a client pages are
neither skipped nor repeated. Only a string this API would itself have produced is accepted.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from lookalike.services.core.errors import BadUserInput, quote


def encode(kind: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode()


def decode(kind: str, cursor: str, valid_key: Callable[[str], bool]) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    key = text.removeprefix(f"{kind}:")
    if not (text.startswith(f"{kind}:") and valid_key(key) and encode(kind, key) == cursor):
        raise BadUserInput(
            f"after: {quote(cursor)} is not a cursor this API returned", argument="after"
        )
    return key
