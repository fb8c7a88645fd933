"""Search indexes that match the code: created when absent, rebuilt when their definition changed.

An index made by an earlier version (a field that became CASESENSITIVE, a new field) would be
kept as it is by "create if absent", and the code would then query fields that are not there or
match ids it should not. So every index records the fingerprint of the definition it was
created from, ``index-definition:<name>``; at start-up a different or missing fingerprint means
the index is dropped (never its documents) and created again over the same documents, which
Redis re-indexes in the background. Several processes starting together do this once: the work
runs under a lock, and whoever gets it second finds the index already current.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from redisvl.index import AsyncSearchIndex
from redisvl.schema import IndexSchema

from lookalike.services.redis_connection import Redis, redis_errors
from lookalike.services.redis_lock import held_lock

log = logging.getLogger(__name__)

IndexChange = Literal["unchanged", "created", "rebuilt"]


def fingerprint(schema: IndexSchema) -> str:
    """A digest of everything FT.CREATE is told (fields, attributes, prefix, storage)."""
    canonical = json.dumps(schema.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def definition_key(schema: IndexSchema) -> str:
    return f"index-definition:{schema.index.name}"


async def ensure_index(
    client: Redis,
    schema: IndexSchema,
    *,
    before_rebuild: Callable[[], Awaitable[None]] | None = None,
) -> IndexChange:
    """Make the index exist with exactly this definition.

    ``before_rebuild`` runs under the lock before an outdated index is dropped: the place to
    convert documents an earlier version stored differently.
    """
    index = AsyncSearchIndex(schema, redis_client=client)
    wanted = fingerprint(schema).encode()
    key = definition_key(schema)
    async with redis_errors():
        if await client.get(key) == wanted and await index.exists():
            return "unchanged"  # the common start: no lock taken
        async with held_lock(client, f"lock:{key}"):
            exists = await index.exists()
            if exists and await client.get(key) == wanted:
                return "unchanged"  # another process brought it up to date meanwhile
            if exists:
                log.warning(
                    "the search index %r was made from another definition: rebuilding it "
                    "over the same documents",
                    schema.index.name,
                )
                if before_rebuild is not None:
                    await before_rebuild()
                await index.delete(drop=False)
            await index.create(overwrite=False)
            await client.set(key, wanted)
            return "rebuilt" if exists else "created"


async def drop_index(client: Redis, schema: IndexSchema, *, documents: bool) -> None:
    """Drop an index (and its documents when asked) with its recorded definition."""
    async with redis_errors():
        await AsyncSearchIndex(schema, redis_client=client).delete(drop=documents)
        await client.delete(definition_key(schema))
