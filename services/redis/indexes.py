"""Search indexes that match the code: created when absent, rebuilt when their definition changed.

An index made by an earlier version (a field that became CASESENSITIVE, a new field) would be
kept as it is by "create if absent", and the code would then query fields that are not there or
match ids it should not. So every index records the fingerprint of the definition it was
created from, ``index-definition:<name>``; at start-up a different or missing fingerprint means
the index is dropped (never its documents) and created again over the same documents, which
Redis re-indexes in the background. Several processes starting together do this once: the work
runs under a lock, and whoever gets it second finds the index already current.

Attributes that only set a default for queries (a vector field's EF_RUNTIME and EPSILON, which
every query sends anyway) are left out of the fingerprint: changing them must not rebuild an
index of a million vectors. RedisVL's schema describes the fields; what it cannot say (a hash
field indexed a second time under another name, index options such as NOOFFSETS) comes as
``IndexExtras``, and FT.CREATE is sent from both here.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import RedisCluster
from redis.commands.search.field import Field
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.exceptions import ResponseError
from redisvl.schema import IndexSchema

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.redis.connection import Redis, redis_errors, search_knows_every_shard
from lookalike.services.redis.coordination.index_users import refuse_while_used
from lookalike.services.redis.coordination.lock import held_lock

log = logging.getLogger(__name__)

IndexChange = Literal["unchanged", "created", "rebuilt"]

# Vector attributes that are only defaults for queries, which send their own.
PER_QUERY_ATTRIBUTES = frozenset({"ef_runtime", "epsilon"})


@dataclass(frozen=True)
class IndexExtras:
    """What FT.CREATE is told beyond the RedisVL schema.

    ``fields``: redis-py fields over hash fields the schema already indexes, under another
    name (``author AS author_text TEXT`` beside ``author TAG``). ``options``: index options
    placed before SCHEMA (``NOOFFSETS``).
    """

    fields: tuple[Field, ...] = ()
    options: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "fields": [[str(a) for a in field.redis_args()] for field in self.fields],  # type: ignore[no-untyped-call]
            "options": list(self.options),
        }


NO_EXTRAS = IndexExtras()


def fingerprint(schema: IndexSchema, extras: IndexExtras = NO_EXTRAS) -> str:
    """A digest of everything FT.CREATE is told (fields, attributes, prefix, storage, options),
    except the per-query defaults."""
    described = schema.to_dict()
    for field in described["fields"]:
        for name in PER_QUERY_ATTRIBUTES:
            (field.get("attrs") or {}).pop(name, None)
    if extras != NO_EXTRAS:
        described["extras"] = extras.describe()
    canonical = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def version_key(index_name: str) -> str:
    """The key of a catalogue's version: a new value each time its books or its index change
    (``Catalogue.changed``), which replicas receive like any write."""
    return f"catalogue-version:{index_name}"


def definition_key(schema: IndexSchema) -> str:
    return f"index-definition:{schema.index.name}"


def generation_key(index_name: str) -> str:
    """The key of an index's generation: a new value at every FT.CREATE of it, so that an
    index dropped and created again (by whoever) is told from one that only gained books."""
    return f"index-generation:{index_name}"


@dataclass(frozen=True)
class Conversion:
    """Who else may be using an index that would be rebuilt (``index_users``): ``store``
    names it in the registry of live processes, ``settings`` are this process's (for the
    message), ``how`` says how to convert it instead, ``force`` converts under live processes."""

    store: str
    settings: str
    how: str  # how to convert instead, for the refusal's message
    force: bool = False


REBUILDING = b"rebuilding"  # the recorded definition while documents are converted


async def ensure_index(
    client: Redis,
    schema: IndexSchema,
    *,
    extras: IndexExtras = NO_EXTRAS,
    before_rebuild: Callable[[], Awaitable[None]] | None = None,
    conversion: Conversion | None = None,
) -> IndexChange:
    """Make the index exist with exactly this definition.

    An index of another definition is rebuilt only when no other live process uses it
    (``conversion``; without one, the index's name is its store), or when forced: their
    searches would fail on it. ``before_rebuild`` runs under the lock before an outdated
    index is dropped: the place to convert documents an earlier version stored differently.
    While it runs the recorded definition is ``REBUILDING``, so processes that use the index
    see it change as it begins (``DefinitionWatch``).
    """
    name = schema.index.name
    wanted = fingerprint(schema, extras).encode()
    key = definition_key(schema)
    conversion = conversion or Conversion(name, "this version's definition", "stop them first")
    async with redis_errors():
        if await client.get(key) == wanted and await index_info(client, name) is not None:
            return "unchanged"  # the common start: no lock taken
        async with held_lock(client, f"lock:{key}"):
            exists = await index_info(client, name) is not None
            if exists and await client.get(key) == wanted:
                return "unchanged"  # another process brought it up to date meanwhile
            if exists:
                await refuse_while_used(
                    client,
                    conversion.store,
                    what=f"the search index {name!r}",
                    settings=conversion.settings,
                    convert=conversion.how,
                    force=conversion.force,
                )
                log.warning(
                    "the search index %r was made from another definition: rebuilding it "
                    "over the same documents",
                    schema.index.name,
                )
                await client.set(key, REBUILDING)
                if before_rebuild is not None:
                    await before_rebuild()
                await client.execute_command("FT.DROPINDEX", name)
            await create_index(client, schema, extras)
            await client.set(key, wanted)
            return "rebuilt" if exists else "created"


class DefinitionWatch:
    """Whether what a running process relies on (an index's recorded definition, the face
    layout) is still what it started with.

    Another process may convert an index under this one (``lookalike books convert
    --force``): from then on this one's searches would fail (a FLOAT16 query vector against a
    FLOAT32 index), or miss what the other writes. ``refresh`` reads the recorded values;
    once one differs, ``check`` refuses every request with SERVICE_UNAVAILABLE and /readyz
    says why, until the values are this process's again. An absent value is no change: a
    Redis that came back empty is recovery's to handle.
    """

    def __init__(self, client: Redis, expected: dict[str, bytes], what: str, settings: str):
        self.client = client
        self.expected = expected
        self.what = what
        self.settings = settings
        self.changed: str | None = None  # why this process cannot serve from it, once found

    def check(self) -> None:
        if self.changed is not None:
            raise ServiceUnavailable(self.changed)

    async def refresh(self) -> str | None:
        """Read the recorded values again; the reason this process cannot serve, or None."""
        keys = list(self.expected)
        async with redis_errors():
            found = await client_get_many(self.client, keys)
        differ = [
            key
            for key, value in zip(keys, found, strict=True)
            if value is not None and value != self.expected[key]
        ]
        was, self.changed = (
            self.changed,
            (
                f"{self.what} was converted by another process for other settings than this "
                f"process's ({self.settings}): restart it with the settings the index has now"
                if differ
                else None
            ),
        )
        if self.changed is not None and was is None:
            log.error(self.changed)
        elif was is not None and self.changed is None:
            log.warning("%s is this process's again: serving from it", self.what)
        return self.changed

    async def explain(self, error: ResponseError) -> ServiceUnavailable | ResponseError:
        """What to raise for a search Redis refused: SERVICE_UNAVAILABLE when the index
        changed under this process (a query vector of the old size, an index dropped for its
        rebuild), else the error itself (a bug)."""
        with contextlib.suppress(ServiceUnavailable):
            if await self.refresh() is not None:
                return ServiceUnavailable(self.changed or "")
        return error


async def client_get_many(client: Redis, keys: Sequence[str]) -> list[Any]:
    """GET of each key (on a cluster, of many slots) in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())


