"""Book resolvers: loader calls with the services' request objects, returning domain objects.

The schema layer makes the requests (which check their own arguments, so a bad ``k`` costs
no Redis command) and serves what these return; nothing here knows GraphQL.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from lookalike.resolvers import cursors
from lookalike.resolvers.context import Context
from lookalike.resolvers.loaders import BookRead
from lookalike.services.books.catalogue import BookPage, Match, RadiusPage
from lookalike.services.books.loading.changes import BookChanges
from lookalike.services.books.loading.changes import delete_books as delete
from lookalike.services.books.loading.changes import upsert_books as upsert
from lookalike.services.books.records import Book, BookFields, is_book_id
from lookalike.services.books.requests import (
    PageRequest,
    RadiusRequest,
    RecommendRequest,
    SearchRequest,
    SimilarRequest,
)
from lookalike.services.core.errors import BookNotFound


async def book(ctx: Context, book_id: str, fields: BookFields) -> Book:
    """An id that cannot be a book's is not looked up: it is not found, at no cost."""
    found = await ctx.loaders.books.load(BookRead(book_id, fields)) if is_book_id(book_id) else None
    if found is None:
        raise BookNotFound.for_id(book_id)
    return found


def similar(ctx: Context, source: Book, request: SimilarRequest) -> Awaitable[list[Match]]:
    """The loader's future itself: graphql-core awaits it, with no coroutine around it for
    each of a level's hundred fields."""
    ctx.loaders.remember([source])
    return ctx.loaders.similar.load(request)


def within_radius(ctx: Context, source: Book, request: RadiusRequest) -> Awaitable[RadiusPage]:
    ctx.loaders.remember([source])
    return ctx.loaders.radius.load(request)


async def search(ctx: Context, request: SearchRequest) -> list[Match]:
    return await ctx.loaders.search.load(request)


async def recommend(ctx: Context, request: RecommendRequest) -> list[Match]:
    return await ctx.loaders.recommend.load(request)


async def genres(ctx: Context) -> list[tuple[str, int]]:
    return await ctx.catalogue.genre_counts()


async def books_page(ctx: Context, request: PageRequest) -> BookPage:
    page = await ctx.catalogue.page(request)
    ctx.loaders.remember(page.books)
    return page


def encode_cursor(book_id: str) -> str:
    return cursors.encode("book", book_id)


def decode_cursor(cursor: str) -> str:
    return cursors.decode("book", cursor, is_book_id)


async def upsert_books(ctx: Context, records: list[dict[str, Any]]) -> BookChanges:
    changes = await upsert(ctx.catalogue, records, ctx.queries.embedder)
    ctx.loaders.seen.clear()  # what this request read of the books may be stale now
    return changes


async def delete_books(ctx: Context, book_ids: list[str]) -> BookChanges:
    changes = await delete(ctx.catalogue, book_ids)
    ctx.loaders.seen.clear()
    return changes
