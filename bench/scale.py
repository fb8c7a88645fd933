"""How lookalike scales: catalogues of 10,000 and 100,000 books beside the shipped 1,486.

Run it with a lookalike server's Redis available (the embedded one of ``lookalike serve``, or
REDIS_URL); it starts its own ``lookalike serve`` per catalogue on free ports:

    .venv/bin/python -m bench.scale [--sizes 10000 100000] [--requests 300] [--recall-books 200]

Each size gets its own index and key prefix (``scale<N>``), dropped at the end (--keep keeps
it). The catalogue is the real 1,486 books plus generated ones; a generated book copies a real
record (new id, title and description marked as a variant) and gets a vector that is either
a real book's vector plus Gaussian noise (sigma 0.04-0.07: cosine distance ~0.2-0.4 from it,
a close relative) or a random mix of two real books' vectors plus light noise (something in
between two themes), renormalised. So neighbourhoods keep the real catalogue's structure and
HNSW meets dense clusters as well as the space between them: harder than uniform noise.
Vectors are made here, not by the model (100,000 descriptions would take an hour to embed on
two cores); they enter through the product's own loader, as shipped vectors do.

Per size: load time, Redis memory per book (INFO used_memory before and after), similar(k: 10)
p50/p95 over HTTP (sequential requests on random books), and recall@10 of the HNSW index
against exact neighbours (numpy) on random books.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import numpy as np
import redis

from lookalike.services.book_records import ALL_FIELDS, BookFields, sha256_text
from lookalike.services.book_requests import SimilarRequest
from lookalike.services.catalogue import Catalogue
from lookalike.services.catalogue_loader import load_books
from lookalike.services.embedded_redis import running_url
from lookalike.services.redis_connection import connect
from lookalike.services.settings import Settings, get_settings
from lookalike.services.shipped_catalogue import ShippedCatalogue, read_shipped
from lookalike.services.text_embedding import MODEL_NAME, text_embedder

SIMILAR = "query($id: ID!) { book(id: $id) { similar(k: 10) { distance book { title } } } }"


def generate(size: int, seed: int = 7) -> ShippedCatalogue:
    """The real catalogue plus ``size - 1486`` generated books, as a 'shipped' catalogue."""
    real = read_shipped()
    records = list(real.records)
    usable = [i for i, r in enumerate(records) if r["description"].strip()]
    real_vectors = real.matrix([records[i] for i in usable])  # row n: records[usable[n]]
    rng = np.random.default_rng(seed)
    extra = size - len(records)
    parents = rng.choice(len(usable), extra)
    others = rng.choice(len(usable), extra)
    mix = rng.uniform(0.2, 0.8, extra).astype(np.float32)[:, None]
    sigma = np.where(rng.random(extra) < 0.5, rng.uniform(0.04, 0.07, extra), 0.02)
    base = real_vectors[parents]
    blended = np.where(sigma[:, None] > 0.03, base, mix * base + (1 - mix) * real_vectors[others])
    made = blended + rng.normal(0, 1, (extra, base.shape[1])).astype(np.float32) * sigma[
        :, None
    ].astype(np.float32)
    made /= np.linalg.norm(made, axis=1, keepdims=True)
    for j, parent in enumerate(parents):
        record = dict(records[usable[parent]])
        record["id"] = str(1_000_000 + j)
        record["title"] = f"{record['title']} (variant {j})"
        record["description"] = f"{record['description']} [variant {j}]"
        records.append(record)
    all_vectors = np.concatenate([real_vectors, made])
    described = [r for r in records if r["description"].strip()]
    rows = {sha256_text(r["description"]): n for n, r in enumerate(described)}
    return ShippedCatalogue(records, all_vectors.astype(np.float32), rows, MODEL_NAME)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(settings: Settings, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    """A ``lookalike serve`` of its own on this catalogue's index, on a free port."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": settings.redis_url or "",
           "LOOKALIKE_INDEX_NAME": settings.index_name, "LOOKALIKE_KEY_PREFIX": settings.key_prefix,
           "LOOKALIKE_CATALOGUE_AUTOLOAD": "false", "LOOKALIKE_DATA_DIR": data_dir,
           "LOOKALIKE_LOG_LEVEL": "WARNING"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.schema.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return process, url + "/graphql"
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"lookalike serve on index {settings.index_name} did not become ready")


async def recall(settings: Settings, shipped: ShippedCatalogue, books: int, seed: int) -> float:
    """Mean recall@10 of HNSW against exact search; ties at the 10th distance count as hits."""
    described = [r for r in shipped.records if r["description"].strip()]
    matrix = shipped.matrix(described)
    sample = np.random.default_rng(seed).choice(len(described), books, replace=False)
    client = connect(settings.redis_url or "", 30)
    catalogue = Catalogue(client, settings)
    ids = [described[i]["id"] for i in sample]
    sources = {b.id: b for b in await catalogue.read(ids, ALL_FIELDS) if b}
    found = await catalogue.similar(
        [SimilarRequest(i, 10, fields=BookFields(frozenset())) for i in ids], sources
    )
    await client.aclose()
    hits = 0
    for i, neighbours in zip(sample, found, strict=True):
        distances = 1 - matrix @ matrix[i]
        distances[i] = np.inf  # the book itself
        tenth = np.partition(distances, 9)[9]
        hits += sum(1 for n in neighbours if n.distance <= tenth + 1e-5)
    return hits / (10 * books)


