"""Writing books into Redis: the shipped catalogue at first start, or a folder on demand.

A load is idempotent. Each stored book carries the hashes of its source record and of its
description (``digests``): an unchanged record is skipped, a changed record whose description
is unchanged keeps its vector, and only new descriptions are embedded, first from the shipped
vectors (matched by description hash) and, for text nobody has embedded yet, by the model.

Books go in chunks: one pipeline reads the chunk's digests, one writes it (``book_writes``),
and the next chunk is prepared while Redis indexes the last one: no round trip per book.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.index import BOOK_INDEX_EXTRAS, shaping_settings, vector_bytes
from lookalike.services.books.loading.shipped import ShippedCatalogue, read_shipped
from lookalike.services.books.loading.upgrade import upgrade_books
from lookalike.services.books.records import book_hash, is_book_id, record_digests, sha256_text
from lookalike.services.books.writes import write_book
from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import TextEmbedder, text_embedder
from lookalike.services.redis.connection import open_redis, redis_errors
from lookalike.services.redis.coordination.index_users import announced
from lookalike.services.redis.coordination.lock import held_lock
from lookalike.services.redis.indexes import (
    Conversion,
    IndexChange,
    ensure_index,
    fully_indexed,
    index_info,
    info_spacing,
)
from lookalike.services.redis.replicas import open_reads

log = logging.getLogger(__name__)

STARTED, DONE = b"started", b"done"  # the autoload marker's values
CHUNK = 1000  # books per pipeline: big enough to amortise a round trip, small to stay fair

Progress = Callable[[int], None]


@dataclass
class LoadSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0  # stored books not in the source, removed (--prune)
    not_in_source: int = 0  # stored books not in the source (counted by --prune, --dry-run)
    embedded: int = 0
    dry_run: bool = False
    without_description: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged

    def __str__(self) -> str:
        if self.dry_run:
            return (
                f"dry run, nothing changed: {self.total} books in the source would be "
                f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged; "
                f"{self.removed} removed ({self.not_in_source} stored books are not in the "
                "source; --prune removes them)"
            )
        removed = f", {self.removed} removed" if self.removed else ""
        return (
            f"{self.total} books: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged{removed}; {self.embedded} descriptions embedded by "
            "the model"
        )


@dataclass
class Pending:
    """A record to write: new or changed, with its vector once it has one."""

    record: dict[str, Any]
    existed: bool
    keep_vector: bool = False  # same description as stored: its vector stays as it is
    vector: bytes | None = None
    needs_model: bool = False


CONVERT = (
    "convert it first with 'lookalike books convert' (refused while they run; --force "
    "converts under them, and they stop being ready until restarted with its settings)"
)


async def ensure_book_index(catalogue: Catalogue, *, force: bool = False) -> IndexChange:
    """The books index as this version and these settings define it; books stored otherwise
    (JSON documents of an earlier version, the other vector type) are converted before it is
    rebuilt. Refused while other live servers use it, unless ``force`` (``index_users``)."""
    change = await ensure_index(
        catalogue.redis,
        catalogue.schema,
        extras=BOOK_INDEX_EXTRAS,
        before_rebuild=lambda: upgrade_books(catalogue),
        conversion=Conversion(
            catalogue.settings.index_name,
            shaping_settings(catalogue.settings),
            CONVERT,
            force=force,
        ),
    )
    if change != "unchanged":  # a new index, or books converted for a rebuilt one
        await catalogue.changed()
    return change


async def load_books(
    catalogue: Catalogue,
    records: Iterable[dict[str, Any]],
    *,
    shipped: ShippedCatalogue | None,
    embedder: Callable[[], TextEmbedder],
    progress: Progress | None = None,
    prune: bool = False,
    dry_run: bool = False,
) -> LoadSummary:
    """Bring the catalogue in Redis up to date with ``records``; with ``prune``, remove the
    stored books that are not among them, after writing the rest. The catalogue's version
    changes before the first write and after the last (``Catalogue.changed``): no searchBooks
    answer read before or during the load is served after it. ``dry_run``: only count what
    would be added, updated, left and removed; nothing is written, not even the index."""
    if dry_run:
        return await _dry_run(catalogue, records, prune=prune)
    await ensure_book_index(catalogue)
    await _until_scanned(catalogue)
    summary = LoadSummary()
    writing: asyncio.Task[None] | None = None
    seen: set[str] = set()
    await catalogue.changed()
    failed = True
    try:
        for chunk in _chunks(records, CHUNK):
            seen.update(record["id"] for record in chunk)
            pending = await compare_with_stored(catalogue, chunk, summary)
            _reuse_shipped_vectors(pending, shipped, catalogue.settings.vector_type)
            summary.embedded += _embed_the_rest(pending, embedder, catalogue.settings.vector_type)
            for item in pending:
                if not item.record["description"].strip():
                    summary.without_description.append(item.record["id"])
            if writing is not None:
                await writing  # at most one chunk in Redis while the next is prepared
            writing = asyncio.create_task(write_pending(catalogue, pending))
            if progress:
                progress(len(chunk))
        if writing is not None:
            await writing
        if prune:
            gone = sorted((await stored_ids(catalogue)) - seen, key=int)
            summary.not_in_source = len(gone)
            summary.removed = await remove_books(catalogue, gone)
        failed = False
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writing
        if failed:  # what was written stays: answers read meanwhile are not served after it
            with contextlib.suppress(ServiceUnavailable):  # Redis away: it failed already
                await catalogue.changed()
    await catalogue.changed()  # after the last write; a load that cannot say so fails
    return summary


async def _until_scanned(catalogue: Catalogue, every: float = 0.05) -> None:
    """Wait for the index's scan of the keys already in Redis (after FT.CREATE, or a Redis
    restarted from its files) before writing books. Books written meanwhile are indexed as
    they arrive and then once more when the scan, which the writes slow down and whose
    keyspace they grow, reaches them: a million books written into a fresh index beside
    the shipped catalogue were still being scanned 25 minutes after the last one was
    written (docs/benchmarks.md, Scale)."""
    while True:
        started = time.monotonic()
        info = await index_info(catalogue.redis, catalogue.settings.index_name)
        if info is None or fully_indexed(info):
            return
        # FT.INFO holds the thread that scans: asked again no sooner than info_spacing
        await asyncio.sleep(max(every, info_spacing(time.monotonic() - started)))


async def _dry_run(
    catalogue: Catalogue, records: Iterable[dict[str, Any]], *, prune: bool
) -> LoadSummary:
    """What a load would do, read from the stored digests alone (one pipeline a chunk)."""
    summary = LoadSummary(dry_run=True)
    seen: set[str] = set()
    for chunk in _chunks(records, CHUNK):
        seen.update(record["id"] for record in chunk)
        await compare_with_stored(catalogue, chunk, summary)
    summary.not_in_source = len((await stored_ids(catalogue)) - seen)
    summary.removed = summary.not_in_source if prune else 0
    return summary


async def stored_ids(catalogue: Catalogue) -> set[str]:
    """The ids of every book stored under the catalogue's prefix (a SCAN: every shard of a
    cluster), whether or not the index has read it yet."""
    prefix = catalogue.doc_key("")
    found: set[str] = set()
    async with redis_errors():
        async for key in catalogue.redis.scan_iter(match=f"{prefix}*", count=1000):
            book_id = (key.decode() if isinstance(key, bytes) else str(key)).removeprefix(prefix)
            if is_book_id(book_id):
                found.add(book_id)
    return found


async def remove_books(catalogue: Catalogue, book_ids: Sequence[str]) -> int:
    """Delete these books, one DEL a book (the book and its index entry go in one step, so a
    reader sees the whole book or none of it), a pipeline a chunk. How many existed. The
    caller changes the catalogue's version after this, so no answer kept from before is
    served again."""
    removed = 0
    for start in range(0, len(book_ids), CHUNK):
        chunk = book_ids[start : start + CHUNK]
        async with redis_errors(), catalogue.redis.pipeline(transaction=False) as pipe:
            for book_id in chunk:
                pipe.delete(catalogue.doc_key(book_id))
            removed += sum(await pipe.execute())
    return removed


def _chunks(records: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


async def compare_with_stored(
    catalogue: Catalogue, chunk: Sequence[dict[str, Any]], summary: LoadSummary
) -> list[Pending]:
    """The records that are new or changed (counted in ``summary``, with the unchanged ones),
    from their stored digests read in one pipeline."""
    async with redis_errors(), catalogue.redis.pipeline(transaction=False) as pipe:
        for record in chunk:
            pipe.hget(catalogue.doc_key(record["id"]), "digests")
        stored = await pipe.execute(raise_on_error=False)
    pending = []
    for record, digests in zip(chunk, stored, strict=True):
        if isinstance(digests, ResponseError):  # WRONGTYPE: stored by an earlier version
            item = Pending(record=record, existed=True)
        elif isinstance(digests, Exception):
            raise digests
        elif digests is None:
            item = Pending(record=record, existed=False)
        else:
            digests = digests.decode()
            if digests == record_digests(record):
                summary.unchanged += 1
                continue
            same_text = digests[32:] == sha256_text(record["description"])[:32]
            item = Pending(record=record, existed=True, keep_vector=same_text)
        if item.existed:
            summary.updated += 1
        else:
            summary.added += 1
        pending.append(item)
    return pending


def _reuse_shipped_vectors(
    pending: Sequence[Pending], shipped: ShippedCatalogue | None, vector_type: str
) -> None:
    for item in pending:
        description = item.record["description"]
        if item.keep_vector or not description.strip():
            continue
        found = shipped.vector_for(description) if shipped else None
        if found is None:
            item.needs_model = True
        else:
            item.vector = vector_bytes(found, vector_type)


def _embed_the_rest(
    pending: Sequence[Pending], embedder: Callable[[], TextEmbedder], vector_type: str
) -> int:
    todo = [item for item in pending if item.needs_model]
    if not todo:
        return 0
    vectors = embedder().encode([item.record["description"] for item in todo])
    for item, vector in zip(todo, vectors, strict=True):
        item.vector = vector_bytes(vector, vector_type)
    return len(todo)


async def write_pending(catalogue: Catalogue, pending: Sequence[Pending]) -> None:
    """New books: one HSET each. Changed books: the replace script on their one key."""
    if not pending:
        return
    async with redis_errors(), catalogue.redis.pipeline(transaction=False) as pipe:
        for item in pending:
            write_book(
                pipe,
                catalogue.doc_key(item.record["id"]),
                book_hash(item.record, item.vector),
                existed=item.existed,
                keep_vector=item.keep_vector,
            )
        await pipe.execute()


def autoload_key(catalogue: Catalogue) -> str:
    return f"catalogue-autoload:{catalogue.settings.index_name}"


async def autoload_unfinished(catalogue: Catalogue) -> bool:
    """A load of the shipped catalogue began and has not ended (it is running, or its process
    died): the catalogue is partial and the server is not ready."""
    async with redis_errors():
        return await catalogue.redis.get(autoload_key(catalogue)) == STARTED


async def prepare_catalogue(catalogue: Catalogue, *, autoload: bool) -> LoadSummary | None:
    """Make sure the index exists; on an empty one, load the shipped catalogue.

    Only shipped vectors are used here, so a server starts without loading the model. Processes
    that start together on an empty Redis load it once: one holds the lock and loads, the
    others wait for it and then find it done. The load is marked started before its first book
    and done after its last, so a loader that dies half-way is not taken for a full
    catalogue: the next process to start (or this one's recovery) finishes it. A catalogue
    loaded otherwise (``lookalike books load``, an earlier version) is left as it is.
    """
    await ensure_book_index(catalogue)
    await catalogue.ensure_version()
    if not autoload or not await _needs_autoload(catalogue):
        return None
    async with held_lock(catalogue.redis, f"lock:{autoload_key(catalogue)}"):
        if not await _needs_autoload(catalogue):
            return None  # another process loaded it while this one waited
        shipped = read_shipped()
        catalogue.loading = True
        try:
            async with redis_errors():
                await catalogue.redis.set(autoload_key(catalogue), STARTED)
            summary = await load_books(
                catalogue, shipped.records, shipped=shipped, embedder=text_embedder
            )
            async with redis_errors():
                await catalogue.redis.set(autoload_key(catalogue), DONE)
            return summary
        finally:
            catalogue.loading = False


async def claim(catalogue: Catalogue) -> None:
    """A catalogue loaded or changed on purpose is the user's: emptied, it stays empty (the
    shipped books are loaded at a start only into a catalogue nobody has written)."""
    async with redis_errors():
        await catalogue.redis.set(autoload_key(catalogue), DONE)


async def _needs_autoload(catalogue: Catalogue) -> bool:
    async with redis_errors():
        state = await catalogue.redis.get(autoload_key(catalogue))
    if state == DONE:
        return False
    return state == STARTED or not (await catalogue.status()).documents


@contextlib.asynccontextmanager
async def open_catalogue(
    settings: Settings, *, announce: bool = False
) -> AsyncIterator[tuple[Catalogue, str]]:
    """Redis (embedded or REDIS_URL) with a ready catalogue, reading from replicas when there
    are any: what the server and CLI start from. A server ``announce``s its use of the index
    (``index_users``) before it looks at it, so that another server starting at the same
    moment with other settings finds it there and does not convert the index under it."""
    async with (
        open_redis(settings) as (client, url),
        open_reads(settings, client) as reads,
        contextlib.AsyncExitStack() as stack,
    ):
        catalogue = Catalogue(client, settings, reads)
        if announce:
            await stack.enter_async_context(announced(client, [catalogue.use()]))
        loaded = await prepare_catalogue(catalogue, autoload=settings.catalogue_autoload)
        if loaded is not None:
            log.info("loaded the shipped catalogue", extra={"summary": str(loaded)})
        await catalogue.status()  # its size, for the query cost (kept fresh by recovery.watch)
        yield catalogue, url
