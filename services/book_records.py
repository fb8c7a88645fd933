"""Book records as the catalogue stores them, and the checks a source record must pass.

A source record is one JSON object in the course's shape (id, title, author, description,
genres, editions, inventory, metrics, pages, url, year_published). Ids are decimal integers
written as strings: the API keeps them as strings, the index sorts pages by their number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.services.errors import CatalogueError

REQUIRED_FIELDS = ("id", "title", "author", "description")
MAX_ID_DIGITS = 15


def is_book_id(text: str) -> bool:
    """Book ids are decimal integers of at most 15 digits, written as strings."""
    return 0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class InventoryItem:
    stock_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Book:
    id: str
    title: str
    author: str
    description: str
    genres: tuple[str, ...]
    editions: tuple[str, ...]
    inventory: tuple[InventoryItem, ...]
    pages: int | None
    year_published: int | None
    url: str | None
    rating: float | None
    rating_votes: int | None
    embedded: bool  # False for a book with an empty description: no neighbours
    vector: bytes | None  # its FLOAT32 blob, when it was read with the book

    @classmethod
    def from_document(
        cls, doc: Mapping[str, Any], vector: bytes | None, embedded: bool | None = None
    ) -> Book:
        metrics = doc.get("metrics") or {}
        return cls(
            id=str(doc["id"]),
            title=doc["title"],
            author=doc["author"],
            description=doc["description"],
            genres=tuple(doc.get("genres") or ()),
            editions=tuple(doc.get("editions") or ()),
            inventory=tuple(
                InventoryItem(stock_id=str(i["stock_id"]), status=str(i["status"]))
                for i in doc.get("inventory") or ()
            ),
            pages=doc.get("pages"),
            year_published=doc.get("year_published"),
            url=doc.get("url"),
            rating=metrics.get("score"),
            rating_votes=metrics.get("rating_votes"),
            embedded=vector is not None if embedded is None else embedded,
            vector=vector,
        )


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
    if not is_book_id(record["id"]):
        raise CatalogueError(f"{origin}: id must be a decimal integer, got {record['id']!r}")
    return record


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
