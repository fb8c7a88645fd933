"""Book records as the catalogue stores them, and the checks a source record must pass.

A source record is one JSON object in the course's shape (id, title, author, description,
genres, editions, inventory, metrics, pages, url, year_published). Ids are decimal integers
written as strings without leading zeros: the API keeps them as strings, the index sorts
pages by their number and leaves a book out of its own neighbours by it.

In Redis a book is one Hash (see ``book_index``): each API field its own hash field, as text,
so a search can return any of them on its own. Numbers are decimal text, ``editions`` and
``inventory`` JSON text, ``genres`` and the inventory's distinct statuses joined by ``|`` (the
TAG separator), ``digests`` the hashes a reload compares, ``embedding`` the vector blob. A
field with no value is absent (an empty text would fail a NUMERIC field's indexing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.services.core.errors import CatalogueError

REQUIRED_FIELDS = ("id", "title", "author", "description")
VECTOR_FIELD = "embedding"
MAX_ID_DIGITS = 15
TAG_SEPARATOR = "|"

# The hash fields a book is read from, in this order (HMGET, a search's RETURN).
BOOK_FIELDS = (
    "title", "author", "description", "genres", "editions", "inventory",
    "pages", "url", "year_published", "rating", "rating_votes",
)  # fmt: skip


def is_book_id(text: str) -> bool:
    """Book ids are decimal integers of at most 15 digits, written as strings."""
    return 0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class InventoryItem:
    stock_id: str
    status: str


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode()


def _optional_text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _tags(value: bytes | None) -> tuple[str, ...]:
    return tuple(value.decode().split(TAG_SEPARATOR)) if value else ()


def _editions(value: bytes | None) -> tuple[str, ...]:
    return tuple(json.loads(value)) if value else ()


def _inventory(value: bytes | None) -> tuple[InventoryItem, ...]:
    pairs = json.loads(value) if value else ()
    return tuple(InventoryItem(stock_id=stock_id, status=status) for stock_id, status in pairs)


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


# Each hash field's decoding; a field with no value is absent from the hash (None here).
DECODERS: dict[str, Callable[[bytes | None], Any]] = {
    "title": _text,
    "author": _text,
    "description": _text,
    "genres": _tags,
    "editions": _editions,
    "inventory": _inventory,
    "pages": _int,
    "url": _optional_text,
    "year_published": _int,
    "rating": _float,
    "rating_votes": _int,
}
assert tuple(DECODERS) == BOOK_FIELDS
KNOWN_FIELDS = frozenset(BOOK_FIELDS)
FIELD_KEYS = {name: name.encode() for name in BOOK_FIELDS}  # as replies name them
VECTOR_KEY = VECTOR_FIELD.encode()


@dataclass(frozen=True, slots=True)
class BookFields:
    """What a read returns of each book: some of its fields, and its vector or not.

    A query asks for what its selection shows (``title`` alone, say) and for the vector only
    when a deeper level will search from the book: the rest of a book is never read.
    """

    names: frozenset[str]
    vector: bool = False

    def __post_init__(self) -> None:
        if not self.names <= KNOWN_FIELDS:  # a subset test: no set made for every request
            unknown = sorted(self.names - KNOWN_FIELDS)
            raise ValueError(f"books have no field {unknown[0]!r}")

    def __or__(self, other: BookFields) -> BookFields:
        if self.covers(other):  # the usual case (a search adding what picking reads: nothing)
            return self
        return BookFields(self.names | other.names, self.vector or other.vector)

    def covers(self, other: BookFields) -> bool:
        return other.names <= self.names and (self.vector or not other.vector)

    def returned(self) -> list[str]:
        """The hash fields to read, in a fixed order (``embedding`` last when asked)."""
        names = [name for name in BOOK_FIELDS if name in self.names]
        return [*names, VECTOR_FIELD] if self.vector else names


ALL_FIELDS = BookFields(frozenset(BOOK_FIELDS), vector=True)


class Book:
    """A book as far as it was read: its id, the fields a query asked for, maybe its vector.

    Reading a field that was not read is an AttributeError, never a silent default: a query
    that forgot to ask for a field fails loudly in tests instead of answering "".
    """

    __slots__ = ("fields", "id", "vector", *BOOK_FIELDS)

    id: str
    fields: BookFields
    vector: bytes | None  # the blob as the index reads it; None: no embedding (or not read)
    title: str
    author: str
    description: str
    genres: tuple[str, ...]
    editions: tuple[str, ...]
    inventory: tuple[InventoryItem, ...]
    pages: int | None
    url: str | None
    year_published: int | None
    rating: float | None
    rating_votes: int | None

    def __init__(
        self, book_id: str, fields: BookFields, values: Mapping[bytes, bytes | None]
    ) -> None:
        """From the hash fields a read or a search returned, by their names as bytes, as
        Redis replies (absent ones missing or None): no reply is copied to be read."""
        self.id = book_id
        self.fields = fields
        self.vector = values.get(VECTOR_KEY) if fields.vector else None
        for name in fields.names:
            setattr(self, name, DECODERS[name](values.get(FIELD_KEYS[name])))

    @property
    def embedded(self) -> bool:
        """Whether the book has a vector, so neighbours (a book with no description has none).
        Known only when the vector was read."""
        if not self.fields.vector:
            raise AttributeError("the vector of this book was not read")
        return self.vector is not None

    def merged(self, other: Book) -> Book:
        """This book with what another read of it added (the two reads' fields together)."""
        if self.fields.covers(other.fields):
            return self
        merged = Book.__new__(Book)
        merged.id = self.id
        merged.fields = self.fields | other.fields
        for name in other.fields.names:
            setattr(merged, name, getattr(other, name))
        for name in self.fields.names:
            setattr(merged, name, getattr(self, name))
        merged.vector = self.vector if self.fields.vector else other.vector
        return merged


def book_hash(record: Mapping[str, Any], vector: bytes | None) -> dict[str, str | bytes]:
    """The hash fields of a (validated) source record, with its vector blob if it has one."""
    metrics = record.get("metrics") or {}
    inventory = record.get("inventory") or []
    values: dict[str, Any] = {
        "id_number": record["id"],
        "title": record["title"],
        "author": record["author"],
        "description": record["description"],
        "genres": TAG_SEPARATOR.join(record.get("genres") or []),
        "editions": _json(record.get("editions")) if record.get("editions") else None,
        "inventory": _json([[i["stock_id"], i["status"]] for i in inventory])
        if inventory
        else None,
        "inventory_status": TAG_SEPARATOR.join(sorted({i["status"] for i in inventory})),
        "pages": record.get("pages"),
        "url": record.get("url"),
        "year_published": record.get("year_published"),
        "rating": metrics.get("score"),
        "rating_votes": metrics.get("rating_votes"),
        "digests": record_digests(record),
        "embedding": vector,
    }
    return {
        name: value if isinstance(value, (str, bytes)) else repr(value)
        for name, value in values.items()
        if value is not None and value != ""
    }


def record_digests(record: Mapping[str, Any]) -> str:
    """What a reload compares: the whole record's hash, then its description's (128 bits each)."""
    return content_hash(record)[:32] + sha256_text(record["description"])[:32]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(record: Mapping[str, Any]) -> str:
    """A hash of the whole source record, so a reload can tell 'unchanged' cheaply."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return sha256_text(canonical)


def validate_record(record: Any, origin: str) -> dict[str, Any]:
    """Refuse a record the API could not serve, naming the file it came from."""
    if not isinstance(record, dict):
        raise CatalogueError(f"{origin}: a book must be a JSON object")
    missing = [f for f in REQUIRED_FIELDS if not isinstance(record.get(f), str)]
    if missing:
        raise CatalogueError(f"{origin}: missing or non-string field(s) {', '.join(missing)}")
    book_id = record["id"]
    if not is_book_id(book_id) or book_id != str(int(book_id)):
        raise CatalogueError(
            f"{origin}: id must be a decimal integer without leading zeros, got {book_id!r}"
        )
    problem = _shape_problem(record)
    if problem:
        raise CatalogueError(f"{origin}: {problem}")
    return record


def _shape_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with the optional fields' types, if anything."""

    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    def integer(value: Any) -> bool:
        return value is None or (isinstance(value, int) and not isinstance(value, bool))

    def number(value: Any) -> bool:
        return integer(value) or isinstance(value, float)

    metrics = record.get("metrics") or {}
    inventory = record.get("inventory") or []
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("genres must be a list of strings", lambda: strings(record.get("genres") or [])),
        ("editions must be a list of strings", lambda: strings(record.get("editions") or [])),
        (
            "inventory must be a list of {stock_id, status} strings",
            lambda: (
                isinstance(inventory, list)
                and all(
                    isinstance(i, dict)
                    and isinstance(i.get("stock_id"), str)
                    and isinstance(i.get("status"), str)
                    for i in inventory
                )
            ),
        ),
        (
            f"genres and inventory statuses must not contain {TAG_SEPARATOR!r}",
            lambda: (
                not any(
                    TAG_SEPARATOR in value
                    for value in [*(record.get("genres") or []), *(i["status"] for i in inventory)]
                )
            ),
        ),
        (
            "pages and year_published must be integers",
            lambda: integer(record.get("pages")) and integer(record.get("year_published")),
        ),
        (
            "url must be a string",
            lambda: record.get("url") is None or isinstance(record["url"], str),
        ),
        (
            "metrics must hold a numeric score and an integer rating_votes",
            lambda: (
                isinstance(metrics, dict)
                and number(metrics.get("score"))
                and integer(metrics.get("rating_votes"))
            ),
        ),
    ]
    return next((message for message, ok in checks if not ok()), None)


def read_source_dir(source: Path) -> Iterator[dict[str, Any]]:
    """Every ``*.json`` book in a folder, as the course's dataset lays them out."""
    if not source.is_dir():
        raise CatalogueError(f"{source} is not a folder of book JSON files")
    paths = sorted(source.glob("*.json"))
    if not paths:
        raise CatalogueError(f"{source} holds no *.json book files")
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogueError(f"{path}: {exc}") from exc
        yield validate_record(record, str(path))
