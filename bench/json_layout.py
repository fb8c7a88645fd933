"""The layout of the catalogue before issue 13, written as those versions wrote it.

Each book a JSON document ``<prefix>:<id>`` (the record, ``id_number``, the two hashes, the
embedding as a JSON array of numbers) with the same vector as a FLOAT32 blob in
``<prefix>-vector:<id>``, under a JSON index. Used to measure what the old layout cost
(bench/memory.py) and to test that a server of this version converts it
(tests/services/books/loading/test_layout_upgrade.py).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import redis
from redisvl.index import SearchIndex
from redisvl.schema import IndexSchema

from lookalike.services.books.loading.shipped import ShippedCatalogue
from lookalike.services.books.records import content_hash, sha256_text

OLD_FIELDS = (
    "id", "title", "author", "description", "genres", "editions",
    "inventory", "metrics", "pages", "url", "year_published",
)  # fmt: skip


def old_schema(name: str) -> IndexSchema:
    """The books index as the JSON versions defined it (index name = key prefix = ``name``)."""
    vector = {
        "algorithm": "hnsw", "dims": 384, "distance_metric": "cosine", "datatype": "float32",
        "m": 16, "ef_construction": 200, "ef_runtime": 100,
    }  # fmt: skip
    return IndexSchema.from_dict(
        {
            "index": {"name": name, "prefix": name, "key_separator": ":", "storage_type": "json"},
            "fields": [
                {"name": "id", "type": "tag", "path": "$.id"},
                {
                    "name": "id_number",
                    "type": "numeric",
                    "path": "$.id_number",
                    "attrs": {"sortable": True},
                },
                {"name": "title", "type": "text", "path": "$.title"},
                {"name": "author", "type": "tag", "path": "$.author"},
                {"name": "genres", "type": "tag", "path": "$.genres[*]"},
                {"name": "year", "type": "numeric", "path": "$.year_published"},
                {"name": "rating", "type": "numeric", "path": "$.metrics.score"},
                {"name": "inventory_status", "type": "tag", "path": "$.inventory[*].status"},
                {"name": "embedding", "type": "vector", "path": "$.embedding", "attrs": vector},
            ],
        }
    )


def old_document(record: dict[str, Any], vector: np.ndarray | None) -> str:
    """A book as the JSON versions' loader wrote it."""
    defaults: dict[str, Any] = {"genres": [], "editions": [], "inventory": [], "metrics": {}}
    document = {name: record.get(name, defaults.get(name)) for name in OLD_FIELDS}
    document["id_number"] = int(record["id"])
    document["content_sha256"] = content_hash(record)
    document["description_sha256"] = sha256_text(record["description"])
    if vector is not None:
        document["embedding"] = vector.astype(np.float32).tolist()
    return json.dumps(document, ensure_ascii=False)


def write_json_catalogue(client: redis.Redis, name: str, catalogue: ShippedCatalogue) -> None:
    """The index and every book of ``catalogue`` in the old layout, under ``name``."""
    SearchIndex(old_schema(name), redis_client=client).create()
    pipe = client.pipeline(transaction=False)
    for record in catalogue.records:
        vector = catalogue.vector_for(record["description"])
        document = old_document(record, vector)
        pipe.execute_command("JSON.SET", f"{name}:{record['id']}", "$", document)  # type: ignore[no-untyped-call]
        if vector is not None:
            pipe.set(f"{name}-vector:{record['id']}", vector.astype(np.float32).tobytes())
    pipe.execute()
