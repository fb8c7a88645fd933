"""The book types and queries.

The services' objects are served as they are: a ``Book`` field reads the services' book (which
holds the fields the query asked for), a ``BookMatch`` is the services' match, a
``RadiusResult`` its radius page. Nothing is copied field by field into a second type; the
resolvers here make the services' request objects (which check their own arguments) and say
which of a book's fields the selection will show.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable
from typing import Annotated, Any

import strawberry

from lookalike.resolvers import books
from lookalike.resolvers import books as books_resolvers
from lookalike.resolvers.context import Context
from lookalike.schema.operations.selections import book_fields
from lookalike.schema.types.pagination import AFTER, Connection
from lookalike.services.books import filters as facets_module
from lookalike.services.books.catalogue import Match, RadiusPage
from lookalike.services.books.loading.changes import BookChanges as Changes
from lookalike.services.books.records import Book as BookRecord
from lookalike.services.books.requests import (
    PageRequest,
    RadiusRequest,
    RecommendRequest,
    SearchMode,
    SearchRequest,
    SimilarRequest,
)
from lookalike.services.books.search.diversity import NO_DIVERSITY, Diversity
from lookalike.services.books.search.recommendations import RecommendStrategy

Info = strawberry.Info[Context, None]

strawberry.enum(SearchMode, description="How searchBooks matches the text.")
strawberry.enum(
    RecommendStrategy,
    description="How recommend combines liked and disliked books (Qdrant's recommend strategies).",
)
# Each value's description (a services enum cannot carry them: the schema applies these,
# schema/execution/schema.py)
ENUM_VALUES: dict[enum.Enum, str] = {
    SearchMode.SEMANTIC: "By meaning: the text's embedding against the descriptions' "
    '(nearest first). Finds "a boy wizard at boarding school" without those words.',
    SearchMode.KEYWORD: "By its words: BM25 over title, author and description, the title "
    "weighted highest. Misspellings and synonyms do not match.",
    SearchMode.HYBRID: "Both, ranked by similarity + 0.5 x (word match with the title or "
    "author)^3: a typed title or author comes first, a description of a book still finds it "
    "by meaning. The default.",
    RecommendStrategy.AVERAGE_VECTOR: "The books nearest to avg(liked), or to avg(liked) + "
    "(avg(liked) - avg(disliked)) with dislikes: one vector search. The default.",
    RecommendStrategy.BEST_SCORE: "Each book scored by its best similarity to a liked book "
    "when that beats its best similarity to a disliked one, else by -(best disliked "
    "similarity)^2: keeps the variety of the liked books, avoids each disliked one.",
}

NO_IDS: list[strawberry.ID] = []  # the default of the id-list arguments (never mutated)

EXCLUDE = (
    "Books never returned (already seen): k books still come back when k others match. At "
    "most 500 ids; an id that names no book is ignored."
)
DIVERSITY = (
    "0 to 1: maximal marginal relevance with lambda = 1 - diversity over the max(50, 5k) best "
    "candidates (after filter and exclusions); the first book is the best. 0: no re-ranking."
)
MAX_PER_AUTHOR = "At most this many books by one author (1 to 100; authors compared ignoring case)."
FILTER = (
    "Only books this filter lets through. It runs inside the vector search (a pre-filter), so "
    "k books still come back when at least k match; null: every book."
)
K_BOOKS = "How many books: 1 to 100 (BAD_USER_INPUT outside)."
PAGE_FIRST = "Books on this page: 0 to 100 (0 gives only totalCount and pageInfo)."

# The arguments similar, searchBooks and recommend share, typed and described once.
Excluded = Annotated[list[strawberry.ID] | None, strawberry.argument(description=EXCLUDE)]
DiversityArgument = Annotated[float | None, strawberry.argument(description=DIVERSITY)]
MaxPerAuthor = Annotated[int | None, strawberry.argument(description=MAX_PER_AUTHOR)]
HowMany = Annotated[int, strawberry.argument(description=K_BOOKS)]


@strawberry.type(description="One physical copy of a book and what it is doing now.")
class InventoryItem:
    stock_id: str = strawberry.field(
        description="The copy's own id (in the shipped catalogue: the book's id, '_', a number)."
    )
    status: str = strawberry.field(description="available, on_loan or maintenance.")


@strawberry.input(
    description="Narrows a vector search inside Redis. A list matches any of its values; "
    "fields given together must all match; genres and authors match whole values as stored, "
    "ignoring case; an unknown value matches nothing."
)
class BookFilter:
    genres: list[str] | None = strawberry.field(
        default=None,
        description="Books with at least one of these genres, as Book.genres and the genres "
        'query spell them (e.g. "horror"). At most 50 values of 1 to 200 characters.',
    )
    authors: list[str] | None = strawberry.field(
        default=None,
        description="Books by one of these authors, the whole name as Book.author gives it. "
        "At most 50 values of 1 to 200 characters.",
    )
    year_from: int | None = strawberry.field(
        default=None,
        description="Published in or after this year (-5000 to 5000); a book without a year "
        "never matches.",
    )
    year_to: int | None = strawberry.field(
        default=None,
        description="Published in or before this year (-5000 to 5000); a book without a year "
        "never matches.",
    )
    min_rating: float | None = strawberry.field(
        default=None,
        description="Average reader score at least this (0 to 5); an unrated book never matches.",
    )
    available: bool | None = strawberry.field(
        default=None,
        description="true: at least one copy is available now; false: none is.",
    )


Filtered = Annotated[BookFilter | None, strawberry.argument(description=FILTER)]


def _choice(diversity: float | None, max_per_author: int | None) -> Diversity:
    if not diversity and max_per_author is None:
        return NO_DIVERSITY  # the usual case: no object to make and check, field after field
    return Diversity(diversity or 0.0, max_per_author)


def _ids(given: list[strawberry.ID] | None) -> tuple[str, ...]:
    return tuple(str(i) for i in given or ())


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


@strawberry.type(description="A book of the catalogue.")
class Book:
    id: strawberry.ID = strawberry.field(
        description="The book's id: a decimal integer of at most 15 digits, as a string."
    )
    title: str = strawberry.field(
        description='As the catalogue spells it, a series number included ("Engineward #2").'
    )
    author: str = strawberry.field(description="The author's full name, one per book.")
    description: str = strawberry.field(
        description="May be empty: such a book has no embedding, so no neighbours."
    )
    genres: list[str] = strawberry.field(
        description='Lower-case genres, e.g. "science fiction (alternate universe)"; what '
        "BookFilter.genres matches. May be empty."
    )
    editions: list[str] = strawberry.field(
        description='The languages it is published in (e.g. "english", "spanish").'
    )
    pages: int | None = strawberry.field(description="Page count; null when unknown.")
    year_published: int | None = strawberry.field(
        description="Year of first publication; null when unknown."
    )
    url: str | None = strawberry.field(
        description="A web page about the book (Goodreads' for the shipped books); null if none."
    )
    rating: float | None = strawberry.field(
        description="Average reader score, 0 to 5; null when unrated."
    )
    rating_votes: int | None = strawberry.field(
        description="How many readers scored it: the weight of rating. Null when unknown."
    )
    inventory: list[InventoryItem] = strawberry.field(
        description="Every physical copy and its status; BookFilter.available reads it."
    )

    @strawberry.field(
        description="The k nearest other books by description (cosine distance), nearest "
        "first, among those the filter lets through and not excluded. Exactly k unless fewer "
        "books match; never this book itself. With diversity or maxPerAuthor, picked from the "
        "nearest in that order (each with its own distance).",
        graphql_type=list["BookMatch"],
    )
    def similar(
        self,
        parent: strawberry.Parent[BookRecord],
        info: Info,
        k: Annotated[int, strawberry.argument(description="How many neighbours: 1 to 100.")] = 5,
        filter: Filtered = None,
        exclude: Excluded = NO_IDS,
        diversity: DiversityArgument = 0.0,
        max_per_author: MaxPerAuthor = None,
    ) -> Awaitable[list[Match]]:
        request = SimilarRequest(
            parent.id,
            k,
            _facets(filter),
            book_fields(info, "book"),
            _ids(exclude),
            _choice(diversity, max_per_author),
        )
        return books.similar(info.context, parent, request)

    @strawberry.field(
        description="Every other book within cosine distance r (0 to 2), nearest first, "
        "a page at a time, with the total count of matches.",
        graphql_type="RadiusResult",
    )
    def within_radius(
        self,
        parent: strawberry.Parent[BookRecord],
        info: Info,
        r: Annotated[
            float,
            strawberry.argument(
                description="The radius: a cosine distance from 0 (identical) to 2 (opposite), "
                "as BookMatch.distance gives them (similar's distances show what is near)."
            ),
        ],
        filter: Filtered = None,
        first: Annotated[
            int, strawberry.argument(description="Matches on this page: 0 to 100.")
        ] = 10,
        offset: Annotated[
            int,
            strawberry.argument(
                description="Matches to skip, nearest first: 0 to 10,000 (pages by count; "
                "books loaded meanwhile may shift them)."
            ),
        ] = 0,
    ) -> Awaitable[RadiusPage]:
        fields = book_fields(info, "matches", "book")
        request = RadiusRequest(parent.id, r, first, offset, _facets(filter), fields)
        return books.within_radius(info.context, parent, request)


@strawberry.type(description="A genre and how many books have it.")
class GenreCount:
    name: str = strawberry.field(
        description="As Book.genres spells it; BookFilter.genres takes it."
    )
    count: int = strawberry.field(description="Books with this genre (a book may have several).")


@strawberry.type(description="A neighbour and its cosine distance (0 identical, 2 opposite).")
class BookMatch:
    book: Book = strawberry.field(description="The book found.")
    distance: float = strawberry.field(
        description="Cosine distance between the two embeddings: 0 identical, 1 unrelated, 2 "
        "opposite (similarity = 1 - distance)."
    )


@strawberry.type(description="One page of the books within a radius, and how many there are.")
class RadiusResult:
    total_count: int = strawberry.field(
        description="Every book within the radius that the filter lets through, on all pages."
    )
    matches: list[BookMatch] = strawberry.field(
        description="This page's matches (first, after offset), nearest first."
    )


@strawberry.type
class BookQuery:
    @strawberry.field(
        description="A book by id; null (with BOOK_NOT_FOUND) when there is none.",
        graphql_type=Book | None,
    )
    async def book(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description='The book\'s id, e.g. "9".')],
    ) -> BookRecord:
        return await books.book(info.context, str(id), book_fields(info))

    @strawberry.field(
        description="The k books that best answer the text (1 to 2,000 characters): by "
        "meaning, by its words, or both (mode). Each match carries the book's cosine distance "
        "to the text's embedding, in the order the mode ranks (SEMANTIC: nearest first; "
        "KEYWORD and HYBRID: best first, so distances need not grow).",
        graphql_type=list[BookMatch],
    )
    async def search_books(
        self,
        info: Info,
        text: Annotated[
            str,
            strawberry.argument(
                description="What the book is about, or its title or author, in any words: 1 "
                "to 2,000 characters with at least one letter or digit, no control characters "
                "(BAD_USER_INPUT otherwise)."
            ),
        ],
        k: HowMany = 10,
        filter: Filtered = None,
        mode: Annotated[
            SearchMode,
            strawberry.argument(
                description="How the text is matched; HYBRID (the default) suits a search box."
            ),
        ] = SearchMode.HYBRID,
        exclude: Excluded = NO_IDS,
        diversity: DiversityArgument = 0.0,
        max_per_author: MaxPerAuthor = None,
    ) -> list[Match]:
        request = SearchRequest(
            text,
            k,
            _facets(filter),
            book_fields(info, "book"),
            mode,
            _ids(exclude),
            _choice(diversity, max_per_author),
        )
        return await books.search(info.context, request)

    @strawberry.field(
        description="The k books most like the liked ones and unlike the disliked ones "
        "(RecommendStrategy), among those the filter lets through. Never a liked, disliked or "
        "excluded book. 1 to 50 liked, 0 to 50 disliked: an id that names no book is "
        "BOOK_NOT_FOUND. Distance: to the query vector (AVERAGE_VECTOR), or 1 - the best score "
        "(BEST_SCORE: 0 for a copy of a liked book, 1 to 2 for a book nearer a disliked one).",
        graphql_type=list[BookMatch],
    )
    async def recommend(
        self,
        info: Info,
        liked: Annotated[
            list[strawberry.ID],
            strawberry.argument(description="Ids of books the reader liked: 1 to 50."),
        ],
        disliked: Annotated[
            list[strawberry.ID] | None,
            strawberry.argument(description="Ids of books the reader disliked: 0 to 50."),
        ] = NO_IDS,
        k: HowMany = 10,
        strategy: Annotated[
            RecommendStrategy,
            strawberry.argument(description="How liked and disliked books are combined."),
        ] = RecommendStrategy.AVERAGE_VECTOR,
        filter: Filtered = None,
        exclude: Excluded = NO_IDS,
        diversity: DiversityArgument = 0.0,
        max_per_author: MaxPerAuthor = None,
    ) -> list[Match]:
        request = RecommendRequest(
            _ids(liked),
            _ids(disliked),
            k,
            strategy,
            _facets(filter),
            book_fields(info, "book"),
            _ids(exclude),
            _choice(diversity, max_per_author),
        )
        return await books.recommend(info.context, request)

    @strawberry.field(description="Every genre with its number of books, most books first.")
    async def genres(self, info: Info) -> list[GenreCount]:
        return [GenreCount(name=n, count=c) for n, c in await books.genres(info.context)]

    @strawberry.field(
        description="The catalogue in id order, a page at a time (first: 0 to 100).",
        graphql_type=Connection[Book],
    )
    async def books(
        self,
        info: Info,
        first: Annotated[int | None, strawberry.argument(description=PAGE_FIRST)] = 20,
        after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    ) -> Connection[Any]:
        after_id = None if after is None else books.decode_cursor(after)
        fields = book_fields(info, "edges", "node")
        request = PageRequest(20 if first is None else first, after_id, fields)
        page = await books.books_page(info.context, request)
        return Connection.of(
            page.books,
            lambda book: books.encode_cursor(book.id),
            total=page.total,
            has_next=page.has_next,
            after=after,
        )


@strawberry.input(description="One copy of a book: its stock id and what it is doing now.")
class InventoryItemInput:
    stock_id: str = strawberry.field(description="1 to 200 characters, unique to the copy.")
    status: str = strawberry.field(
        description="available, on_loan or maintenance (any word; not containing '|')."
    )


@strawberry.input(
    description="A book as upsertBooks takes it: the Book's fields. Strings are at most 1,000 "
    "characters (title, author), 20,000 (description), 2,000 (url), 200 (each genre, edition, "
    "stock id and status)."
)
class BookInput:
    id: strawberry.ID = strawberry.field(
        description="The book's id: a decimal integer of 1 to 15 digits without leading "
        'zeros, written as a string ("42"). A book with this id is replaced.'
    )
    title: str = strawberry.field(description="Searched by KEYWORD and HYBRID searchBooks.")
    author: str = strawberry.field(description="Matched by the authors filter, ignoring case.")
    description: str = strawberry.field(
        description="Required; may be empty (the book then has no embedding, so no "
        "neighbours). Embedded by the server when new or changed."
    )
    genres: list[str] | None = strawberry.field(
        default=None, description="At most 100; matched by the genres filter."
    )
    editions: list[str] | None = strawberry.field(default=None, description="At most 100.")
    pages: int | None = strawberry.field(default=None, description="0 to 1,000,000.")
    year_published: int | None = strawberry.field(default=None, description="-5,000 to 5,000.")
    url: str | None = strawberry.field(default=None, description="Where the book is shown.")
    rating: float | None = strawberry.field(default=None, description="Average score, 0 to 5.")
    rating_votes: int | None = strawberry.field(
        default=None, description="How many readers scored it (0 or more)."
    )
    inventory: list[InventoryItemInput] | None = strawberry.field(
        default=None, description="At most 1,000 copies."
    )

    def record(self) -> dict[str, Any]:
        """The source record this input stands for (the shape ``books load`` reads)."""
        found: dict[str, Any] = {
            "id": str(self.id),
            "title": self.title,
            "author": self.author,
            "description": self.description,
        }
        optional = {
            "genres": self.genres,
            "editions": self.editions,
            "pages": self.pages,
            "year_published": self.year_published,
            "url": self.url,
        }
        found.update((name, value) for name, value in optional.items() if value is not None)
        if self.inventory is not None:
            found["inventory"] = [
                {"stock_id": item.stock_id, "status": item.status} for item in self.inventory
            ]
        metrics = {"score": self.rating, "rating_votes": self.rating_votes}
        if any(value is not None for value in metrics.values()):
            found["metrics"] = {name: v for name, v in metrics.items() if v is not None}
        return found


@strawberry.type(description="What a change did to the catalogue, in books.")
class BookChanges:
    added: int = strawberry.field(description="Books that were not in the catalogue.")
    updated: int = strawberry.field(
        description="Books whose stored record differed in any field (re-embedded only when "
        "the description changed)."
    )
    unchanged: int = strawberry.field(description="Books stored exactly as given: not written.")
    deleted: int = strawberry.field(description="Books removed (an id of no book counts none).")


@strawberry.type
class BookMutation:
    @strawberry.mutation(
        description="Add these books, or replace the stored books with their ids: at most "
        "500 a call, ids unique in it. Every book is checked first: one bad book refuses the "
        "call (BAD_USER_INPUT naming books[i].field) and nothing changes. New descriptions are "
        "embedded by the server and count in the query cost (QUERY_TOO_COMPLEX, nothing "
        "changed, when over the limit). Needs a full API key.",
        graphql_type=BookChanges,
    )
    async def upsert_books(
        self,
        info: Info,
        books: Annotated[
            list[BookInput], strawberry.argument(description="At most 500 books, each id once.")
        ],
    ) -> Changes:
        return await books_resolvers.upsert_books(info.context, [b.record() for b in books])

    @strawberry.mutation(
        description="Remove these books (at most 500 ids a call): gone from every query and "
        "every search at once. Needs a full API key.",
        graphql_type=BookChanges,
    )
    async def delete_books(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID],
            strawberry.argument(description="At most 500 book ids; an id of no book is ignored."),
        ],
    ) -> Changes:
        return await books_resolvers.delete_books(info.context, [str(i) for i in ids])
