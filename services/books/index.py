"""The books index: one Hash per book, described once (a RedisVL schema plus what it cannot say).

Each book is a Hash ``<prefix>:<id>`` whose fields are the API's fields as text (lists as JSON
text, the two tag lists joined by ``|``) and the vector as a FLOAT16 or FLOAT32 blob, the form
the index reads. So the vector is stored once in the keyspace, any field can be RETURNed on
its own by a search, and a book is one key: on a cluster it lives on one shard, with nothing
beside it that must change with it.

The index holds, over those fields: the HNSW cosine index of the vector; the TAG and NUMERIC
fields the filters use (genres, author, year_published, rating, inventory_status) and the
sortable id_number that pages and excludes a book from its own neighbours; the same number as
a TAG (``book_id``), so that a search can leave out hundreds of books a reader has seen in
one clause (measured: a long list costs a KNN query far less as one TAG negation than as
numeric negations; docs/decisions.md); and full text (BM25) over title (weighted highest),
author and description for keyword search. Term offsets are not kept (NOOFFSETS): they cost
memory on every book and serve only exact-phrase queries and highlighting. HNSW parameters
come from settings: the defaults (M 32, EF_CONSTRUCTION 200, and EF_RUNTIME 100 sent with
every query on catalogues of up to a few hundred thousand books a shard, more past that:
``services/books/queries.py``) reproduce exact nearest neighbours on the shipped catalogue,
where the server's default EF_RUNTIME 10 misses some.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from redis.commands.search.field import TagField, TextField
from redisvl.schema import IndexSchema

from lookalike.services.books.records import VECTOR_FIELD
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import DIMENSIONS
from lookalike.services.redis.indexes import IndexExtras

TAG_SEPARATOR = "|"  # genres and inventory statuses in one hash field each
TITLE_WEIGHT = 3.0

NUMPY_TYPES = {"float16": np.float16, "float32": np.float32}


def shaping_settings(settings: Settings) -> str:
    """The settings that shape the books index, as an operator sets them (for messages)."""
    return (
        f"LOOKALIKE_VECTOR_TYPE={settings.vector_type}, LOOKALIKE_HNSW_M={settings.hnsw_m}, "
        f"LOOKALIKE_HNSW_EF_CONSTRUCTION={settings.hnsw_ef_construction}"
    )


def book_schema(settings: Settings) -> IndexSchema:
    tags = {"separator": TAG_SEPARATOR}
    fields: list[dict[str, Any]] = [
        {"name": "id_number", "type": "numeric", "attrs": {"sortable": True}},
        {"name": "title", "type": "text", "attrs": {"weight": TITLE_WEIGHT}},
        {"name": "author", "type": "tag"},
        {"name": "description", "type": "text"},
        {"name": "genres", "type": "tag", "attrs": tags},
        {"name": "year_published", "type": "numeric"},
        {"name": "rating", "type": "numeric"},
        {"name": "inventory_status", "type": "tag", "attrs": tags},
        {
            "name": VECTOR_FIELD,
            "type": "vector",
            "attrs": {
                "algorithm": "hnsw",
                "dims": DIMENSIONS,
                "distance_metric": "cosine",
                "datatype": settings.vector_type,
                "m": settings.hnsw_m,
                "ef_construction": settings.hnsw_ef_construction,
            },
        },
    ]
    return IndexSchema.from_dict(
        {
            "index": {
                "name": settings.index_name,
                "prefix": f"{settings.key_prefix}:",
                "storage_type": "hash",
            },
            "fields": fields,
        }
    )


BOOK_ID_TAG = "book_id"

# The author is matched whole by the filter (TAG) and word by word by keyword search (TEXT);
# the id is a sortable number and a TAG for exclusions. RedisVL's schema cannot index one
# hash field twice, so the second ones are said here.
BOOK_INDEX_EXTRAS = IndexExtras(
    fields=(
        TextField("author", as_name="author_text"),
        TagField("id_number", as_name=BOOK_ID_TAG),
    ),
    options=("NOOFFSETS",),
)


def vector_bytes(vector: bytes | np.ndarray, vector_type: str) -> bytes:
    """A vector as the index reads it: FLOAT32 blobs (the shipped vectors, the model, the
    search cache) are converted when the index holds FLOAT16, and back."""
    wanted = NUMPY_TYPES[vector_type]
    if isinstance(vector, bytes):
        stored = next(
            (
                kind
                for kind in NUMPY_TYPES.values()
                if len(vector) == DIMENSIONS * np.dtype(kind).itemsize
            ),
            None,
        )
        if stored is None:
            raise ValueError(f"a vector blob of {len(vector)} bytes is not {DIMENSIONS} floats")
        if stored is wanted:
            return vector
        vector = np.frombuffer(vector, dtype=stored)
    return np.asarray(vector).astype(wanted).tobytes()
