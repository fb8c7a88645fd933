"""What a caller may ask of the catalogue, each request checking its own bounds once.

A request is made where the arguments arrive (a resolver, a command), refuses bad values
there with BAD_USER_INPUT before anything runs, and then travels unchanged: it is the
dataloader's key (frozen, so hashable: two fields asking the same thing share one query) and
the catalogue's argument. Nothing downstream checks it again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from lookalike.services.books.filters import NO_FILTER, BookFilter
from lookalike.services.books.records import ALL_FIELDS, BookFields, is_book_id
from lookalike.services.books.search.diversity import NO_DIVERSITY, Diversity
from lookalike.services.books.search.recommendations import (
    MAX_DISLIKED,
    MAX_EXCLUDED,
    MAX_LIKED,
    RecommendStrategy,
)
from lookalike.services.core.errors import BadUserInput, BookNotFound, check_range
from lookalike.services.embeddings.query_vectors import validate_text

MAX_K = 100
MAX_PAGE = 100
MAX_OFFSET = 10_000  # Redis's default MAXSEARCHRESULTS
MAX_DISTANCE = 2.0  # cosine distance in Redis runs from 0 to 2


class SearchMode(enum.Enum):
    SEMANTIC = "SEMANTIC"  # the text's vector against the descriptions' (KNN)
    KEYWORD = "KEYWORD"  # BM25 over title, author and description
    HYBRID = "HYBRID"  # both, ranked by hybrid_ranking's score


def _check_exclude(ids: tuple[str, ...]) -> None:
    if len(ids) > MAX_EXCLUDED:
        raise BadUserInput(
            f"exclude takes at most {MAX_EXCLUDED} ids, got {len(ids)}", argument="exclude"
        )


def excluded(ids: Iterable[str]) -> frozenset[str]:
    """The ids of books that may exist: any other text is no book's id, so nothing to leave
    out (an excluded id that names no book is ignored: a "seen" list may hold deleted books)."""
    return frozenset(i for i in ids if is_book_id(i))


@dataclass(frozen=True, slots=True)
class SimilarRequest:
    """The k nearest other books of one book, among those the filter lets through, but those
    excluded, picked for diversity when asked."""

    book_id: str
    k: int = 5
    facets: BookFilter = NO_FILTER
    fields: BookFields = ALL_FIELDS  # what to return of each book found
    exclude: tuple[str, ...] = ()
    choice: Diversity = NO_DIVERSITY

    def __post_init__(self) -> None:
        check_range("k", self.k, 1, MAX_K)
        self.facets.validate()
        _check_exclude(self.exclude)

    def leave_out(self) -> frozenset[str]:
        """The book itself and the books excluded."""
        return excluded(self.exclude) | {self.book_id}


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
    """The k books that best answer a text: by meaning, by its words, or both (``mode``)."""

    text: str
    k: int = 10
    facets: BookFilter = NO_FILTER
    fields: BookFields = ALL_FIELDS
    mode: SearchMode = SearchMode.HYBRID
    exclude: tuple[str, ...] = ()
    choice: Diversity = NO_DIVERSITY

    def __post_init__(self) -> None:
        validate_text(self.text)
        check_range("k", self.k, 1, MAX_K)
        self.facets.validate()
        _check_exclude(self.exclude)

    def leave_out(self) -> frozenset[str]:
        return excluded(self.exclude)


@dataclass(frozen=True, slots=True)
class RecommendRequest:
    """The k books most like the liked ones and least like the disliked ones (Qdrant's
    strategies), never one of them nor one excluded."""

    liked: tuple[str, ...]
    disliked: tuple[str, ...] = ()
    k: int = 10
    strategy: RecommendStrategy = RecommendStrategy.AVERAGE_VECTOR
    facets: BookFilter = NO_FILTER
    fields: BookFields = ALL_FIELDS
    exclude: tuple[str, ...] = ()
    choice: Diversity = NO_DIVERSITY

    def __post_init__(self) -> None:
        check_range("k", self.k, 1, MAX_K)
        for name, ids, low, high in (
            ("liked", self.liked, 1, MAX_LIKED),
            ("disliked", self.disliked, 0, MAX_DISLIKED),
        ):
            if not low <= len(ids) <= high:
                raise BadUserInput(
                    f"{name} takes {low} to {high} book ids, got {len(ids)}", argument=name
                )
        _check_exclude(self.exclude)
        self.facets.validate()
        # an id that cannot be a book's is not found, before anything is read
        unknown = next((i for i in self.examples() if not is_book_id(i)), None)
        if unknown is not None:
            raise BookNotFound.for_id(unknown)

    def examples(self) -> tuple[str, ...]:
        """The liked and disliked ids, each once."""
        return tuple(dict.fromkeys(self.liked + self.disliked))

    def leave_out(self) -> frozenset[str]:
        """Examples are never recommended, nor excluded books."""
        return excluded(self.exclude) | frozenset(self.examples())


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Books in id order after a book id (keyset paging)."""

    first: int = 20
    after_id: str | None = None
    fields: BookFields = ALL_FIELDS

    def __post_init__(self) -> None:
        check_range("first", self.first, 0, MAX_PAGE)
