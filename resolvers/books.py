"""Book resolvers: argument checks and loader calls, returning domain objects.

The schema layer wraps what these return in its Strawberry types; nothing here knows GraphQL.
Arguments are checked before any loader is touched, so a bad ``k`` costs no Redis command.
"""

from __future__ import annotations

import base64
import binascii

from lookalike.resolvers.context import Context
from lookalike.resolvers.loaders import Match, RadiusMatches
from lookalike.services.book_records import Book
from lookalike.services.catalogue import BookPage, validate_radius, validate_similar
from lookalike.services.errors import BadUserInput, BookNotFound

_CURSOR_PREFIX = "book:"


async def book(ctx: Context, book_id: str) -> Book:
    found = await ctx.loaders.books.load(book_id)
    if found is None:
        raise BookNotFound(f"no book has id {book_id!r}", id=book_id)
    return found


async def similar(ctx: Context, source: Book, k: int) -> list[Match]:
    validate_similar(k)
    ctx.loaders.books.prime(source.id, source)
    return await ctx.loaders.similar.load((source.id, k))


async def within_radius(
    ctx: Context, source: Book, radius: float, first: int, offset: int
) -> RadiusMatches:
    validate_radius(radius, first, offset)
    ctx.loaders.books.prime(source.id, source)
    return await ctx.loaders.radius.load((source.id, radius, first, offset))


async def books_page(ctx: Context, first: int, after: str | None) -> tuple[BookPage, list[Book]]:
    page = await ctx.catalogue.page(first, None if after is None else decode_cursor(after))
    found = await ctx.loaders.books.load_many(page.book_ids)
    return page, [b for b in found if b is not None]


def encode_cursor(book_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{book_id}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    """The book id a cursor points after; anything this API would not have made is refused."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    book_id = text.removeprefix(_CURSOR_PREFIX)
    valid = book_id.isdigit() and len(book_id) <= 15 and encode_cursor(book_id) == cursor
    if not valid:
        raise BadUserInput(f"after: {cursor!r} is not a cursor this API returned", argument="after")
    return book_id
