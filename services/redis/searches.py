"""FT.SEARCH for RedisVL query objects: any number in one round trip, read as RESP3 replies.

RedisVL builds the queries (filters, KNN and range syntax, parameters); this sends them in
one pipeline, to a replica or the primary (``Reads``), and hands back each reply's hits as
plain values. RedisVL's own batch_search splits a batch every 10 queries and builds a Document
object per hit, which the catalogue's nested levels of 100 queries cannot afford (the
figure: docs/decisions.md, "Figures that comments used to quote"). On a cluster the
pipeline goes to one node, whose query engine asks every shard and merges their hits.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from redis.exceptions import ResponseError
from redisvl.query import BaseQuery

from lookalike.services.redis.connection import (
    Redis,
    in_one_round_trip,
    is_cluster,
    redis_errors,
)
from lookalike.services.redis.indexes import DefinitionWatch
from lookalike.services.redis.replicas import Reads


class Reply:
    """One FT.SEARCH reply: the number of matches, each returned hit's key and fields, and
    each hit's score (a full-text query WITHSCORES; 0 otherwise). The hits are read from the
    reply when first asked for: a large answer where it is ranked, off the event loop
    (``search_jobs.take``)."""

    __slots__ = ("_hits", "_results", "_scores", "size", "total")

    def __init__(self, total: int, results: list[dict[bytes, Any]]) -> None:
        self.total = total
        self.size = len(results)  # hits returned
        self._results = results
        self._hits: list[tuple[str, dict[bytes, Any]]] | None = None
        self._scores: list[float] | None = None

    @property
    def hits(self) -> list[tuple[str, dict[bytes, Any]]]:
        if self._hits is None:
            self._hits = [
                (hit[b"id"].decode(), hit.get(b"extra_attributes", {})) for hit in self._results
            ]
        return self._hits

    @property
    def scores(self) -> list[float]:
        if self._scores is None:
            self._scores = [float(hit.get(b"score", 0.0)) for hit in self._results]
        return self._scores

    def texts(self, name: bytes) -> list[str]:
        """One returned field of every hit, as text."""
        values = (fields.get(name) for _, fields in self.hits)
        return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


@dataclass(frozen=True, slots=True)
class PreparedSearch:
    """The FT.SEARCH arguments (after the index name) of a RedisVL query built once, with one
    parameter's value put in at ``slot``: a KNN's vector. A nested level sends a hundred KNNs
    of one shape, and building and reading back a VectorQuery for each costs far more than
    filling in a template (``BookQueries.knn`` keeps one per shape)."""

    template: tuple[Any, ...]
    slot: int
    value: bytes

    @classmethod
    def of(cls, query: BaseQuery, parameter: str) -> PreparedSearch:
        """The query's arguments, with the place of ``parameter``'s value in them."""
        arguments = search_arguments("", query)[1:]
        names = arguments.index("PARAMS") + 2  # PARAMS, its count, then name, value, ...
        slot = names + arguments[names::2].index(parameter) * 2 + 1
        return cls(tuple(arguments), slot, arguments[slot])

    def put(self, value: bytes) -> PreparedSearch:
        return PreparedSearch(self.template, self.slot, value)

    def arguments(self) -> list[Any]:
        found = list(self.template)
        found[self.slot] = self.value
        return found


Search: TypeAlias = BaseQuery | PreparedSearch  # what SearchPipeline sends


def search_arguments(index_name: str, query: Search) -> list[Any]:
    """FT.SEARCH's arguments for a RedisVL (redis-py) query: its own, then its parameters."""
    if isinstance(query, PreparedSearch):
        return [index_name, *query.arguments()]
    arguments: list[Any] = [index_name, *query.get_args()]
    if query.params:
        arguments += ["PARAMS", len(query.params) * 2]
        for name, value in query.params.items():
            arguments += [name, value]
    return arguments


class SearchPipeline:
    """``watch``: the searched index's definition, so that searches on an index converted
    under this process are SERVICE_UNAVAILABLE, not a Redis error (``DefinitionWatch``)."""

    def __init__(self, reads: Reads, index_name: str, watch: DefinitionWatch | None = None):
        self.reads = reads
        self.index_name = index_name
        self.watch = watch

    async def run(self, queries: Sequence[Search], *, primary: bool = False) -> list[Reply]:
        """All queries in one round trip; ``primary`` when the answer must include this
        request's own writes whatever was written before it (a delete finding what to delete)."""
        if not queries:
            return []
        return [_read(reply) for reply in await self._send(self._commands(queries), primary)]

    async def run_reading(self, queries: Sequence[Search], key: str) -> tuple[Any, list[Reply]]:
        """The value at ``key`` (the catalogue's version) and the queries' replies, the value
        read before the queries: on one Redis (or a replica) in the same pipeline, which runs
        in order; on a cluster, whose pipeline sends to several nodes at once, one round trip
        before the queries'. Not FT.INFO, which walks the index (0.3-0.6 s of Redis at a
        million books): whether the index holds every book is the catalogue's to know."""
        commands = self._commands(queries)
        ahead: list[tuple[Any, ...]] = [("GET", key)]

        async def send(client: Redis) -> list[Any]:
            if is_cluster(client):
                return [
                    *await in_one_round_trip(client, ahead),
                    *await in_one_round_trip(client, commands),
                ]
            return await in_one_round_trip(client, [*ahead, *commands])

        async with self._watched():
            version, *replies = await self.reads.run(send)
        return version, [_read(reply) for reply in replies]

    def _commands(self, queries: Sequence[Search]) -> list[tuple[Any, ...]]:
        return [("FT.SEARCH", *search_arguments(self.index_name, q)) for q in queries]

    async def _send(self, commands: Sequence[Sequence[Any]], primary: bool) -> list[Any]:
        def send(client: Redis) -> Awaitable[list[Any]]:
            return in_one_round_trip(client, commands)

        async with self._watched():
            return await (send(self.reads.primary) if primary else self.reads.run(send))

    @contextlib.asynccontextmanager
    async def _watched(self) -> AsyncIterator[None]:
        if self.watch is None:
            async with redis_errors():
                yield
            return
        self.watch.check()
        try:
            async with redis_errors():
                yield
        except ResponseError as exc:
            found = await self.watch.explain(exc)
            if found is exc:
                raise
            raise found from exc


def _read(reply: dict[bytes, Any]) -> Reply:
    return Reply(int(reply[b"total_results"]), reply[b"results"])
