"""What a book costs in Redis memory, layout by layout.

    .venv/bin/python -m bench.memory [--books 1486] [--only default before] [--recall 500]

Each row loads the catalogue into a Redis of its own (the embedded Redis 8.2 with the search
and JSON modules, started empty in a scratch folder, no persistence) and reports the growth of
``used_memory`` once every book is indexed, divided by the number of books. ``--books`` above
1,486 adds generated books (bench/scale.py's generator: real records and vectors, varied),
which shows the cost once fixed overheads are spread: the text index's vocabulary, HNSW's
blocks of 1,024 vectors.

Rows: the layout before issue 13 (JSON document + FLOAT32 blob); this version's layout with
FLOAT16 (the default) and FLOAT32 vectors, both through the product's loader; and the
alternatives that were measured to choose it (Redis's default hash-max-listpack-value,
term offsets kept, no full text on descriptions, no full text at all). ``--recall N`` adds,
for the product's layouts, recall@10 of ``similar`` on N random books against exact search
(numpy, FLOAT32): what FLOAT16 vectors cost in answers.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis
from redisvl.schema import IndexSchema

from bench.json_layout import write_json_catalogue
from bench.scale import ScaleCatalogue, generate, recall, shipped_scale
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.index import BOOK_INDEX_EXTRAS, book_schema, vector_bytes
from lookalike.services.books.loading.loader import load_books
from lookalike.services.books.records import book_hash
from lookalike.services.books.writes import write_book
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.redis.connection import connect
from lookalike.services.redis.embedded import EmbeddedRedis
from lookalike.services.redis.indexes import IndexExtras, create_index

NAME = "books"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    vector_type: str = "float16"
    listpack: bool = True  # the embedded Redis's hash-max-listpack-value; else Redis's 64
    text_fields: tuple[str, ...] = ("title", "description")  # TEXT fields of the schema
    extras: IndexExtras = BOOK_INDEX_EXTRAS
    product: bool = False  # loaded by the product's loader with the product's index
    json: bool = False  # the layout before issue 13

    def schema(self, settings: Settings) -> IndexSchema:
        described = book_schema(settings).to_dict()
        described["fields"] = [
            f for f in described["fields"] if f["type"] != "text" or f["name"] in self.text_fields
        ]
        return IndexSchema.from_dict(described)


VARIANTS = [
    Variant("before", "before: JSON document + FLOAT32 blob", listpack=False, json=True),
    Variant("default", "Hash, FLOAT16 (this version's default)", product=True),
    Variant("float32", "Hash, FLOAT32", vector_type="float32", product=True),
    Variant("hashtable", "Hash, FLOAT16, hash-max-listpack-value 64", listpack=False),
    Variant(
        "offsets",
        "Hash, FLOAT16, term offsets kept",
        extras=replace(BOOK_INDEX_EXTRAS, options=()),
    ),
    Variant("no-description", "Hash, FLOAT16, no full text on description", text_fields=("title",)),
    Variant("no-text", "Hash, FLOAT16, no full text", text_fields=(), extras=IndexExtras()),
]


async def load_variant(settings: Settings, variant: Variant, data: ScaleCatalogue) -> None:
    client = connect(settings.redis_url or "", 600)
    try:
        if variant.product:
            summary = await load_books(
                Catalogue(client, settings), data.records, shipped=data, embedder=text_embedder
            )
            assert summary.embedded == 0, summary
            return
        await create_index(client, variant.schema(settings), variant.extras)
        for start in range(0, len(data.records), 1000):
            async with client.pipeline(transaction=False) as pipe:
                for record in data.records[start : start + 1000]:
                    vector = data.vector_for(record["description"])
                    blob = None if vector is None else vector_bytes(vector, variant.vector_type)
                    write_book(
                        pipe, f"{NAME}:{record['id']}", book_hash(record, blob), existed=False
                    )
                await pipe.execute()
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Measure:
    bytes_per_book: float
    load_seconds: float
    recall: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ann-benchmarks, strict, KNN s
    restart_seconds: float = 0.0  # 0 when not asked


def indexed(raw: redis.Redis) -> dict[str, Any]:
    """FT.INFO once every book is indexed."""
    while True:
        info: dict[str, Any] = raw.ft(NAME).info()  # type: ignore[no-untyped-call]
        if float(info["percent_indexed"]) >= 1 and not int(info["indexing"]):
            return info
        time.sleep(0.2)


def measure(variant: Variant, data: ScaleCatalogue, recall_books: int, restart: bool) -> Measure:
    """Bytes of used_memory per book after loading ``data`` into an empty Redis, seconds
    until every book was indexed, the recall@10 of ``similar``, and how long the Redis takes
    to start again from its append-only file until every book is indexed again."""
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="lookalike-memory-")))
    url = server.start()
    try:
        raw = redis.Redis.from_url(url, socket_timeout=600)
        if not restart:
            raw.config_set("appendonly", "no")
        if not variant.listpack:
            raw.config_set("hash-max-listpack-value", 64)
        before = int(raw.info("memory")["used_memory"])
        settings = Settings(
            redis_url=url,
            data_dir=server.data_dir,
            index_name=NAME,
            key_prefix=NAME,
            vector_type=variant.vector_type,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        if variant.json:
            write_json_catalogue(raw, NAME, data)
        else:
            asyncio.run(load_variant(settings, variant, data))
        info = indexed(raw)
        seconds = time.perf_counter() - started
        assert int(info["num_docs"]) == len(data.records), info["num_docs"]
        assert int(info["hash_indexing_failures"]) == 0
        used = int(raw.info("memory")["used_memory"]) - before
        raw.close()
        found = (0.0, 0.0, 0.0)
        if recall_books and variant.product:
            found = asyncio.run(recall(settings, data, recall_books, seed=3))[:3]
        again = 0.0
        if restart:
            raw.bgrewriteaof()  # what a long-running Redis has: a compact AOF
            while int(raw.info("persistence")["aof_rewrite_in_progress"]):
                time.sleep(0.2)
            server.stop()
            started = time.perf_counter()
            server.start()  # returns once Redis answers: the AOF is loaded
            raw = redis.Redis.from_url(url, socket_timeout=600)
            indexed(raw)
            again = time.perf_counter() - started
            raw.close()
        return Measure(used / len(data.records), seconds, found, again)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--books", type=int, default=1486)
    parser.add_argument("--only", nargs="+", choices=[v.key for v in VARIANTS])
    parser.add_argument("--recall", type=int, default=0, help="books to measure recall on")
    parser.add_argument("--restart", action="store_true", help="time a restart from the AOF")
    args = parser.parse_args()
    data = shipped_scale() if args.books <= 1486 else generate(args.books)
    chosen = [v for v in VARIANTS if not args.only or v.key in args.only]
    hnsw = Settings()
    print(
        f"Redis memory per book: used_memory growth for a load of {len(data.records):,} books "
        "into an empty Redis 8.2 (search 2.10), once indexed; HNSW M "
        f"{hnsw.hnsw_m}, EF_CONSTRUCTION {hnsw.hnsw_ef_construction}"
    )
    titles = f"{'recall@10':>10} {'strict':>7}" if args.recall else ""
    titles += f" {'restart s':>9}" if args.restart else ""
    print(f"  {'layout':<48} {'bytes/book':>10} {'vs before':>10} {'load s':>7} {titles}")
    first: float | None = None
    for variant in chosen:
        m = measure(variant, data, args.recall, args.restart)
        size = m.bytes_per_book
        first = first if first is not None else (size if variant.json else None)
        ratio = f"{size / first:9.2f}x" if first else ""
        shown = ""
        if args.recall:
            product = variant.product
            shown += f"{m.recall[0]:10.4f} {m.recall[1]:7.4f}" if product else " " * 18
        if args.restart:
            shown += f" {m.restart_seconds:9.1f}"
        print(
            f"  {variant.label:<48} {size:10,.0f} {ratio:>10} {m.load_seconds:7.1f} {shown}",
            flush=True,
        )


if __name__ == "__main__":
    main()
