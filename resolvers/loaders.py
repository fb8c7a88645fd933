"""Per-request DataLoaders: everything one nesting level asks for, in one batch.

GraphQL resolves the ``similar`` fields of all books at a level before any of their children,
so the loaders see the whole level at once and hand it to the catalogue, which spends one
Redis round trip on it: the vector queries return the books they find, with the fields the
query shows and the vectors the next level searches from. Keys are the services' request
objects, so two fields asking the same thing share one query. Every book read in the request
is kept (its reads merged), so a book asked for twice is read once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from strawberry.dataloader import DataLoader

from lookalike.services.books.catalogue import Catalogue, Match, RadiusPage
from lookalike.services.books.records import Book, BookFields
from lookalike.services.books.requests import (
    RadiusRequest,
    RecommendRequest,
    SearchRequest,
    SimilarRequest,
)
from lookalike.services.core.errors import BookNotFound
from lookalike.services.embeddings.query_vectors import QueryEmbeddings
from lookalike.services.faces.store import EnrolledFace, FaceStore, Person


@dataclass(frozen=True, slots=True)
class BookRead:
    book_id: str
    fields: BookFields


class Loaders:
    """A request's loaders, each made when first asked for (a request uses one or two)."""

    def __init__(self, catalogue: Catalogue, faces: FaceStore, queries: QueryEmbeddings) -> None:
        self.catalogue = catalogue
        self.faces = faces
        self.queries = queries
        self.seen: dict[str, Book] = {}  # every book this request read, its reads merged

    @cached_property
    def books(self) -> DataLoader[BookRead, Book | None]:
        return DataLoader(load_fn=self._load_books)

    @cached_property
    def similar(self) -> DataLoader[SimilarRequest, list[Match]]:
        return DataLoader(load_fn=self._load_similar)

    @cached_property
    def radius(self) -> DataLoader[RadiusRequest, RadiusPage]:
        return DataLoader(load_fn=self._load_radius)

    @cached_property
    def search(self) -> DataLoader[SearchRequest, list[Match]]:
        return DataLoader(load_fn=self._load_search)

    @cached_property
    def recommend(self) -> DataLoader[RecommendRequest, list[Match]]:
        return DataLoader(load_fn=self._load_recommend)

    @cached_property
    def people(self) -> DataLoader[str, Person | None]:
        return DataLoader(load_fn=self.faces.get_many)

    @cached_property
    def enrolled_faces(self) -> DataLoader[str, list[EnrolledFace]]:
        """Each person's faces: the ``faces`` of a whole page of people in one round trip."""
        return DataLoader(load_fn=self.faces.faces_of_many)

    def faces_changed(self, person_id: str) -> None:
        """This person's faces changed: read them again if this request asks."""
        with contextlib.suppress(KeyError):  # DataLoader.clear: KeyError if never loaded
            self.enrolled_faces.clear(person_id)

    def remember(self, books: Sequence[Book]) -> None:
        for book in books:
            known = self.seen.get(book.id)
            self.seen[book.id] = book if known is None else known.merged(book)

    async def _load_books(self, reads: Sequence[BookRead]) -> list[Book | None]:
        """Books by id: those this request has read with the fields asked are not read
        again; the rest in one pipeline, with every field any of them is asked for."""
        wanted = {read.book_id: read.fields for read in reads}
        missing = [
            book_id
            for book_id, fields in wanted.items()
            if not (book_id in self.seen and self.seen[book_id].fields.covers(fields))
        ]
        if missing:
            fields = BookFields(frozenset(), vector=False)
            for read in reads:
                fields = fields | read.fields
            found = await self.catalogue.read(missing, fields)
            self.remember([book for book in found if book is not None])
            absent = {i for i, book in zip(missing, found, strict=True) if book is None}
        else:
            absent = set()
        return [None if read.book_id in absent else self.seen[read.book_id] for read in reads]

    async def _sources(self, book_ids: Sequence[str]) -> dict[str, Book]:
        """The books searched from: remembered by the resolvers (the level above returned
        them, vectors included); one asked for by id alone is read here."""
        unseen = [book_id for book_id in dict.fromkeys(book_ids) if book_id not in self.seen]
        if unseen:
            found = await self.catalogue.read(unseen, BookFields(frozenset(), vector=True))
            self.remember([book for book in found if book is not None])
        return self.seen

    async def _with_vectors(self, book_ids: Sequence[str]) -> dict[str, Book]:
        """These books with their vectors: those this request read with them as they are,
        the rest in one pipeline (an unknown id is missing from the answer)."""
        wanted = list(dict.fromkeys(book_ids))
        unread = [i for i in wanted if i not in self.seen or not self.seen[i].fields.vector]
        if unread:
            found = await self.catalogue.read(unread, BookFields(frozenset(), vector=True))
            self.remember([book for book in found if book is not None])
        return {i: self.seen[i] for i in wanted if i in self.seen and self.seen[i].fields.vector}

    async def _load_similar(self, requests: Sequence[SimilarRequest]) -> list[list[Match]]:
        """Every similar() of a level in one pipeline."""
        sources = await self._sources([request.book_id for request in requests])
        found = await self.catalogue.similar(requests, sources)
        self.remember([match.book for matches in found for match in matches])
        return found

    async def _load_radius(self, requests: Sequence[RadiusRequest]) -> list[RadiusPage]:
        sources = await self._sources([request.book_id for request in requests])
        pages = await self.catalogue.within_radius(requests, sources)
        self.remember([match.book for page in pages for match in page.matches])
        return pages

    async def _load_search(self, requests: Sequence[SearchRequest]) -> list[list[Match]]:
        """Every searchBooks of the request: one cache lookup, one model call for the texts
        not cached, one KNN pipeline that returns the books found."""
        vectors = await self.queries.vectors([request.text for request in requests])
        found = await self.catalogue.search(requests, vectors)
        self.remember([match.book for matches in found for match in matches])
        return found

    async def _load_recommend(
        self, requests: Sequence[RecommendRequest]
    ) -> list[list[Match] | BaseException]:
        """Every recommend of the request: one read of the liked and disliked books' vectors
        (none for those already read with them), one KNN pipeline. A request naming an
        unknown book is BOOK_NOT_FOUND and searches nothing; the others still run."""
        examples = await self._with_vectors([i for r in requests for i in r.examples()])
        unknown = {r: next((i for i in r.examples() if i not in examples), None) for r in requests}
        runnable = [r for r in requests if unknown[r] is None]
        found = dict(zip(runnable, await self.catalogue.recommend(runnable, examples), strict=True))
        self.remember([match.book for matches in found.values() for match in matches])
        return [
            found[r] if (missing := unknown[r]) is None else BookNotFound.for_id(missing)
            for r in requests
        ]