async def load(settings: Settings, data: ShippedCatalogue) -> float:
    """Seconds the product's loader takes to write the catalogue (vectors given, no model)."""
    client = connect(settings.redis_url or "", 60)
    catalogue = Catalogue(client, settings)
    started = time.perf_counter()
    summary = await load_books(catalogue, data.records, shipped=data, embedder=text_embedder)
    elapsed = time.perf_counter() - started
    await client.aclose()
    assert summary.embedded == 0, summary
    assert summary.total == len(data.records), summary
    return elapsed


@dataclass
class Measured:
    """One catalogue under test: its settings, its data, and what loading it cost."""

    settings: Settings
    data: ShippedCatalogue
    load_seconds: float | None = None
    bytes_per_book: float | None = None
    timings: list[float] | None = None
    recall: float = 0.0

    def line(self, base_p50: float) -> str:
        assert self.timings is not None
        p50, p95 = np.percentile(self.timings, 50), np.percentile(self.timings, 95)
        load_s = f"{self.load_seconds:8.1f}" if self.load_seconds else f"{'shipped':>8}"
        size = f"{self.bytes_per_book:11,.0f}" if self.bytes_per_book else f"{'':>11}"
        books = len(self.data.records)
        return (
            f"{books:8,} {load_s} {size} {p50:8.2f} {p95:8.2f} "
            f"{p50 / base_p50:12.2f}x {self.recall:10.3f}"
        )


def load_into_redis(target: Measured) -> None:
    raw = redis.Redis.from_url(target.settings.redis_url or "")
    before = int(raw.info("memory")["used_memory"])
    target.load_seconds = asyncio.run(load(target.settings, target.data))
    index = raw.ft(target.settings.index_name)
    while float(index.info()["percent_indexed"]) < 1:  # type: ignore[no-untyped-call]
        time.sleep(0.5)
    used = int(raw.info("memory")["used_memory"]) - before
    target.bytes_per_book = used / len(target.data.records)


def interleaved_latencies(targets: list[Measured], requests: int) -> None:
    """One server per catalogue, requests sent round-robin across them: every catalogue is
    timed in the same minutes, so the machine's drift cannot favour one size."""
    servers = [serve(t.settings, str(t.settings.data_dir)) for t in targets]
    rng = np.random.default_rng(11)
    samples = [
        list(rng.choice([r["id"] for r in t.data.records if r["description"].strip()], requests))
        for t in targets
    ]
    try:
        with httpx.Client(timeout=30) as client:
            timings: list[list[float]] = [[] for _ in targets]
            for n in range(-20, requests):  # the first 20 rounds warm up
                for i, (_, url) in enumerate(servers):
                    book_id = samples[i][n % requests]
                    started = time.perf_counter()
                    body = client.post(url, json={"query": SIMILAR, "variables": {"id": book_id}})
                    if n >= 0:
                        timings[i].append((time.perf_counter() - started) * 1000)
                    assert "errors" not in body.json(), body.text
        for target, found in zip(targets, timings, strict=True):
            target.timings = found
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait()


def drop(settings: Settings) -> None:
    # deleting 100,000 documents takes Redis a while: longer than redis-py's default timeout
    raw = redis.Redis.from_url(settings.redis_url or "", socket_timeout=600)
    raw.ft(settings.index_name).dropindex(delete_documents=True)
    keys = list(raw.scan_iter(match=f"{settings.key_prefix}-vector:*", count=10_000))
    for start in range(0, len(keys), 1000):
        raw.unlink(*keys[start : start + 1000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--recall-books", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    base = get_settings()
    redis_url = base.redis_url or running_url(base.data_dir)
    if not redis_url:
        sys.exit("no Redis found: start `lookalike serve` first, or set REDIS_URL")
    base = base.model_copy(update={"redis_url": redis_url})

    targets = [Measured(base, read_shipped())]
    for size in args.sizes:
        name = f"scale{size}"
        target = Measured(
            base.model_copy(update={"index_name": name, "key_prefix": name}), generate(size)
        )
        load_into_redis(target)
        targets.append(target)
        print(f"  loaded {size:,} books", file=sys.stderr)
    try:
        interleaved_latencies(targets, args.requests)
        for target in targets:
            target.recall = asyncio.run(recall(target.settings, target.data, args.recall_books, 2))
        report(base, targets, args)
    finally:
        if not args.keep:
            for target in targets[1:]:
                drop(target.settings)
            # the AOF still holds every document written: compact it, or the next start of
            # the server replays them all
            redis.Redis.from_url(redis_url).bgrewriteaof()


def report(base: Settings, targets: list[Measured], args: argparse.Namespace) -> None:
    print(
        f"HNSW M {base.hnsw_m}, EF_CONSTRUCTION {base.hnsw_ef_construction}, "
        f"EF_RUNTIME {base.hnsw_ef_runtime}; similar(k: 10) over HTTP, {args.requests} "
        f"requests per catalogue, interleaved; recall@10 on {args.recall_books} random books"
    )
    print(
        f"{'books':>8} {'load s':>8} {'bytes/book':>11} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p50 vs 1,486':>13} {'recall@10':>10}"
    )
    base_p50 = float(np.percentile(targets[0].timings or [1.0], 50))
    for target in targets:
        print(target.line(base_p50), flush=True)


if __name__ == "__main__":
    main()
