"""Writing books into Redis: the shipped catalogue at first start, or a folder on demand.

A load is idempotent. Each stored document carries the hash of its source record and of its
description: an unchanged record is skipped, a changed record whose description is unchanged
keeps its vector, and only new descriptions are embedded, first from the shipped vectors
(matched by description hash) and, for text nobody has embedded yet, by the model.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.services.book_records import content_hash, sha256_text
from lookalike.services.catalogue import BOOK_FIELDS, Catalogue
from lookalike.services.redis_connection import open_redis, redis_errors
from lookalike.services.redis_lock import held_lock
from lookalike.services.search_indexes import ensure_index
from lookalike.services.settings import Settings
from lookalike.services.shipped_catalogue import ShippedCatalogue, read_shipped
from lookalike.services.text_embedding import TextEmbedder, text_embedder

log = logging.getLogger(__name__)

CHUNK = 200  # books per MULTI: big enough to amortise, small enough not to stall Redis

Progress = Callable[[int], None]


@dataclass
class LoadSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    embedded: int = 0
    without_description: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged

    def __str__(self) -> str:
        return (
            f"{self.total} books: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged; {self.embedded} descriptions embedded by the model"
        )


@dataclass
class _Pending:
    record: dict[str, Any]
    existed: bool
    vector: bytes | None = None
    needs_model: bool = False


async def load_books(
    catalogue: Catalogue,
    records: Iterable[dict[str, Any]],
    *,
    shipped: ShippedCatalogue | None,
    embedder: Callable[[], TextEmbedder],
    progress: Progress | None = None,
) -> LoadSummary:
    """Bring the catalogue in Redis up to date with ``records``; never deletes a book."""
    await ensure_index(catalogue.redis, catalogue.index.schema)
    summary = LoadSummary()
    records = list(records)
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        pending = await _changed(catalogue, chunk, summary)
        _reuse_shipped_vectors(pending, shipped)
        summary.embedded += _embed_the_rest(pending, embedder)
        await _write(catalogue, pending)
        for item in pending:
            if not item.record["description"].strip():
                summary.without_description.append(item.record["id"])
        if progress:
            progress(len(chunk))
    return summary


async def _changed(
    catalogue: Catalogue, chunk: Sequence[dict[str, Any]], summary: LoadSummary
) -> list[_Pending]:
    ids = [record["id"] for record in chunk]
    async with redis_errors(), catalogue.redis.pipeline(transaction=False) as pipe:
        pipe.execute_command(
            "JSON.MGET",
            *map(catalogue.doc_key, ids),
            "$['content_sha256','description_sha256']",
        )
        pipe.mget(list(map(catalogue.vector_key, ids)))
        stored, vectors = await pipe.execute()
    pending = []
    for record, hashes, vector in zip(chunk, stored, vectors, strict=True):
        hashes = json.loads(hashes) if hashes else None
        hashes = hashes if hashes and len(hashes) == 2 else None
        if hashes and hashes[0] == content_hash(record):
            summary.unchanged += 1
            continue
        item = _Pending(record=record, existed=bool(hashes))
        if hashes and hashes[1] == sha256_text(record["description"]):
            item.vector = vector  # same text, same vector: no need to embed it again
        if item.existed:
            summary.updated += 1
        else:
            summary.added += 1
        pending.append(item)
    return pending


def _reuse_shipped_vectors(pending: Sequence[_Pending], shipped: ShippedCatalogue | None) -> None:
    for item in pending:
        description = item.record["description"]
        if item.vector is not None or not description.strip():
            continue
        found = shipped.vector_for(description) if shipped else None
        if found is None:
            item.needs_model = True
        else:
            item.vector = found.astype(np.float32).tobytes()


def _embed_the_rest(pending: Sequence[_Pending], embedder: Callable[[], TextEmbedder]) -> int:
    todo = [item for item in pending if item.needs_model]
    if not todo:
        return 0
    vectors = embedder().encode([item.record["description"] for item in todo])
    for item, vector in zip(todo, vectors, strict=True):
        item.vector = vector.tobytes()
    return len(todo)


async def _write(catalogue: Catalogue, pending: Sequence[_Pending]) -> None:
    """Document and vector blob change together (MULTI), so readers never see half a book."""
    if not pending:
        return
    async with redis_errors(), catalogue.redis.pipeline(transaction=True) as pipe:
        for item in pending:
            book_id = item.record["id"]
            pipe.execute_command(
                "JSON.SET", catalogue.doc_key(book_id), "$", _document(item.record, item.vector)
            )
            if item.vector is None:
                pipe.delete(catalogue.vector_key(book_id))
            else:
                pipe.set(catalogue.vector_key(book_id), item.vector)
        await pipe.execute()


def _document(record: dict[str, Any], vector: bytes | None) -> str:
    """The stored JSON: every API field present (null when absent), hashes, the embedding.

    A book with an empty description gets no ``embedding``: the index leaves it out of vector
    search, so it has no neighbours and is nobody's neighbour.
    """
    defaults: dict[str, Any] = {"genres": [], "editions": [], "inventory": [], "metrics": {}}
    document = {name: record.get(name, defaults.get(name)) for name in BOOK_FIELDS}
    document["id_number"] = int(record["id"])
    document["content_sha256"] = content_hash(record)
    document["description_sha256"] = sha256_text(record["description"])
    if vector is not None:
        document["embedding"] = np.frombuffer(vector, dtype=np.float32).tolist()
    return json.dumps(document, ensure_ascii=False)


async def prepare_catalogue(catalogue: Catalogue, *, autoload: bool) -> LoadSummary | None:
    """Make sure the index exists; on an empty one, load the shipped catalogue.

    Only shipped vectors are used here, so a server starts without loading the model. Processes
    that start together on an empty Redis load it once: one holds the lock and loads, the
    others wait for it and then find the books there.
    """
    await ensure_index(catalogue.redis, catalogue.index.schema)
    if not autoload or (await catalogue.status()).documents:
        return None
    async with held_lock(catalogue.redis, f"lock:autoload:{catalogue.settings.index_name}"):
        if (await catalogue.status()).documents:
            return None  # another process loaded it while this one waited
        shipped = read_shipped()
        catalogue.loading = True
        try:
            return await load_books(
                catalogue, shipped.records, shipped=shipped, embedder=text_embedder
            )
        finally:
            catalogue.loading = False


@contextlib.asynccontextmanager
async def open_catalogue(settings: Settings) -> AsyncIterator[tuple[Catalogue, str]]:
    """Redis (embedded or REDIS_URL) with a ready catalogue: what the server and CLI start from."""
    async with open_redis(settings) as (client, url):
        catalogue = Catalogue(client, settings)
        loaded = await prepare_catalogue(catalogue, autoload=settings.catalogue_autoload)
        if loaded is not None:
            log.info("loaded the shipped catalogue", extra={"summary": str(loaded)})
        yield catalogue, url
