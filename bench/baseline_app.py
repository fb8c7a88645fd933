"""The single-query baseline: a minimal hand-written Starlette endpoint, no GraphQL.

GET /similar/{id}?k=5 reads the book's vector and runs one KNN with redis-py, the way the
course does, and returns the same JSON shape as lookalike's ``book { similar { ... } }``.
Run by bench/books.py with uvicorn; REDIS_URL and LOOKALIKE_INDEX_NAME/KEY_PREFIX say where.
"""

from __future__ import annotations

import json
import os

import redis.asyncio as aredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.course import knn_with_titles, vector_of

REDIS = aredis.Redis.from_url(os.environ["REDIS_URL"], protocol=2)
INDEX = os.environ.get("LOOKALIKE_INDEX_NAME", "books")
PREFIX = os.environ.get("LOOKALIKE_KEY_PREFIX", "book")


async def similar(request: Request) -> JSONResponse:
    book_id = request.path_params["book_id"]
    k = int(request.query_params.get("k", 5))
    vector = vector_of(await REDIS.hget(f"{PREFIX}:{book_id}", "embedding"))
    found = await REDIS.ft(INDEX).search(knn_with_titles(k), {"vec": vector})
    matches = [
        {"distance": float(doc.distance), "book": {"title": doc.title}}
        for doc in found.docs
        if doc.id != f"{PREFIX}:{book_id}"
    ][:k]
    return JSONResponse({"data": {"book": {"similar": matches}}})


app = Starlette(routes=[Route("/similar/{book_id}", similar)])

if __name__ == "__main__":
    print(json.dumps({"index": INDEX, "prefix": PREFIX}))
