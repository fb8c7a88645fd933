"""How a book is written to Redis: one HSET when it is new, one replace step when it exists.

A book is one Hash, so a new book is a single HSET (atomic, one key, fine on a cluster). A
book that exists is replaced by a small script on its one key, which removes the fields it no
longer has and sets the rest in one step: readers never see half a book, and a key an earlier
version stored as a JSON document is replaced whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lookalike.services.books.records import BOOK_FIELDS, VECTOR_FIELD

# Every field a stored book may have (book_records.book_hash).
STORED_FIELDS = ("id_number", *BOOK_FIELDS, "inventory_status", "digests", VECTOR_FIELD)

# KEYS[1] the book; ARGV[1] how many field names follow to remove, then field/value pairs.
REPLACE_BOOK = """
local key, drop = KEYS[1], tonumber(ARGV[1])
if redis.call('TYPE', key).ok ~= 'hash' then redis.call('DEL', key) end
if drop > 0 then redis.call('HDEL', key, unpack(ARGV, 2, drop + 1)) end
redis.call('HSET', key, unpack(ARGV, drop + 2))
return 1
"""


def write_book(
    pipe: Any,
    key: str,
    fields: Mapping[str, str | bytes],
    *,
    existed: bool,
    keep_vector: bool = False,
) -> None:
    """Queue the write of one book on a pipeline. ``keep_vector``: the stored vector stays
    (the description did not change), whatever ``fields`` holds."""
    if not existed:
        pipe.hset(key, mapping=dict(fields))
        return
    fields = {k: v for k, v in fields.items() if not (keep_vector and k == VECTOR_FIELD)}
    gone = [
        name
        for name in STORED_FIELDS
        if name not in fields and not (keep_vector and name == VECTOR_FIELD)
    ]
    pairs = [value for pair in fields.items() for value in pair]
    pipe.execute_command("EVAL", REPLACE_BOOK, 1, key, len(gone), *gone, *pairs)
