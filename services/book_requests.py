"""What a caller may ask of the catalogue, each request checking its own bounds once.

A request is made where the arguments arrive (a resolver, a command), refuses bad values
there with BAD_USER_INPUT before anything runs, and then travels unchanged: it is the
dataloader's key (frozen, so hashable: two fields asking the same thing share one query) and
the catalogue's argument. Nothing downstream checks it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.services.book_filters import NO_FILTER, BookFilter
from lookalike.services.book_records import ALL_FIELDS, BookFields
from lookalike.services.errors import check_range
from lookalike.services.query_embeddings import validate_text

MAX_K = 100
MAX_PAGE = 100
MAX_OFFSET = 10_000  # Redis's default MAXSEARCHRESULTS
MAX_DISTANCE = 2.0  # cosine distance in Redis runs from 0 to 2


@dataclass(frozen=True, slots=True)
class SimilarRequest:
    """The k nearest other books of one book, among those the filter lets through."""

    book_id: str
    k: int = 5
    facets: BookFilter = NO_FILTER
    fields: BookFields = ALL_FIELDS  # what to return of each book found

    def __post_init__(self) -> None:
        check_range("k", self.k, 1, MAX_K)
        self.facets.validate()


@dataclass(frozen=True, slots=True)
class RadiusRequest:
    """Every other book within cosine distance ``radius``: a page of them, and a count."""

    book_id: str
    radius: float
    first: int = 10
    offset: int = 0
    facets: BookFilter = NO_FILTER
    fields: BookFields = ALL_FIELDS

    def __post_init__(self) -> None:
        check_range("r", self.radius, 0, MAX_DISTANCE)
        check_range("first", self.first, 0, MAX_PAGE)
        check_range("offset", self.offset, 0, MAX_OFFSET)
        self.facets.validate()


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """The k books whose descriptions are nearest in meaning to a text."""

    text: str
    k: int = 10
    facets: BookFilter = NO_FILTER
    fields: BookFields = ALL_FIELDS

    def __post_init__(self) -> None:
        validate_text(self.text)
        check_range("k", self.k, 1, MAX_K)
        self.facets.validate()


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Books in id order after a book id (keyset paging)."""

    first: int = 20
    after_id: str | None = None
    fields: BookFields = ALL_FIELDS

    def __post_init__(self) -> None:
        check_range("first", self.first, 0, MAX_PAGE)
