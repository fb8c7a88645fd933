"""Reading the book catalogue: books by id, nearest neighbours, neighbours within a radius,
text search, recommendations.

Every method takes a whole batch and spends one Redis round trip on it, whatever its size
(a second only when a search must widen its candidates: ``search_jobs``): the GraphQL
dataloaders hand over everything one nesting level asks for, the command line hands over
one item. A book is one Hash (``book_index``): reading books is one HMGET each in
a pipeline, their vector blob among the fields, and a vector query RETURNs its hits' fields,
so the books it finds need no read of their own. Reads go to a healthy replica when there
are replicas (``Reads``); on a cluster a pipeline is split by shard and sent to all at once.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redisvl.query import FilterQuery, VectorRangeQuery
from redisvl.query.filter import FilterExpression, Num, Tag

from lookalike.services.books.filters import BookFilter
from lookalike.services.books.index import BOOK_INDEX_EXTRAS, book_schema, shaping_settings
from lookalike.services.books.index_status import IndexStatus, IndexStatusReader, Reading
from lookalike.services.books.queries import BookQueries, Match
from lookalike.services.books.records import VECTOR_FIELD, Book, BookFields
from lookalike.services.books.requests import (
    PageRequest,
    RadiusRequest,
    RecommendRequest,
    SearchMode,
    SearchRequest,
    SimilarRequest,
)
from lookalike.services.books.search.answers import KeptAnswers
from lookalike.services.books.search.diversity import NO_DIVERSITY, Diversity
from lookalike.services.books.search.jobs import (
    BestScoreJob,
    HybridJob,
    KeywordJob,
    NearestJob,
    SearchJob,
    take,
)
from lookalike.services.books.search.recommendations import RecommendStrategy, average_vector_query
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.vector_math import from_blobs
from lookalike.services.redis.connection import (
    Redis,
    in_one_round_trip,
    redis_errors,
    shard_count,
)
from lookalike.services.redis.coordination.index_users import IndexUse
from lookalike.services.redis.indexes import (
    DefinitionWatch,
    definition_key,
    fingerprint,
    version_key,
)
from lookalike.services.redis.replicas import Reads
from lookalike.services.redis.searches import SearchPipeline

EXISTS = "id_number"  # every book has it: a read of it tells a book from no book

__all__ = ["BookPage", "Catalogue", "IndexStatus", "Match", "RadiusPage", "VectorSearch"]


@dataclass(frozen=True, slots=True)
class RadiusPage:
    total_count: int
    matches: list[Match]


@dataclass(frozen=True, slots=True)
class BookPage:
    books: list[Book]
    total: int
    has_next: bool


@dataclass(frozen=True, slots=True)
class VectorSearch:
    """A KNN from a vector (a book's, a search text's, a recommendation's): what the
    catalogue runs."""

    vector: bytes | None  # None: a book with no embedding, which has no neighbours
    k: int
    facets: BookFilter
    fields: BookFields
    leave_out: frozenset[str] = frozenset()  # never returned (the book itself, exclusions)
    choice: Diversity = NO_DIVERSITY
    mixed: bool = False  # a vector that is no book's or text's (AVERAGE_VECTOR)


class Catalogue:
    def __init__(self, client: Redis, settings: Settings, reads: Reads | None = None) -> None:
        self.redis = client  # the primary: writes, index status
        self.reads = reads or Reads(client)
        self.settings = settings
        self.schema = book_schema(settings)
        self._prefix = settings.key_prefix + ":"
        self.loading = False  # a (re)load is writing books: not ready, answers may be partial
        self.definition = fingerprint(self.schema, BOOK_INDEX_EXTRAS)
        self.watch = DefinitionWatch(  # converted under this process: SERVICE_UNAVAILABLE
            client,
            {definition_key(self.schema): self.definition.encode()},
            f"the book index {settings.index_name!r}",
            shaping_settings(settings),
        )
        self._searches = SearchPipeline(self.reads, settings.index_name, self.watch)
        self.queries = BookQueries(settings)
        self.answers: KeptAnswers[Match] = KeptAnswers()  # searchBooks, per catalogue version
        self.version_key = version_key(settings.index_name)
        self._run_id: str | None = None  # Redis's, when the status was last taken
        self._status = IndexStatusReader(
            client, settings.index_name, self.version_key, definition_key(self.schema)
        )
        # The books the index held when ``status`` last asked (on opening, then every few
        # seconds from the recovery watch): the query cost prices radius searches by it
        # without a round trip of its own.
        self.books = 0

    def doc_key(self, book_id: str) -> str:
        return self._prefix + book_id

    def use(self) -> IndexUse:
        """What a server announces it needs of the index (``index_users``)."""
        return IndexUse(self.settings.index_name, self.definition, shaping_settings(self.settings))

    async def read(self, book_ids: Sequence[str], fields: BookFields) -> list[Book | None]:
        """Books in the order asked, with these fields; None where there is no such book."""
        if not book_ids:
            return []
        self.watch.check()  # the vectors read would be of the other type
        names = [EXISTS, *fields.returned()]
        keys = [name.encode() for name in names]
        commands = [("HMGET", self.doc_key(book_id), *names) for book_id in book_ids]
        async with redis_errors():
            rows = await self.reads.run(lambda client: in_one_round_trip(client, commands))
        return [
            Book(book_id, fields, dict(zip(keys, row, strict=True))) if row[0] else None
            for book_id, row in zip(book_ids, rows, strict=True)
        ]

    async def similar(
        self, requests: Sequence[SimilarRequest], sources: Mapping[str, Book]
    ) -> list[list[Match]]:
        """The k nearest other books of each book (that pass its filter and are not
        excluded), nearest first, or picked for diversity. The books' vectors come with them
        (a level's query asks for the vectors of the books the next level searches from)."""
        vectors = await self.vectors_of([r.book_id for r in requests], sources)
        return await self.nearest(
            [
                VectorSearch(vector, r.k, r.facets, r.fields, r.leave_out(), r.choice)
                for r, vector in zip(requests, vectors, strict=True)
            ]
        )

    async def search(
        self, requests: Sequence[SearchRequest], vectors: Sequence[bytes]
    ) -> list[list[Match]]:
        """searchBooks: each text's k books by meaning, by words, or both (its ``mode``), all
        in one pipeline (HYBRID sends both of its queries in it). An answer kept from an
        earlier request is served while the catalogue's version is the one it was read at
        (``search_answers``): one round trip for the version, none for the searches."""
        answers: dict[SearchRequest, list[Match]] = {}
        kept = {r: hit for r in requests if (hit := self.answers.get(r)) is not None}
        if kept:
            now = await self.version()
            answers = {r: list(answer) for r, (version, answer) in kept.items() if version == now}
        todo = [(r, v) for r, v in zip(requests, vectors, strict=True) if r not in answers]
        jobs: list[SearchJob] = []
        for r, vector in todo:
            if r.mode is SearchMode.SEMANTIC:
                search = VectorSearch(vector, r.k, r.facets, r.fields, r.leave_out(), r.choice)
                jobs.append(self._nearest_job(search))
                continue
            kind = KeywordJob if r.mode is SearchMode.KEYWORD else HybridJob
            jobs.append(kind(r.text, vector, r.k, r.facets, r.fields, r.leave_out(), r.choice))
        if jobs:
            version, found = await self._rounds(jobs, version=True)
            for (request, _), answer in zip(todo, found, strict=True):
                answers[request] = answer
                if version is not None:
                    self.answers.put(request, version, answer)
        return [answers[r] for r in requests]

    async def version(self) -> bytes | None:
        """The catalogue's version: a token every writer of books or of the index changes."""
        async with redis_errors():
            found = await self.reads.run(lambda c: c.execute_command("GET", self.version_key))
        return found if isinstance(found, bytes) else None

    async def changed(self) -> None:
        """A new catalogue version: answers kept from before are not served again. Every
        writer of books or of the index calls it (a load before and after its writes)."""
        async with redis_errors():
            await self.redis.set(self.version_key, secrets.token_hex(8))

    async def ensure_version(self) -> None:
        """A version for a catalogue that has none yet (stored before versions were)."""
        async with redis_errors():
            await self.redis.set(self.version_key, secrets.token_hex(8), nx=True)

    async def recommend(
        self, requests: Sequence[RecommendRequest], examples: Mapping[str, Book]
    ) -> list[list[Match]]:
        """Each request's k books by Qdrant's AVERAGE_VECTOR or BEST_SCORE, from the vectors
        of its liked and disliked books (``examples``: read with their vectors; every id is
        there, the caller has made sure). A liked or disliked book with no description has
        no vector and counts for nothing; with no liked vector at all there is no answer."""
        jobs: list[SearchJob] = []
        for r in requests:
            liked = [v for v in (examples[i].vector for i in r.liked) if v is not None]
            disliked = [v for v in (examples[i].vector for i in r.disliked) if v is not None]
            if r.strategy is RecommendStrategy.BEST_SCORE:
                jobs.append(
                    BestScoreJob(liked, disliked, r.k, r.facets, r.fields, r.leave_out(), r.choice)
                )
                continue
            query = (
                average_vector_query(from_blobs(liked), from_blobs(disliked)).tobytes()
                if liked
                else None
            )
            search = VectorSearch(
                query, r.k, r.facets, r.fields, r.leave_out(), r.choice, mixed=True
            )
            jobs.append(self._nearest_job(search))
        return await self.run(jobs)

    async def vectors_of(
        self, book_ids: Sequence[str], books: Mapping[str, Book]
    ) -> list[bytes | None]:
        """Each book's vector blob: those read with the book as they are, the rest (a book
        read without it) in one pipeline; None for books with no embedding (or none at all)."""
        missing = list(
            dict.fromkeys(i for i in book_ids if i not in books or not books[i].fields.vector)
        )
        fetched: dict[str, bytes | None] = {}
        if missing:
            commands = [("HGET", self.doc_key(book_id), VECTOR_FIELD) for book_id in missing]
            async with redis_errors():
                blobs = await self.reads.run(lambda client: in_one_round_trip(client, commands))
            found = zip(missing, blobs, strict=True)
            fetched = {i: blob if isinstance(blob, bytes) else None for i, blob in found}
        return [
            books[i].vector if i in books and books[i].fields.vector else fetched.get(i)
            for i in book_ids
        ]

    async def nearest(self, requests: Sequence[VectorSearch]) -> list[list[Match]]:
        """KNN for each request, all in one pipeline.

        The books left out (the book a search starts from, those excluded) are asked for and
        dropped here when they are few, by one TAG filter when they are many (``leave_out``):
        a filter makes RediSearch's hybrid search walk far more of the index (bench/exclusion.py;
        docs/decisions.md), while every book asked
        for is a hit to return and read. The answer is the same: exactly k others, nearest
        first.
        """
        return await self.run([self._nearest_job(r) for r in requests])

    @staticmethod
    def _nearest_job(search: VectorSearch) -> NearestJob:
        return NearestJob(
            search.vector,
            search.k,
            search.facets,
            search.fields,
            search.leave_out,
            search.choice,
            mixed=search.mixed,
        )

    async def run(self, jobs: Sequence[SearchJob]) -> list[list[Match]]:
        """Every job's queries in one pipeline a round, until every job has its answer (at
        most ``search_jobs.MAX_ROUNDS`` rounds)."""
        return (await self._rounds(jobs, version=False))[1]

    async def _rounds(
        self, jobs: Sequence[SearchJob], *, version: bool
    ) -> tuple[bytes | None, list[list[Match]]]:
        """``run``; with ``version``, the catalogue's version read before the first round's
        queries too: None when there is none, when the index was still indexing (its answers
        may miss books), or when a job needed a second round (its answer comes from two
        reads, perhaps of two replicas)."""
        read: bytes | None = None
        pending = [job for job in jobs if not job.done]
        first = True
        while pending:
            asked = [(job, job.queries(self.queries)) for job in pending]
            queries = [q for _, found in asked for q in found]
            if first and version:
                read, found_replies = await self._searches.run_reading(queries, self.version_key)
                indexed = self.known_indexed()
                read = read if indexed and isinstance(read, bytes) else None
            else:
                read, found_replies = None, await self._searches.run(queries)
            replies = iter(found_replies)
            for job, found in asked:
                await take(job, self.queries, [next(replies) for _ in found])
            pending = [job for job in pending if not job.done]
            first = False
        return read, [job.answer for job in jobs]

    async def within_radius(
        self, requests: Sequence[RadiusRequest], sources: Mapping[str, Book]
    ) -> list[RadiusPage]:
        """Every other book within cosine distance r of each book: a page of them, and a count.

        HNSW range search is approximate; EPSILON 0.3 (the setting's default) found every
        book that exact search finds on the shipped catalogue, where Redis's 0.01 missed some
        (docs/decisions.md, "What the book answers mean").
        """
        vectors = await self.vectors_of([r.book_id for r in requests], sources)
        runnable = [
            v is not None and not r.facets.matches_nothing()
            for v, r in zip(vectors, requests, strict=True)
        ]
        queries = []
        for request, vector, ok in zip(requests, vectors, runnable, strict=True):
            if not ok or vector is None:
                continue
            query = VectorRangeQuery(
                vector=self.queries.as_indexed(vector),
                vector_field_name=VECTOR_FIELD,
                return_fields=request.fields.returned(),
                filter_expression=_combine(request.facets, request.book_id),
                distance_threshold=request.radius,
                epsilon=self.settings.hnsw_epsilon,
                num_results=max(request.first, 1),
                sort_by="vector_distance",
                dtype=self.settings.vector_type,
            )
            queries.append(query.paging(request.offset, request.first))
        replies = iter(await self._searches.run(queries))
        pages = []
        for request, ok in zip(requests, runnable, strict=True):
            if not ok:
                pages.append(RadiusPage(total_count=0, matches=[]))
                continue
            reply = next(replies)
            pages.append(RadiusPage(reply.total, self.queries.matches(reply, request.fields)))
        return pages

    async def page(self, request: PageRequest) -> BookPage:
        """Books in id order after ``after_id``: keyset paging, stable while books are added.
        The page's query returns the books' fields itself, and the count rides along."""
        after = int(request.after_id) if request.after_id is not None else -1
        window = FilterQuery(
            filter_expression=Num("id_number") > after,
            return_fields=request.fields.returned(),
            num_results=request.first + 1,
            sort_by="id_number",
        )
        everything = FilterQuery(filter_expression="*", return_fields=[]).paging(0, 0)
        found, count = await self._searches.run([window, everything])
        books = [self.queries.book(key, fields, request.fields) for key, fields in found.hits]
        return BookPage(
            books=books[: request.first], total=count.total, has_next=len(books) > request.first
        )

    async def genre_counts(self) -> list[tuple[str, int]]:
        """Every genre with its number of books, most books first (then by name).

        GROUPBY on a multi-value TAG groups by the whole stored text, not by each genre, so
        the distinct tags come from FT.TAGVALS and each is counted with a zero-result
        search, all in one pipeline.
        """
        name = self.settings.index_name

        async def tag_values(client: Redis) -> Any:
            return await client.execute_command("FT.TAGVALS", name, "genres")

        async with redis_errors():
            genres = [
                g.decode() if isinstance(g, bytes) else str(g)
                for g in await self.reads.run(tag_values)
            ]
            counts = [
                FilterQuery(Tag("genres") == g, return_fields=[]).paging(0, 0) for g in genres
            ]
            results = await self._searches.run(counts)
        found = [(g, r.total) for g, r in zip(genres, results, strict=True) if r.total]
        return sorted(found, key=lambda item: (-item[1], item[0]))

    async def until_indexed(self, every: float = 0.1) -> IndexStatus:
        """The index's status once it holds every book (a rebuilt index reads its books in
        the background). FT.INFO is asked no more often than the index status allows: it
        stalls the thread that indexes."""
        while True:
            status = await self.status()
            if not status.exists or status.percent_indexed >= 1:
                return status
            await asyncio.sleep(max(every, self._status.next_read_in()))

    async def status(self) -> IndexStatus:
        """The index's size and progress, read now (FT.INFO); ``exists`` False when there is
        no index (a Redis that restarted empty). What runs often (readiness, metrics, the
        index watch) asks ``current_status`` instead (``index_status``)."""
        return self._take(await self._status.read())

    async def current_status(self) -> IndexStatus:
        """``status``, read with FT.INFO only when it can have changed (``index_status``)."""
        return self._take(await self._status.current())

    def known_indexed(self) -> bool:
        """Whether the index held every book when its status was last read (at most the
        index watch's 2 seconds ago): what a searchBooks answer must be read from to be kept."""
        last = self._status.last
        return last is not None and last.status.complete

    def _take(self, reading: Reading) -> IndexStatus:
        """Size the queries by the status; forget kept answers that may miss books (Redis
        restarted, or the index is being built)."""
        status = reading.status
        self.books = status.documents
        # Keys spread evenly over the shards by their hash: each shard's graph its share
        self.queries.books_per_shard = math.ceil(self.books / shard_count(self.redis))
        run_id = reading.marker.run_id  # None when not known (see Marker.same_index)
        restarted = None not in (self._run_id, run_id) and self._run_id != run_id
        if restarted or not status.complete:
            self.answers.clear()
        self._run_id = run_id or self._run_id
        return status


def _combine(facets: BookFilter, exclude: str | None) -> FilterExpression | str | None:
    """The facets, and the book itself left out (by its number: ids have no leading zeros,
    so a number names one book)."""
    itself = Num("id_number") != int(exclude) if exclude else None
    parts = [e for e in (facets.expression(), itself) if e]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]
