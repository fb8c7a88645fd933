"""The book types and queries. Each type wraps a domain record from the services layer."""

from __future__ import annotations

import strawberry

from lookalike.resolvers import books
from lookalike.resolvers.context import Context
from lookalike.resolvers.loaders import Match
from lookalike.schema.pagination import Connection
from lookalike.services import book_filters as facets_module
from lookalike.services.book_records import Book as BookRecord

Info = strawberry.Info[Context, None]


@strawberry.type(description="One physical copy of a book and what it is doing now.")
class InventoryItem:
    stock_id: str
    status: str = strawberry.field(description="available, on_loan or maintenance.")


@strawberry.type(description="A book of the catalogue.")
class Book:
    id: strawberry.ID
    title: str
    author: str
    description: str = strawberry.field(
        description="May be empty: such a book has no embedding, so no neighbours."
    )
    genres: list[str]
    editions: list[str]
    pages: int | None
    year_published: int | None
    url: str | None
    rating: float | None = strawberry.field(description="Average reader score, 0 to 5.")
    rating_votes: int | None
    record: strawberry.Private[BookRecord]

    @classmethod
    def from_record(cls, record: BookRecord) -> Book:
        return cls(
            id=strawberry.ID(record.id),
            title=record.title,
            author=record.author,
            description=record.description,
            genres=list(record.genres),
            editions=list(record.editions),
            pages=record.pages,
            year_published=record.year_published,
            url=record.url,
            rating=record.rating,
            rating_votes=record.rating_votes,
            record=record,
        )

    @strawberry.field
    def inventory(self) -> list[InventoryItem]:
        return [InventoryItem(stock_id=i.stock_id, status=i.status) for i in self.record.inventory]

    @strawberry.field(
        description="The k nearest other books by description (cosine distance), nearest "
        "first, among those the filter lets through. Exactly k unless fewer books match; "
        "never this book itself."
    )
    async def similar(
        self, info: Info, k: int = 5, filter: BookFilter | None = None
    ) -> list[BookMatch]:
        found = await books.similar(info.context, self.record, k, _facets(filter))
        return _matches(found)

    @strawberry.field(
        description="Every other book within cosine distance r (0 to 2), nearest first, "
        "a page at a time, with the total count of matches."
    )
    async def within_radius(
        self,
        info: Info,
        r: float,
        filter: BookFilter | None = None,
        first: int = 10,
        offset: int = 0,
    ) -> RadiusResult:
        facets = _facets(filter)
        found = await books.within_radius(info.context, self.record, r, first, offset, facets)
        return RadiusResult(total_count=found.total, matches=_matches(found.matches))


@strawberry.input(
    description="Narrows a vector search inside Redis. A list matches any of its values; "
    "fields given together must all match; genres and authors match whole values as stored, "
    "ignoring case; an unknown value matches nothing."
)
class BookFilter:
    genres: list[str] | None = None
    authors: list[str] | None = None
    year_from: int | None = strawberry.field(default=None, description="Published in or after.")
    year_to: int | None = strawberry.field(default=None, description="Published in or before.")
    min_rating: float | None = strawberry.field(default=None, description="Average score, 0-5.")
    available: bool | None = strawberry.field(
        default=None,
        description="true: at least one copy is available now; false: none is.",
    )


def _facets(given: BookFilter | None) -> facets_module.BookFilter:
    if given is None:
        return facets_module.NO_FILTER
    return facets_module.BookFilter(
        genres=tuple(given.genres) if given.genres is not None else None,
        authors=tuple(given.authors) if given.authors is not None else None,
        year_from=given.year_from,
        year_to=given.year_to,
        min_rating=given.min_rating,
        available=given.available,
    )


@strawberry.type
class GenreCount:
    name: str
    count: int


@strawberry.type(description="A neighbour and its cosine distance (0 identical, 2 opposite).")
class BookMatch:
    book: Book
    distance: float


@strawberry.type
class RadiusResult:
    total_count: int
    matches: list[BookMatch]


def _matches(found: list[Match]) -> list[BookMatch]:
    return [BookMatch(book=Book.from_record(m.book), distance=m.distance) for m in found]


@strawberry.type
class BookQuery:
    @strawberry.field(description="A book by id; null (with BOOK_NOT_FOUND) when there is none.")
    async def book(self, info: Info, id: strawberry.ID) -> Book | None:
        return Book.from_record(await books.book(info.context, str(id)))

    @strawberry.field(
        description="The k books whose descriptions are nearest in meaning to the text "
        "(1 to 2,000 characters), embedded with the catalogue's model."
    )
    async def search_books(
        self, info: Info, text: str, k: int = 10, filter: BookFilter | None = None
    ) -> list[BookMatch]:
        return _matches(await books.search(info.context, text, k, _facets(filter)))

    @strawberry.field(description="Every genre with its number of books, most books first.")
    async def genres(self, info: Info) -> list[GenreCount]:
        return [GenreCount(name=n, count=c) for n, c in await books.genres(info.context)]

    @strawberry.field(description="The catalogue in id order, a page at a time (first: 0 to 100).")
    async def books(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Book]:
        page, found = await books.books_page(info.context, 20 if first is None else first, after)
        return Connection[Book].of(
            [Book.from_record(b) for b in found],
            lambda book: books.encode_cursor(book.id),
            total=page.total,
            has_next=page.has_next,
            after=after,
        )
