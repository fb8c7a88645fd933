"""Book resolvers: argument checks and loader calls, returning domain objects.

The schema layer wraps what these return in its Strawberry types; nothing here knows GraphQL.
Arguments are checked before any loader is touched, so a bad ``k`` costs no Redis command.
"""

from __future__ import annotations

from lookalike.resolvers import cursors
from lookalike.resolvers.context import Context
from lookalike.resolvers.loaders import Match, RadiusMatches
from lookalike.services.book_filters import BookFilter
from lookalike.services.book_records import Book, is_book_id
from lookalike.services.catalogue import BookPage, validate_radius, validate_similar
from lookalike.services.errors import BookNotFound
from lookalike.services.query_embeddings import validate_text


async def book(ctx: Context, book_id: str) -> Book:
    """An id that cannot be a book's is not looked up: it is not found, at no cost."""
    found = await ctx.loaders.books.load(book_id) if is_book_id(book_id) else None
    if found is None:
        raise BookNotFound.for_id(book_id)
    return found


async def similar(ctx: Context, source: Book, k: int, facets: BookFilter) -> list[Match]:
    validate_similar(k)
    facets.validate()
    ctx.loaders.books.prime(source.id, source)
    return await ctx.loaders.similar.load((source.id, k, facets))


async def within_radius(
    ctx: Context, source: Book, radius: float, first: int, offset: int, facets: BookFilter
) -> RadiusMatches:
    validate_radius(radius, first, offset)
    facets.validate()
    ctx.loaders.books.prime(source.id, source)
    return await ctx.loaders.radius.load((source.id, radius, first, offset, facets))


async def search(ctx: Context, text: str, k: int, facets: BookFilter) -> list[Match]:
    validate_text(text)
    validate_similar(k)
    facets.validate()
    return await ctx.loaders.search.load((text, k, facets))


async def genres(ctx: Context) -> list[tuple[str, int]]:
    return await ctx.catalogue.genre_counts()


async def books_page(ctx: Context, first: int, after: str | None) -> tuple[BookPage, list[Book]]:
    page = await ctx.catalogue.page(first, None if after is None else decode_cursor(after))
    found = await ctx.loaders.books.load_many(page.book_ids)
    return page, [b for b in found if b is not None]


def encode_cursor(book_id: str) -> str:
    return cursors.encode("book", book_id)


def decode_cursor(cursor: str) -> str:
    return cursors.decode("book", cursor, is_book_id)
