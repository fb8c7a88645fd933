"""Books stored by earlier versions, converted in place before the books index is rebuilt.

Until this layout each book was a JSON document ``<prefix>:<id>`` (the record, ``id_number``,
the two hashes and ``embedding`` as a JSON array of numbers) with the same vector as a FLOAT32
blob in ``<prefix>-vector:<id>``. A server of this version that finds the books index made
from another definition runs this under the index lock, before it drops the old index and
creates the new one (``search_indexes.ensure_index``): every JSON book becomes a Hash with the
same fields, hashes and vector (the FLOAT32 blob, converted to the configured vector type),
the blobs are deleted, and books already in Hashes whose vector is of the other type (the
vector type setting changed) get their vector converted. Nothing is re-embedded, no book is
dropped, and it can be interrupted: a later start finds the index still outdated and goes on
with what is left.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.services.books.index import NUMPY_TYPES, vector_bytes
from lookalike.services.books.records import (
    RECORD_FIELDS,
    VECTOR_FIELD,
    book_hash,
    record_digests,
)
from lookalike.services.books.writes import write_book
from lookalike.services.embeddings.text_model import DIMENSIONS
from lookalike.services.redis.connection import Redis, redis_errors

if TYPE_CHECKING:
    from lookalike.services.books.catalogue import Catalogue

log = logging.getLogger(__name__)

BATCH = 500


async def upgrade_books(catalogue: Catalogue) -> None:
    """Convert whatever an earlier version stored under the catalogue's prefix."""
    settings = catalogue.settings
    client = catalogue.redis
    prefix = catalogue.doc_key("")
    async with redis_errors():
        documents = retyped = 0
        async for keys in _batches(client.scan_iter(match=f"{prefix}*", _type="ReJSON-RL")):
            documents += await _from_json(catalogue, keys)
        async for keys in _batches(client.scan_iter(match=f"{prefix}*", _type="hash")):
            retyped += await _retype_vectors(client, keys, settings.vector_type)
        blobs = f"{settings.key_prefix}-vector:*"
        orphans = 0
        async for keys in _batches(client.scan_iter(match=blobs, _type="string")):
            orphans += await _delete(client, keys)
    if documents or retyped or orphans:
        log.warning(
            "converted books stored by an earlier version",
            extra={"json_documents": documents, "vectors_retyped": retyped, "blobs": orphans},
        )


async def _batches(keys: AsyncIterator[Any]) -> AsyncIterator[list[str]]:
    """Keys from a SCAN, a batch at a time (the batch is written before the scan goes on)."""
    batch: list[str] = []
    async for key in keys:
        batch.append(key.decode() if isinstance(key, bytes) else str(key))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _from_json(catalogue: Catalogue, keys: Sequence[str]) -> int:
    client = catalogue.redis
    ids = [key.removeprefix(catalogue.doc_key("")) for key in keys]
    blob_keys = [f"{catalogue.settings.key_prefix}-vector:{book_id}" for book_id in ids]
    async with client.pipeline(transaction=False) as pipe:
        for key, blob_key in zip(keys, blob_keys, strict=True):
            pipe.execute_command("JSON.GET", key)
            pipe.get(blob_key)
        replies = await pipe.execute()
    async with client.pipeline(transaction=False) as pipe:
        for key, blob_key, text, blob in zip(
            keys, blob_keys, replies[::2], replies[1::2], strict=True
        ):
            if text is None:
                continue  # deleted since the scan
            document = json.loads(text)
            record = {name: document[name] for name in RECORD_FIELDS if name in document}
            record["id"] = str(record.get("id") or key.removeprefix(catalogue.doc_key("")))
            vector = _old_vector(document, blob)
            fields = book_hash(
                record,
                None if vector is None else vector_bytes(vector, catalogue.settings.vector_type),
            )
            fields["digests"] = _old_digests(document, record)
            write_book(pipe, key, fields, existed=True)
            pipe.delete(blob_key)
        await pipe.execute()
    return len(keys)


def _old_vector(document: dict[str, Any], blob: bytes | None) -> bytes | None:
    """The FLOAT32 blob the old index read, or the same numbers from the document."""
    if isinstance(blob, bytes) and len(blob) == DIMENSIONS * 4:
        return blob
    numbers = document.get("embedding")
    if not numbers:
        return None
    return np.asarray(numbers, dtype=np.float32).tobytes()


def _old_digests(document: dict[str, Any], record: dict[str, Any]) -> str:
    """The hashes the old loader stored (of the source record as it was read then), so a
    reload of the same source still finds every book unchanged."""
    content, description = document.get("content_sha256"), document.get("description_sha256")
    if isinstance(content, str) and isinstance(description, str):
        return content[:32] + description[:32]
    return record_digests(record)


async def _retype_vectors(client: Redis, keys: Sequence[str], vector_type: str) -> int:
    """Books whose vector is of the other type, converted; the count converted."""
    other = next(kind for name, kind in NUMPY_TYPES.items() if name != vector_type)
    other_size = DIMENSIONS * np.dtype(other).itemsize
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hget(key, VECTOR_FIELD)
        blobs = await pipe.execute()
    wrong = [
        (key, blob)
        for key, blob in zip(keys, blobs, strict=True)
        if isinstance(blob, bytes) and len(blob) == other_size
    ]
    if wrong:
        async with client.pipeline(transaction=False) as pipe:
            for key, blob in wrong:
                pipe.hset(key, VECTOR_FIELD, vector_bytes(blob, vector_type))
            await pipe.execute()
    return len(wrong)


async def _delete(client: Redis, keys: Sequence[str]) -> int:
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.unlink(key)
        await pipe.execute()
    return len(keys)
