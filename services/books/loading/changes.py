"""Catalogue changes through the API: books added or replaced, books deleted, a batch a call.

The same steps as a load (``loader``): every record is checked before anything is written,
its stored digests say whether it is new, changed or unchanged, an unchanged description
keeps its vector, and the new descriptions are embedded in one batch in a thread (the event
loop keeps serving). What the model will embed is known only after the digests are read, so
its cost is counted then, against its own ceiling (``LOOKALIKE_MAX_CHANGE_COST``), before any
write (``embedding_cost``). The catalogue's version changes once, after the call's last write
or delete: an answer read before it, or during it, is not served after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.index import vector_bytes
from lookalike.services.books.loading.loader import (
    LoadSummary,
    Pending,
    claim,
    compare_with_stored,
    remove_books,
    write_pending,
)
from lookalike.services.books.records import RecordProblem, check_record, is_book_id
from lookalike.services.core.errors import BadUserInput, CostLimit, ServiceUnavailable, quote
from lookalike.services.core.request_usage import model_time, note_write
from lookalike.services.embeddings.text_model import TextEmbedder

MAX_BOOKS_PER_CALL = 500
# What embedding a description costs, in the query cost's units: a model run, priced as a
# searchBooks text is (schema/limits/cost.py: TEXT_MODEL_RUN), and per character what
# bench/description_embedding.py measures a description in a batch to take against a
# search text alone (docs/benchmarks.md)
EMBEDDING = 500
UNITS_PER_CHARACTER = 4


@dataclass(frozen=True, slots=True)
class BookChanges:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0


def embedding_cost(descriptions: Sequence[str]) -> int:
    """What the model's work on these descriptions costs (blank ones are not embedded)."""
    return sum(EMBEDDING + UNITS_PER_CHARACTER * len(text) for text in descriptions if text.strip())


def check_batch(records: Sequence[dict[str, Any]]) -> None:
    """BAD_USER_INPUT naming the first book (its index and field) the catalogue cannot take."""
    if len(records) > MAX_BOOKS_PER_CALL:
        raise BadUserInput(
            f"at most {MAX_BOOKS_PER_CALL} books a call, got {len(records)}",
            argument="books",
            max=MAX_BOOKS_PER_CALL,
        )
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        try:
            check_record(record)
        except RecordProblem as problem:
            raise BadUserInput(
                f"books[{index}].{problem.field}: {problem.problem}",
                argument="books",
                index=index,
                field=problem.field,
            ) from None
        first = seen.setdefault(record["id"], index)
        if first != index:
            raise BadUserInput(
                f"books[{index}].id: {record['id']} is also books[{first}]: an id once a call",
                argument="books",
                index=index,
                field="id",
            )


async def upsert_books(
    catalogue: Catalogue,
    records: Sequence[dict[str, Any]],
    embedder: Callable[[], TextEmbedder],
) -> BookChanges:
    """Add the new books and replace the changed ones; embed only the new descriptions.

    The embeddings have their own ceiling (``LOOKALIKE_MAX_CHANGE_COST``), not the query
    limit's: a change is a full key's, and a query's limit would let a call embed about five
    descriptions, making the 500-book batch a fiction. Refused (nothing written) above it."""
    check_batch(records)
    summary = LoadSummary()
    pending = await compare_with_stored(catalogue, records, summary)
    todo = [i for i in pending if not i.keep_vector and i.record["description"].strip()]
    cost = embedding_cost([item.record["description"] for item in todo])
    limit = catalogue.settings.max_change_cost
    if cost > limit:
        raise CostLimit(
            f"embedding {len(todo)} new description(s) would cost {cost:,}, more than the "
            f"{limit:,} a call may (LOOKALIKE_MAX_CHANGE_COST): send fewer books a call",
            cost=cost,
            maxCost=limit,
        )
    if todo:
        await _embed(todo, embedder, catalogue.settings.vector_type)
    if pending:
        await _changing(catalogue, write_pending(catalogue, pending))
    return BookChanges(summary.added, summary.updated, summary.unchanged, 0)


async def delete_books(catalogue: Catalogue, book_ids: Sequence[str]) -> BookChanges:
    """Delete these books (an id that names no book counts for nothing)."""
    if len(book_ids) > MAX_BOOKS_PER_CALL:
        raise BadUserInput(
            f"at most {MAX_BOOKS_PER_CALL} ids a call, got {len(book_ids)}",
            argument="ids",
            max=MAX_BOOKS_PER_CALL,
        )
    bad = next((i for i in book_ids if not is_book_id(i)), None)
    if bad is not None:
        raise BadUserInput(f"{quote(bad)} cannot be a book id (1 to 15 digits)", argument="ids")
    wanted = list(dict.fromkeys(book_ids))
    if not wanted:
        return BookChanges()
    deleted = await _changing(catalogue, remove_books(catalogue, wanted))
    return BookChanges(deleted=deleted)


async def _changing(catalogue: Catalogue, writes: Any) -> Any:
    """Run the writes, then change the catalogue's version once (also when they failed half
    way: what was written stays, and no answer kept from before is served after it)."""
    note_write()  # this request's later reads see its writes (the primary, not a replica)
    try:
        done = await writes
    except BaseException:
        with contextlib.suppress(ServiceUnavailable):
            await catalogue.changed()
        raise
    await catalogue.changed()
    await claim(catalogue)
    return done


async def _embed(
    todo: Sequence[Pending], embedder: Callable[[], TextEmbedder], vector_type: str
) -> None:
    texts = [item.record["description"] for item in todo]
    with model_time("text"):
        vectors = await asyncio.to_thread(lambda: embedder().encode(texts))
    for item, vector in zip(todo, vectors, strict=True):
        item.vector = vector_bytes(vector, vector_type)
