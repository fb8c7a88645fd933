"""Per-request DataLoaders: everything one nesting level asks for, in one batch.

GraphQL resolves the ``similar`` fields of all books at a level before any of their children,
so the loaders see the whole level at once and hand it to the catalogue, which spends one
Redis round trip on the vector queries and one on the books they return. The loaders also
cache, so a book asked for twice in a request is read once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strawberry.dataloader import DataLoader

from lookalike.services.book_filters import BookFilter
from lookalike.services.book_records import Book
from lookalike.services.catalogue import Catalogue, Neighbour, RadiusRequest
from lookalike.services.errors import BookNotFound
from lookalike.services.face_store import FaceStore, Person
from lookalike.services.query_embeddings import QueryEmbeddings


@dataclass(frozen=True, slots=True)
class Match:
    book: Book
    distance: float


@dataclass(frozen=True, slots=True)
class RadiusMatches:
    total: int
    matches: list[Match]


SimilarKey = tuple[str, int, BookFilter]  # book id, k, filter
RadiusKey = tuple[str, float, int, int, BookFilter]  # book id, radius, first, offset, filter
SearchKey = tuple[str, int, BookFilter]  # text, k, filter


class Loaders:
    def __init__(self, catalogue: Catalogue, faces: FaceStore, queries: QueryEmbeddings) -> None:
        self.catalogue = catalogue
        self.queries = queries
        self.books = DataLoader[str, Book | None](load_fn=catalogue.get_many)
        self.search = DataLoader[SearchKey, list[Match]](load_fn=self._load_search)
        self.people = DataLoader[str, Person | None](load_fn=faces.get_many)
        self.similar = DataLoader[SimilarKey, list[Match]](load_fn=self._load_similar)
        self.radius = DataLoader[RadiusKey, RadiusMatches](load_fn=self._load_radius)

    async def _sources(self, book_ids: Sequence[str]) -> list[Book]:
        """The books whose neighbours are asked for: primed by the resolvers, so no I/O."""
        found = await self.books.load_many(book_ids)
        missing = [book_id for book_id, book in zip(book_ids, found, strict=True) if book is None]
        if missing:
            raise BookNotFound.for_id(missing[0])
        return [book for book in found if book is not None]

    async def _load_similar(self, keys: Sequence[SimilarKey]) -> list[list[Match]]:
        sources = await self._sources([book_id for book_id, _, _ in keys])
        neighbours = await self.catalogue.similar_many(
            [(book, k, facets) for book, (_, k, facets) in zip(sources, keys, strict=True)]
        )
        return await self._matches(neighbours)

    async def _load_search(self, keys: Sequence[SearchKey]) -> list[list[Match]]:
        """Every searchBooks of the request: one cache lookup, one model call for the texts
        not cached, one KNN pipeline that returns the books found."""
        vectors = await self.queries.vectors([text for text, _, _ in keys])
        neighbours = await self.catalogue.nearest_many(
            [
                (vector, k, facets, None)
                for vector, (_, k, facets) in zip(vectors, keys, strict=True)
            ]
        )
        return await self._matches(neighbours)

    async def _load_radius(self, keys: Sequence[RadiusKey]) -> list[RadiusMatches]:
        sources = await self._sources([key[0] for key in keys])
        pages = await self.catalogue.within_radius_many(
            [
                RadiusRequest(book, radius, first, offset, facets)
                for book, (_, radius, first, offset, facets) in zip(sources, keys, strict=True)
            ]
        )
        matches = await self._matches([page.neighbours for page in pages])
        return [
            RadiusMatches(total=page.total, matches=found)
            for page, found in zip(pages, matches, strict=True)
        ]

    async def _matches(self, groups: Sequence[list[Neighbour]]) -> list[list[Match]]:
        """The neighbours' books: the vector query returned them, so they go into this
        request's cache (a book read earlier in the request keeps its cached copy)."""
        for group in groups:
            for n in group:
                if n.book is not None:
                    self.books.prime(n.book_id, n.book)
        ids = list(dict.fromkeys(n.book_id for group in groups for n in group))
        books = dict(zip(ids, await self.books.load_many(ids), strict=True))
        return [
            [
                Match(book=book, distance=n.distance)
                for n in group
                if (book := books[n.book_id]) is not None  # deleted since the search
            ]
            for group in groups
        ]