async def create_index(client: Redis, schema: IndexSchema, extras: IndexExtras) -> None:
    """FT.CREATE from the schema's fields and the extras (on a cluster, any node creates the
    index on every shard)."""
    kind = IndexType.JSON if schema.index.storage_type.value == "json" else IndexType.HASH
    definition = IndexDefinition(prefix=[schema.index.prefix], index_type=kind)  # type: ignore[no-untyped-call]
    fields = [*schema.redis_fields, *extras.fields]
    arguments = [*definition.args, *extras.options]
    if schema.index.stopwords is not None:
        arguments += ["STOPWORDS", len(schema.index.stopwords), *schema.index.stopwords]
    arguments += ["SCHEMA", *itertools.chain.from_iterable(f.redis_args() for f in fields)]
    if isinstance(client, RedisCluster):
        await search_knows_every_shard(client)
    await client.execute_command("FT.CREATE", schema.index.name, *arguments)
    await client.set(generation_key(schema.index.name), secrets.token_hex(8))
    if isinstance(client, RedisCluster):
        await _on_every_shard(client, schema.index.name)


async def _on_every_shard(client: RedisCluster, name: str) -> None:
    """Fail loudly if an index did not reach every shard: searches would fail there."""
    missing = []
    for node in client.get_primaries():
        names = await client.execute_command("FT._LIST", target_nodes=node)
        if name not in {as_text(n) for n in names}:
            missing.append(node.name)
    if missing:
        raise ServiceUnavailable(
            f"the search index {name!r} was not created on the shards {', '.join(missing)}; "
            "drop it (FT.DROPINDEX) and start again"
        )


async def index_info(client: Redis, name: str) -> dict[str, Any] | None:
    """FT.INFO as a dict with text keys (on a cluster, summed over the shards by the node
    that answers); None when there is no such index."""
    try:
        reply = await client.execute_command("FT.INFO", name)
    except ResponseError as exc:
        if "unknown index" in str(exc).lower() or "no such index" in str(exc).lower():
            return None
        raise
    return info_of(reply)


def info_of(reply: Any) -> dict[str, Any]:
    """An FT.INFO reply as a dict with text keys."""
    return {as_text(k): v for k, v in reply.items()}


# FT.INFO walks an index on Redis's one thread (0.3-0.6 s at a million books). Whoever asks
# it again and again (while an index is built, or as books are written) waits this many times
# what it last took: at most a tenth of the thread. What it took is wall time, waits behind
# other commands included, so the wait has a ceiling: "still building" is looked at again
# within INFO_MAX_SPACING however slow the read that said it.
INFO_SPACING = 10.0
INFO_MAX_SPACING = 30.0


def info_spacing(took: float) -> float:
    """Seconds before FT.INFO is asked again, after one that took ``took``."""
    return min(INFO_SPACING * took, INFO_MAX_SPACING)


def fully_indexed(info: dict[str, Any]) -> bool:
    """Every document is in the index: not still indexing in the background (after FT.CREATE
    over existing books, or a Redis that restarted from its files)."""
    return not int(info.get("indexing", 0)) and float(info.get("percent_indexed", 1.0)) >= 1.0


async def drop_index(client: Redis, schema: IndexSchema, *, documents: bool) -> None:
    """Drop an index (and its documents when asked) with its recorded definition."""
    async with redis_errors():
        if await index_info(client, schema.index.name) is not None:
            extra = ["DD"] if documents else []
            await client.execute_command("FT.DROPINDEX", schema.index.name, *extra)
        await client.delete(definition_key(schema))


def as_text(value: Any) -> str:
    """A reply's bytes (or a RESP3 client's str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
