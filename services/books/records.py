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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lookalike.services.core.errors import CatalogueError

REQUIRED_FIELDS = ("id", "title", "author", "description")
# Every field of a source record (a JSON object, a CSV row): the course's shape.
RECORD_FIELDS = (
    "id", "title", "author", "description", "genres", "editions", "inventory", "metrics",
    "pages", "url", "year_published",
)  # fmt: skip
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


class RecordProblem(ValueError):
    """What is wrong with one record: the field, and why (the caller says where it came from)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


# What a record's fields may hold: enough for any real book, small enough that one record
# cannot fill Redis or a model's batch (the shipped catalogue is far inside every bound).
MAX_TEXT = {"title": 1_000, "author": 1_000, "description": 20_000, "url": 2_000}
MAX_ITEMS = {"genres": 100, "editions": 100, "inventory": 1_000}
MAX_ITEM_TEXT = 200  # a genre, an edition, a stock id, a status
INTEGER_RANGES = {"pages": (0, 1_000_000), "year_published": (-5_000, 5_000)}
MAX_VOTES = 10**12
MAX_SCORE = 5.0


def validate_record(record: Any, origin: str) -> dict[str, Any]:
    """Refuse a record the API could not serve, naming where it came from and the field."""
    try:
        check_record(record)
    except RecordProblem as problem:
        raise CatalogueError(f"{origin}: {problem}", field=problem.field) from None
    return record  # type: ignore[no-any-return]


def check_record(record: Any) -> None:
    """RecordProblem naming the first field the stored layout cannot hold."""
    if not isinstance(record, dict):
        raise RecordProblem("record", "a book must be a JSON object")
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    if unknown:
        raise RecordProblem(unknown[0], f"no such field (the fields: {', '.join(RECORD_FIELDS)})")
    for name in REQUIRED_FIELDS:
        if not isinstance(record.get(name), str):
            raise RecordProblem(name, "required, a string")
    book_id = record["id"]
    if not is_book_id(book_id) or book_id != str(int(book_id)):
        raise RecordProblem(
            "id", f"a decimal integer of 1 to 15 digits without leading zeros, got {book_id!r:.40}"
        )
    for name, most in MAX_TEXT.items():
        value = record.get(name)
        if value is None and name not in REQUIRED_FIELDS:
            continue
        if not isinstance(value, str):
            raise RecordProblem(name, "must be a string")
        _text_bounds(name, value, most)
    for name in ("genres", "editions"):
        values = record.get(name)
        if values is None:
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RecordProblem(name, "must be a list of strings")
        _list_bounds(name, values)
    _check_inventory(record.get("inventory"))
    for name, (low, high) in INTEGER_RANGES.items():
        _integer(name, record.get(name), low, high)
    _check_metrics(record.get("metrics"))


def _text_bounds(name: str, value: str, most: int) -> None:
    if len(value) > most:
        raise RecordProblem(name, f"at most {most:,} characters, got {len(value):,}")
    if "\x00" in value:
        raise RecordProblem(name, "must not hold NUL characters")


def _list_bounds(name: str, values: list[str]) -> None:
    if len(values) > MAX_ITEMS[name]:
        raise RecordProblem(name, f"at most {MAX_ITEMS[name]} items, got {len(values)}")
    for value in values:
        _text_bounds(name, value, MAX_ITEM_TEXT)
        if name == "genres" and TAG_SEPARATOR in value:
            raise RecordProblem(name, f"a genre must not contain {TAG_SEPARATOR!r}")


def _check_inventory(inventory: Any) -> None:
    if inventory is None:
        return
    shape = "must be a list of {stock_id, status} objects of strings"
    if not isinstance(inventory, list) or not all(
        isinstance(i, dict)
        and set(i) == {"stock_id", "status"}
        and isinstance(i["stock_id"], str)
        and isinstance(i["status"], str)
        for i in inventory
    ):
        raise RecordProblem("inventory", shape)
    if len(inventory) > MAX_ITEMS["inventory"]:
        raise RecordProblem("inventory", f"at most {MAX_ITEMS['inventory']} items")
    for item in inventory:
        _text_bounds("inventory", item["stock_id"], MAX_ITEM_TEXT)
        _text_bounds("inventory", item["status"], MAX_ITEM_TEXT)
        if TAG_SEPARATOR in item["status"]:
            raise RecordProblem("inventory", f"a status must not contain {TAG_SEPARATOR!r}")


def _integer(name: str, value: Any, low: int, high: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordProblem(name, f"must be an integer, got {value!r:.40}")
    if not low <= value <= high:
        raise RecordProblem(name, f"must be between {low} and {high}, got {value}")


def _check_metrics(metrics: Any) -> None:
    if metrics is None:
        return
    if not isinstance(metrics, dict) or not set(metrics) <= {"score", "rating_votes"}:
        raise RecordProblem("metrics", "must be an object of score and rating_votes")
    score = metrics.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise RecordProblem("metrics.score", f"must be a number, got {score!r:.40}")
        if not 0 <= score <= MAX_SCORE:  # NaN fails too
            raise RecordProblem("metrics.score", f"must be between 0 and 5, got {score}")
    _integer("metrics.rating_votes", metrics.get("rating_votes"), 0, MAX_VOTES)
