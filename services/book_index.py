"""The books index, described once as a RedisVL schema.

JSON documents under ``<prefix>:<id>``; the fields the API filters or sorts on are indexed
beside the HNSW cosine index over ``$.embedding``. HNSW parameters come from settings: the
defaults (M 16, EF_CONSTRUCTION 200, EF_RUNTIME 100) reproduce exact nearest neighbours on
the shipped catalogue, where the server defaults (EF_RUNTIME 10) miss some.
"""

from __future__ import annotations

from typing import Any

from redisvl.index import AsyncSearchIndex
from redisvl.schema import IndexSchema

from lookalike.services.settings import Settings
from lookalike.services.text_embedding import DIMENSIONS

VECTOR_FIELD = "embedding"


def book_schema(settings: Settings) -> IndexSchema:
    fields: list[dict[str, Any]] = [
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
        {
            "name": VECTOR_FIELD,
            "type": "vector",
            "path": "$.embedding",
            "attrs": {
                "algorithm": "hnsw",
                "dims": DIMENSIONS,
                "distance_metric": "cosine",
                "datatype": "float32",
                "m": settings.hnsw_m,
                "ef_construction": settings.hnsw_ef_construction,
                "ef_runtime": settings.hnsw_ef_runtime,
            },
        },
    ]
    return IndexSchema.from_dict(
        {
            "index": {
                "name": settings.index_name,
                "prefix": settings.key_prefix,
                "key_separator": ":",
                "storage_type": "json",
            },
            "fields": fields,
        }
    )


def book_index(settings: Settings, client: Any) -> AsyncSearchIndex:
    return AsyncSearchIndex(book_schema(settings), redis_client=client)
