"""Automatic persisted queries, as Apollo Client, Apollo iOS and Apollo Kotlin send them.

A client sends ``extensions.persistedQuery = {version: 1, sha256Hash}`` without the query; an
unknown hash gets PERSISTED_QUERY_NOT_FOUND (HTTP 200, as Apollo Server answers, so that every
Apollo link retries), the client sends hash and query together, and from then on the hash
alone works, over POST or over GET (which a CDN can cache). A document is stored only once it
has parsed and validated, so the store holds nothing but real operations; the store is
bounded and lives in Redis (every API process shares it), with the most recent documents of
this process in memory in front of it.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

from lookalike.schema.http.request import bad_request
from lookalike.services.redis.bounded_store import BoundedStore
from lookalike.services.redis.connection import Redis

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_STORED_BYTES = 32 * 1024  # larger documents run, but are not stored


@dataclass(frozen=True, slots=True)
class Resolved:
    query: str
    register: str | None  # the hash to store the query under once it validated


def not_found() -> GraphQLError:
    return GraphQLError("PersistedQueryNotFound", extensions={"code": "PERSISTED_QUERY_NOT_FOUND"})


class PersistedQueries:
    def __init__(self, client: Redis, capacity: int, local_size: int = 1024) -> None:
        self.store = BoundedStore(client, "persisted-queries", capacity)
        self.local: OrderedDict[str, str] = OrderedDict()
        self.local_size = local_size

    async def resolve(self, query: str | None, extensions: dict[str, Any]) -> Resolved:
        """The document to run. A request that names none is Refused; a hash this server
        does not know is the GraphQL error Apollo's clients answer by sending the query."""
        persisted = extensions.get("persistedQuery")
        if persisted is None:
            if query is None:
                raise bad_request("the request has no query", malformed=True)
            return Resolved(query, None)
        digest = _hash_of(persisted)
        if query is None:
            return Resolved(await self._lookup(digest), None)
        if hashlib.sha256(query.encode("utf-8")).hexdigest() != digest:
            raise bad_request("extensions.persistedQuery.sha256Hash is not the SHA-256 of query")
        known = digest in self.local
        stored = not known and len(query.encode("utf-8")) <= MAX_STORED_BYTES
        return Resolved(query, digest if stored else None)

    async def register(self, digest: str, query: str) -> None:
        self._remember(digest, query)
        await self.store.put_many({digest: query.encode("utf-8")})

    async def _lookup(self, digest: str) -> str:
        query = self.local.get(digest)
        if query is None:
            (stored,) = await self.store.get_many([digest])
            if stored is None:
                raise not_found()
            query = stored.decode("utf-8")
        self._remember(digest, query)
        return query

    def _remember(self, digest: str, query: str) -> None:
        self.local[digest] = query
        self.local.move_to_end(digest)
        while len(self.local) > self.local_size:
            self.local.popitem(last=False)


def _hash_of(persisted: Any) -> str:
    version = persisted.get("version") if isinstance(persisted, dict) else None
    if type(version) is not int or version != 1:  # not True, not 1.0
        raise GraphQLError(
            "extensions.persistedQuery must be {version: 1, sha256Hash}",
            extensions={"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise bad_request("extensions.persistedQuery.sha256Hash must be 64 lowercase hex digits")
    return digest
