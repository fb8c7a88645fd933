"""The single-query baseline: a minimal hand-written Starlette endpoint, no GraphQL.

GET /similar/{id}?k=5 reads the book's vector and runs one KNN with redis-py, the way the
course does, and returns the same JSON shape as lookalike's ``book { similar { ... } }``.
Run by bench/books.py with uvicorn; REDIS_URL says where, BASELINE_LAYOUT (``course`` or
``lookalike``) which layout it reads (bench/course.py), LOOKALIKE_INDEX_NAME/KEY_PREFIX and
LOOKALIKE_HNSW_EF_RUNTIME the server's index and search settings.
"""

from __future__ import annotations

import os
from typing import Any

import redis.asyncio as aredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.course import COURSE, knn_with_titles, lookalike_layout

REDIS = aredis.Redis.from_url(os.environ["REDIS_URL"], protocol=2)
LAYOUT = (
    COURSE
    if os.environ.get("BASELINE_LAYOUT") == "course"
    else lookalike_layout(
        os.environ.get("LOOKALIKE_INDEX_NAME", "books"),
        os.environ.get("LOOKALIKE_KEY_PREFIX", "book"),
    )
)
EF_RUNTIME = int(os.environ.get("LOOKALIKE_HNSW_EF_RUNTIME", "100"))


async def similar(request: Request) -> JSONResponse:
    book_id = request.path_params["book_id"]
    k = int(request.query_params.get("k", 5))
    key = LAYOUT.key(book_id)
    stored: Any = (
        await REDIS.json().get(key, "$.embedding")
        if LAYOUT.json
        else await REDIS.hget(key, "embedding")
    )
    found = await REDIS.ft(LAYOUT.index).search(
        knn_with_titles(k, EF_RUNTIME), {"vec": LAYOUT.vector(stored)}
    )
    matches = [
        {"distance": float(doc.distance), "book": {"title": doc.title}}
        for doc in found.docs
        if doc.id != key
    ][:k]
    return JSONResponse({"data": {"book": {"similar": matches}}})


app = Starlette(routes=[Route("/similar/{book_id}", similar)])
