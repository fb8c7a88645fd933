"""How a vector search should leave out books a reader has seen: a filter, or asking more.

    .venv/bin/python -m bench.exclusion [--books 1486] [--runs 3] [--rounds 30]

A KNN that must not return some books (the book searched from, the books a reader excluded)
can say so in the query, ``-@book_id:{1|2|...}`` (a TAG negation: RediSearch then runs a
filtered, "hybrid" KNN), or ask for ``K + len(excluded)`` neighbours and drop the excluded
ones in Python (the answer is the same: at most that many of them can be among the hits).
Asking more costs returned hits; a filter costs the hybrid search. Three ways are measured,
for ``exclude`` lists of 0 to 500 random books and K of 10 and 50 (a diversity pool):

- ``filter``: the book itself and the list in one TAG negation, K neighbours;
- ``ask more``: no filter, K + 1 + len(list) neighbours, dropped here;
- ``mix``: the list as a TAG negation, the book itself by asking one more.

Each sample is one pipeline of 20 KNN queries from 20 random books (a nested level), each hit
returning its title and vector, as a level with a level under it does; with and without a
facet filter (``genres: fantasy``, a quarter of the books). The three ways are interleaved
round by round; each run reports the median over its rounds of the pipeline's wall time
(client: sending, Redis, replies parsed) and of FT.SEARCH's own time per query (Redis's
``INFO commandstats``); the table shows min / median / max over the runs.

It starts its own embedded Redis (search 2.10) in a scratch folder and loads the shipped
catalogue with the product's loader (``--books`` above 1,486 adds bench/scale.py's generated
books).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from redisvl.query import VectorQuery
from redisvl.query.filter import FilterExpression

from bench.scale import ScaleCatalogue, generate, shipped_scale
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.filters import BookFilter, excluding
from lookalike.services.books.index import vector_bytes
from lookalike.services.books.loading.loader import load_books
from lookalike.services.books.queries import BookQueries
from lookalike.services.books.records import VECTOR_FIELD
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.redis.connection import Redis, open_client
from lookalike.services.redis.embedded import EmbeddedRedis
from lookalike.services.redis.replicas import Reads
from lookalike.services.redis.searches import SearchPipeline

SIZES = (0, 1, 5, 20, 50, 100, 200, 500)
WAYS = ("filter", "ask more", "mix")
LEVEL = 20  # queries in one pipeline
FACETS = BookFilter(genres=("fantasy",))


@dataclass(frozen=True)
class Case:
    k: int
    excluded: int
    facets: bool


def query(
    settings: Settings, vector: np.ndarray, k: int, *filters: FilterExpression | None
) -> VectorQuery:
    combined: FilterExpression | None = None
    for part in filters:
        if part is not None:
            combined = part if combined is None else combined & part
    return VectorQuery(
        vector=vector_bytes(vector.astype(np.float32), settings.vector_type),
        vector_field_name=VECTOR_FIELD,
        return_fields=["title", VECTOR_FIELD],
        filter_expression=combined,
        num_results=k,
        ef_runtime=BookQueries(settings).ef_runtime(k, thorough=False),
        dtype=settings.vector_type,
    )


def level(
    settings: Settings, data: ScaleCatalogue, case: Case, way: str, rng: np.random.Generator
) -> tuple[list[VectorQuery], Callable[[list[list[str]]], None]]:
    """One level's 20 queries the given way, and a check that each answer left out what it
    must and kept K books."""
    rows = rng.choice(len(data.ids), LEVEL, replace=False)
    facets = FACETS.expression() if case.facets else None
    queries, leave_outs = [], []
    for row in rows:
        itself = data.ids[int(row)]
        seen = {data.ids[int(r)] for r in rng.choice(len(data.ids), case.excluded, replace=False)}
        seen.discard(itself)
        vector = data.vectors[int(row)]
        if way == "filter":
            queries.append(query(settings, vector, case.k, facets, excluding(seen | {itself})))
        elif way == "ask more":
            queries.append(query(settings, vector, case.k + 1 + len(seen), facets))
        else:
            queries.append(query(settings, vector, case.k + 1, facets, excluding(seen)))
        leave_outs.append(seen | {itself})

    def check(found: list[list[str]]) -> None:
        for ids, leave_out in zip(found, leave_outs, strict=True):
            kept = [i for i in ids if i not in leave_out][: case.k]
            assert len(kept) == case.k, (case, way, len(kept))

    return queries, check


async def sample(
    client: Redis, raw: redis.Redis, settings: Settings, queries: list[VectorQuery]
) -> tuple[float, float, list[list[str]]]:
    """Wall ms of the pipeline, FT.SEARCH microseconds per query, and the ids found."""
    pipeline = SearchPipeline(Reads(client), settings.index_name)
    raw.config_resetstat()
    started = time.perf_counter()
    replies = await pipeline.run(queries)
    wall = (time.perf_counter() - started) * 1000
    stats = raw.info("commandstats").get("cmdstat_FT.SEARCH", {})
    per_query = float(stats.get("usec", 0)) / max(int(stats.get("calls", 1)), 1)
    prefix = settings.key_prefix + ":"
    return wall, per_query, [[key.removeprefix(prefix) for key, _ in r.hits] for r in replies]


async def run_once(
    settings: Settings, raw: redis.Redis, data: ScaleCatalogue, cases: list[Case], rounds: int
) -> dict[tuple[Case, str], tuple[float, float]]:
    client = await open_client(settings.redis_url or "", 30)
    walls: dict[tuple[Case, str], list[float]] = {}
    redis_us: dict[tuple[Case, str], list[float]] = {}
    rng = np.random.default_rng()
    try:
        for _ in range(rounds):
            for case in cases:
                for way in WAYS:  # interleaved: the same machine state for the three
                    queries, check = level(settings, data, case, way, rng)
                    wall, per_query, found = await sample(client, raw, settings, queries)
                    check(found)
                    walls.setdefault((case, way), []).append(wall)
                    redis_us.setdefault((case, way), []).append(per_query)
    finally:
        await client.aclose()
    return {key: (statistics.median(walls[key]), statistics.median(redis_us[key])) for key in walls}


@contextmanager
def loaded_redis(data: ScaleCatalogue, name: str) -> Iterator[tuple[Settings, redis.Redis]]:
    """A private embedded Redis (no persistence) with ``data`` loaded by the product's loader
    and fully indexed: its settings and a plain client, until the block ends."""
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix=f"lookalike-{name}-")))
    url = server.start()
    try:
        raw = redis.Redis.from_url(url, socket_timeout=600)
        raw.config_set("appendonly", "no")
        settings = Settings(redis_url=url, data_dir=server.data_dir)

        async def load() -> None:
            client = await open_client(url, 600)
            try:
                await load_books(
                    Catalogue(client, settings), data.records, shipped=data, embedder=text_embedder
                )
            finally:
                await client.aclose()

        asyncio.run(load())
        while True:
            info = raw.ft(settings.index_name).info()  # type: ignore[no-untyped-call]
            if float(info["percent_indexed"]) >= 1 and not int(info["indexing"]):
                break
            time.sleep(0.2)
        yield settings, raw
        raw.close()
    finally:
        server.stop()


def spread(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--books", type=int, default=1486)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    data = shipped_scale() if args.books <= 1486 else generate(args.books)
    with loaded_redis(data, "exclusion") as (settings, raw):
        cases = [Case(k, e, f) for f in (False, True) for k in (10, 50) for e in args.sizes]
        runs = [run_once(settings, raw, data, cases, args.rounds) for _ in range(args.runs)]
        results = [asyncio.run(r) for r in runs]
    print(
        f"{len(data.records):,} books; {LEVEL} KNN queries a pipeline (title + vector "
        f"returned); {args.runs} runs of {args.rounds} interleaved rounds: min / median / max "
        "of each run's median"
    )
    header = f"{'K':>3} {'excl':>5} {'facet':>5} {'way':<9}"
    print(f"  {header} {'pipeline ms':>23} {'FT.SEARCH us':>23}")
    for case in cases:
        for way in WAYS:
            walls = [r[(case, way)][0] for r in results]
            micros = [r[(case, way)][1] for r in results]
            facet = "yes" if case.facets else "no"
            print(
                f"  {case.k:>3} {case.excluded:>5} {facet:>5} {way:<9} "
                f"{spread(walls)} {spread(micros)}"
            )


if __name__ == "__main__":
    main()
