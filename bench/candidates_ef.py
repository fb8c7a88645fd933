"""How wide HNSW must search for candidates that lookalike ranks itself to be exact.

    .venv/bin/python -m bench.candidates_ef [--requests 500] [--runs 3]

A pool for diversity or the author cap, BEST_SCORE's lists and HYBRID's candidates are
re-ranked by the server, and AVERAGE_VECTOR searches from a mix of books that lies where the
graph is thin: a book HNSW misses there changes the answer. For random requests (a book's
vector; AVERAGE_VECTOR mixes of 1 to 4 liked books, without and with 1 to 3 disliked) and K
of 10, 50 and 250, it counts the requests where HNSW missed a book that exact search (numpy,
over the vectors as the index holds them) ranks firmly inside the first K (more than 0.001
closer than the K-th), for several EF_RUNTIME values, and the time a KNN takes (FT.SEARCH's
own microseconds per query, INFO commandstats; min / median / max over the runs, the EF
values in turn in each run).

It starts its own embedded Redis and loads the shipped catalogue with the product's loader.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import numpy as np
import redis
from redisvl.query import VectorQuery

from bench.exclusion import loaded_redis
from bench.scale import shipped_scale
from lookalike.services.books.index import vector_bytes
from lookalike.services.books.records import VECTOR_FIELD
from lookalike.services.books.search.recommendations import average_vector_query
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.vector_math import unit_rows
from lookalike.services.redis.connection import open_client
from lookalike.services.redis.replicas import Reads
from lookalike.services.redis.searches import SearchPipeline

PLAN = {10: (100, 200, 400), 50: (100, 200, 400), 250: (250, 500, 1000)}
KINDS = ("a book", "liked books", "liked and disliked")


def requests(vectors: np.ndarray, count: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(5)
    found: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    for n in range(count):
        rows = rng.choice(len(vectors), 7, replace=False)
        liked, disliked = rows[: 1 + n % 4], rows[4 : 5 + n % 3]
        found["a book"].append(vectors[rows[0]].astype(np.float32))
        found["liked books"].append(average_vector_query(vectors[liked], vectors[[]]))
        found["liked and disliked"].append(average_vector_query(vectors[liked], vectors[disliked]))
    return found


def misses(vectors: np.ndarray, query: np.ndarray, found: set[int], k: int) -> bool:
    distances = 1 - vectors @ unit_rows(query)[0]
    order = np.argsort(distances, kind="stable")[:k]
    firm = {int(r) for r in order if distances[r] < distances[order[-1]] - 1e-3}
    return not firm <= found


async def measure(
    settings: Settings, raw: redis.Redis, vectors: np.ndarray, ids: list[str], count: int
) -> dict[tuple[str, int, int], tuple[int, float]]:
    """(kind, K, EF) -> requests with a miss, FT.SEARCH microseconds per query."""
    client = await open_client(settings.redis_url or "", 60)
    pipeline = SearchPipeline(Reads(client), settings.index_name)
    row = {book_id: n for n, book_id in enumerate(ids)}
    prefix = settings.key_prefix + ":"
    found: dict[tuple[str, int, int], tuple[int, float]] = {}
    try:
        for kind, queries in requests(vectors, count).items():
            for k, efs in PLAN.items():
                for ef in efs:
                    knn = [
                        VectorQuery(
                            vector=vector_bytes(q, settings.vector_type),
                            vector_field_name=VECTOR_FIELD,
                            return_fields=[],
                            num_results=k,
                            ef_runtime=ef,
                            dtype=settings.vector_type,
                        )
                        for q in queries
                    ]
                    raw.config_resetstat()
                    replies = await pipeline.run(knn)
                    stats = raw.info("commandstats")["cmdstat_FT.SEARCH"]
                    micros = float(stats["usec"]) / int(stats["calls"])
                    missed = sum(
                        misses(vectors, q, {row[key.removeprefix(prefix)] for key, _ in r.hits}, k)
                        for q, r in zip(queries, replies, strict=True)
                    )
                    found[(kind, k, ef)] = (missed, micros)
    finally:
        await client.aclose()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = shipped_scale()
    with loaded_redis(data, "candidates") as (settings, raw):
        vectors = unit_rows(data.vectors.astype(settings.vector_type))
        runs = [
            asyncio.run(measure(settings, raw, vectors, data.ids, args.requests))
            for _ in range(args.runs)
        ]
    print(
        f"{len(data.records):,} books, {args.requests} random requests a kind: requests where "
        "HNSW missed a book exact search ranks firmly in the first K; FT.SEARCH us a query "
        f"(min / median / max of {args.runs} runs)"
    )
    for kind in KINDS:
        print(f"  {kind}")
        for k, efs in PLAN.items():
            for ef in efs:
                missed = runs[0][(kind, k, ef)][0]
                micros = [run[(kind, k, ef)][1] for run in runs]
                print(
                    f"    K {k:3}  EF {ef:4}  missed {missed:3}/{args.requests}  "
                    f"{min(micros):6.0f} {statistics.median(micros):6.0f} {max(micros):6.0f} us"
                )


if __name__ == "__main__":
    main()
