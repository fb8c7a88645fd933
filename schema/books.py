"""The book types and queries. Each type wraps a domain record from the services layer."""

from __future__ import annotations

import strawberry

from lookalike.resolvers import books
from lookalike.resolvers.context import Context
from lookalike.resolvers.loaders import Match
from lookalike.schema.pagination import Connection
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
        "first. Exactly k unless the catalogue has fewer; never this book itself."
    )
    async def similar(self, info: Info, k: int = 5) -> list[BookMatch]:
        return _matches(await books.similar(info.context, self.record, k))

    @strawberry.field(
        description="Every other book within cosine distance r (0 to 2), nearest first, "
        "a page at a time, with the total count of matches."
    )
    async def within_radius(
        self, info: Info, r: float, first: int = 10, offset: int = 0
    ) -> RadiusResult:
        found = await books.within_radius(info.context, self.record, r, first, offset)
        return RadiusResult(total_count=found.total, matches=_matches(found.matches))


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
