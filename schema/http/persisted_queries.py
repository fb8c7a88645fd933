"""The document a request names: its text, a trusted document, or an automatic persisted
query, as Apollo Client, Apollo iOS and Apollo Kotlin send them.

A client sends ``extensions.persistedQuery = {version: 1, sha256Hash}`` without the query; an
unknown hash gets PERSISTED_QUERY_NOT_FOUND (HTTP 200, as Apollo Server answers, so that every
Apollo link retries), the client sends hash and query together, and from then on the hash
alone works, over POST or over GET (which a CDN can cache). A document is stored only once it
has parsed and validated, so the store holds nothing but real operations; the store is
bounded and lives in Redis (every API process shares it), with the most recent documents of
this process in memory in front of it.

With trusted documents (trusted_documents.py), a caller without a full key runs only what
the list holds, named by ``extensions.persistedQuery.sha256Hash``, by the GraphQL-over-HTTP
``documentId`` (``sha256:<hash>``) or by a text that hashes to a listed id; anything else is
PERSISTED_QUERY_NOT_IN_LIST before it is parsed. Neither the APQ store nor a registration is
used for such a caller: registering a document would not list it. A full key runs any
document, listed ids included, and APQ as before.
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

from lookalike.schema.http.request import GraphQLRequest, bad_request
from lookalike.schema.limits.trusted_documents import not_in_list, sha256
from lookalike.services.core.errors import ServiceUnavailable
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
        self.store = BoundedStore(client, "persisted-queries", capacity, kind="persisted_query")
        self.local: OrderedDict[str, str] = OrderedDict()
        self.local_size = local_size

    async def resolve(
        self,
        request: GraphQLRequest,
        listed: dict[str, str] | None = None,
        *,
        only_listed: bool = False,
    ) -> Resolved:
        """The document to run. A request that names none is Refused; a hash this server
        does not know is the GraphQL error Apollo's clients answer by sending the query.
        ``listed``: the trusted documents; ``only_listed``: nothing else may run."""
        query, persisted = request.query, request.extensions.get("persistedQuery")
        digest = _named(request.document_id, persisted)
        if digest is not None and query is not None and sha256(query) != digest:
            raise bad_request("the document's id is not the SHA-256 of its query")
        if only_listed:
            found = (listed or {}).get(digest or (sha256(query) if query is not None else ""))
            if found is None:
                if digest is None and query is None:
                    raise bad_request("the request has no query", malformed=True)
                raise not_in_list()
            return Resolved(found, None)
        if digest is not None and listed and digest in listed:
            return Resolved(listed[digest], None)
        if persisted is None:
            if query is None:
                if digest is not None:  # a documentId this server does not list
                    raise not_found()
                raise bad_request("the request has no query", malformed=True)
            return Resolved(query, None)
        assert digest is not None
        if query is None:
            return Resolved(await self._lookup(digest), None)
        known = digest in self.local
        stored = not known and len(query.encode("utf-8")) <= MAX_STORED_BYTES
        return Resolved(query, digest if stored else None)

    async def register(self, digest: str, query: str) -> None:
        """Best effort: the operation has run by now (a mutation may have changed
        something), so its answer goes back whether Redis stored the document or not. This
        process remembers it anyway; another one answers PERSISTED_QUERY_NOT_FOUND, and the
        client sends the query again, as the protocol has it."""
        self._remember(digest, query)
        with contextlib.suppress(ServiceUnavailable):  # full or away; a refusal is counted
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


def _named(document_id: str | None, persisted: Any) -> str | None:
    """The SHA-256 the request names its document by, if any: ``documentId`` or Apollo's
    ``persistedQuery`` (both: they must agree)."""
    digest = _hash_of(persisted) if persisted is not None else None
    if document_id is None:
        return digest
    algorithm, _, named = document_id.partition(":")
    if algorithm != "sha256" or not _SHA256.fullmatch(named):
        raise bad_request("documentId must be sha256:<64 lowercase hex digits>")
    if digest is not None and digest != named:
        raise bad_request("documentId and extensions.persistedQuery name different documents")
    return named


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
