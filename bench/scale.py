"""How lookalike scales: catalogues of 100,000 and 1,000,000 books beside the shipped 1,486.

Run it with a lookalike server's Redis available (the embedded one of ``lookalike serve``, or
REDIS_URL: one Redis or any node of a Redis Cluster); it starts its own ``lookalike serve``
per catalogue on free ports:

    .venv/bin/python -m bench.scale [--sizes 100000 1000000] [--requests 300] [--recall-books 200]

Each size gets its own index and key prefix (``scale<N>``), dropped at the end (--keep keeps
it). The catalogue is the real 1,486 books plus generated ones; a generated book copies a real
record (new id, title and description marked as a variant) and gets a vector that is either
a real book's vector plus Gaussian noise (sigma 0.04-0.07: cosine distance ~0.2-0.4 from it,
a close relative) or a random mix of two real books' vectors plus light noise (something in
between two themes), renormalised. So neighbourhoods keep the real catalogue's structure and
HNSW meets dense clusters as well as the space between them: harder than uniform noise.
Vectors are made here, not by the model (a million descriptions would take ten hours to
embed on two cores); they enter through the product's own loader, as shipped vectors do.
Records are made one chunk at a time as the loader asks for them, so a million books need
the vectors (1.5 GB) in this process, not a million dicts.

Per size: load time (the product's loader, until it returns) and indexed time (until the
index reports every book indexed, when searches see them all), Redis memory per book
(used_memory of every primary before and after), similar(k: 10) p50/p95 over HTTP
(requests on random books, round-robin across the catalogues' servers), and recall@10 of the
HNSW index against exact neighbours (numpy) on random books, at the EF_RUNTIME the server
uses (LOOKALIKE_HNSW_EF_RUNTIME, or the one the index's size chooses: the last column), and
with ``--ef-runtimes`` at others. ``--keep`` leaves the catalogues in Redis and ``--kept``
measures them again without loading (a million books take many minutes to load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import httpx
import numpy as np
import redis

from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import load_books
from lookalike.services.books.loading.shipped import ShippedCatalogue, read_shipped
from lookalike.services.books.records import ALL_FIELDS, BookFields, sha256_text
from lookalike.services.books.requests import SimilarRequest
from lookalike.services.core.settings import Settings, get_settings
from lookalike.services.embeddings.text_model import MODEL_NAME, Vectors, text_embedder
from lookalike.services.redis.connection import open_client
from lookalike.services.redis.embedded import running_url

SIMILAR = "query($id: ID!) { book(id: $id) { similar(k: 10) { distance book { title } } } }"
FIRST_GENERATED_ID = 1_000_000
VARIANT = re.compile(r" \[variant (\d+)\]$")


class GeneratedRecords(Sequence[dict[str, Any]]):
    """The real records, then the generated ones, each made when it is asked for."""

    def __init__(self, real: list[dict[str, Any]], usable: list[int], parents: np.ndarray):
        self.real, self.usable, self.parents = real, usable, parents

    def __len__(self) -> int:
        return len(self.real) + len(self.parents)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if index < len(self.real):
            return self.real[index]
        j = index - len(self.real)
        record = dict(self.real[self.usable[int(self.parents[j])]])
        record["id"] = str(FIRST_GENERATED_ID + j)
        record["title"] = f"{record['title']} (variant {j})"
        record["description"] = f"{record['description']} [variant {j}]"
        return record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class ScaleCatalogue(ShippedCatalogue):
    """A catalogue to load: records, and a vector for every description (what the loader
    asks ``vector_for``). ``ids``/``vectors``: every book that has a vector, row by row."""

    ids: list[str] = field(default_factory=list)
    real_rows: int = 0  # rows of ``vectors`` that belong to real books

    def vector_for(self, description: str) -> Vectors | None:
        found = VARIANT.search(description)
        if found is None:
            return super().vector_for(description)
        row: Vectors = self.vectors[self.real_rows + int(found.group(1))]
        return row


def shipped_scale() -> ScaleCatalogue:
    real = read_shipped()
    described = [r for r in real.records if r["description"].strip()]
    return ScaleCatalogue(
        real.records,
        real.matrix(described),
        {sha256_text(r["description"]): n for n, r in enumerate(described)},
        MODEL_NAME,
        ids=[r["id"] for r in described],
        real_rows=len(described),
    )


def generate(size: int, seed: int = 7, relatives: int | None = None) -> ScaleCatalogue:
    """The real catalogue plus ``size - 1486`` generated books. ``relatives``: generate them
    around only as many real books as give each that many (a million has about 670 a real
    book): a small catalogue as dense as a large one, to compare HNSW builds quickly."""
    base = shipped_scale()
    records = base.records
    usable = [i for i, r in enumerate(records) if r["description"].strip()]
    real_vectors = base.vectors
    rng = np.random.default_rng(seed)
    extra = size - len(records)
    pool = len(usable)
    if relatives is not None:  # the first real books, in the shipped order
        pool = max(2, min(pool, extra // relatives))
    parents = rng.choice(pool, extra)
    made = np.empty((extra, real_vectors.shape[1]), dtype=np.float32)
    for start in range(0, extra, 100_000):  # in slices: a million at once needs 6 GB
        stop = min(start + 100_000, extra)
        n = stop - start
        others = rng.choice(pool, n)
        mix = rng.uniform(0.2, 0.8, n).astype(np.float32)[:, None]
        sigma = np.where(rng.random(n) < 0.5, rng.uniform(0.04, 0.07, n), 0.02)
        near = real_vectors[parents[start:stop]]
        blended = np.where(
            sigma[:, None] > 0.03, near, mix * near + (1 - mix) * real_vectors[others]
        )
        noise = rng.normal(0, 1, (n, real_vectors.shape[1])).astype(np.float32)
        made[start:stop] = blended + noise * sigma[:, None].astype(np.float32)
    made /= np.linalg.norm(made, axis=1, keepdims=True)
    return ScaleCatalogue(
        GeneratedRecords(records, usable, parents),  # type: ignore[arg-type]
        np.concatenate([real_vectors, made]),
        base.row_by_description,
        MODEL_NAME,
        ids=base.ids + [str(FIRST_GENERATED_ID + j) for j in range(extra)],
        real_rows=base.real_rows,
    )


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
           "LOOKALIKE_LOG_LEVEL": "WARNING",
           # ready once the text model has loaded: a server loads it in the background after
           # it is ready, seconds of CPU that the first requests timed would share the machine
           # with (it made the server started second 1.5 ms slower a request, whatever its
           # catalogue: docs/benchmarks.md)
           "LOOKALIKE_READY_WAITS_FOR_MODELS": "true"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.schema.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):  # an index made over a full keyspace waits for Redis's scan of it
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return process, url + "/graphql"
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit(
        f"lookalike serve on index {settings.index_name} did not become ready in 5 minutes "
        "(for the shipped catalogue: run `lookalike serve` against this Redis once first, "
        "it loads the catalogue; the bench's servers do not)"
    )


_TENTHS: dict[tuple[int, int], float] = {}


def exact_tenth(data: ScaleCatalogue, row: int) -> float:
    """The exact distance (numpy, FLOAT32) of a book's 10th nearest other book, kept for the
    run: recall at several EF_RUNTIME values asks for the same books."""
    key = (id(data), row)
    if key not in _TENTHS:
        distances = 1 - data.vectors @ data.vectors[row]
        distances[row] = np.inf  # the book itself
        _TENTHS[key] = float(np.partition(distances, 9)[9])
    return _TENTHS[key]


async def recall(
    settings: Settings, data: ScaleCatalogue, books: int, seed: int
) -> tuple[float, float, float, int]:
    """Mean recall@10 of HNSW against exact search (numpy, FLOAT32), judged by each found
    book's exact distance (not the one Redis reports, so FLOAT16 rounding cannot flatter
    it): a book counts when it is within the exact 10th neighbour's distance plus 0.001,
    ann-benchmarks' definition, and strictly (plus 0.000001, ties only). In a catalogue where
    a book's 10th and 11th neighbours lie 0.0005 apart (the generated million), the strict
    figure measures ties more than search. Also returns the seconds the KNN pipeline took
    (every book's query in one round trip) and the EF_RUNTIME the queries were sent with
    (the setting's, or the one the index's size chose, as a server would)."""
    sample = np.random.default_rng(seed).choice(len(data.ids), books, replace=False)
    row_of = {book_id: row for row, book_id in enumerate(data.ids)}
    client = await open_client(settings.redis_url or "", 60)
    catalogue = Catalogue(client, settings)
    await catalogue.status()  # what a server reads on opening: the index's size
    ef = catalogue.queries.plain_ef()
    ids = [data.ids[i] for i in sample]
    sources = {b.id: b for b in await catalogue.read(ids, ALL_FIELDS) if b}
    started = time.perf_counter()
    found = await catalogue.similar(
        [SimilarRequest(i, 10, fields=BookFields(frozenset())) for i in ids], sources
    )
    knn_seconds = time.perf_counter() - started
    await client.aclose()
    near = strict = 0
    for i, neighbours in zip(sample, found, strict=True):
        tenth = exact_tenth(data, int(i))
        rows = [row_of[m.book.id] for m in neighbours]
        exact = 1 - data.vectors[rows] @ data.vectors[i]
        near += sum(1 for d in exact if d <= tenth + 1e-3)
        strict += sum(1 for d in exact if d <= tenth + 1e-6)
    return near / (10 * books), strict / (10 * books), knn_seconds, ef


async def load(settings: Settings, data: ScaleCatalogue) -> float:
    """Seconds the product's loader takes to write the catalogue (vectors given, no model)."""
    client = await open_client(settings.redis_url or "", 600)
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
    data: ScaleCatalogue
    load_seconds: float | None = None
    indexed_seconds: float | None = None
    bytes_per_book: float | None = None
    timings: list[float] | None = None
    recall: tuple[float, float, float, int] = (0.0, 0.0, 0.0, 0)
    origin: str = "shipped"  # what the load columns say when this run did not load it

    def line(self, base_p50: float) -> str:
        assert self.timings is not None
        p50, p95 = np.percentile(self.timings, 50), np.percentile(self.timings, 95)
        load_s = f"{self.load_seconds:8.1f}" if self.load_seconds else f"{self.origin:>8}"
        indexed = f"{self.indexed_seconds:9.1f}" if self.indexed_seconds else f"{'':>9}"
        size = f"{self.bytes_per_book:11,.0f}" if self.bytes_per_book else f"{'':>11}"
        books = len(self.data.records)
        return (
            f"{books:10,} {load_s} {indexed} {size} {p50:8.2f} {p95:8.2f} "
            f"{p50 / base_p50:12.2f}x {self.recall[0]:10.3f} {self.recall[1]:7.3f} "
            f"{self.recall[3]:10}"
        )


def primaries(url: str) -> list[redis.Redis]:
    """A plain client for each primary: one Redis, or every shard of a cluster."""
    single = redis.Redis.from_url(url, socket_timeout=3600)
    if not int(single.info("cluster").get("cluster_enabled", 0)):
        return [single]
    cluster = redis.RedisCluster.from_url(url)
    nodes = [
        redis.Redis(host=n.host, port=n.port, socket_timeout=3600)
        for n in cluster.get_primaries()  # type: ignore[no-untyped-call]
    ]
    cluster.close()
    single.close()
    return nodes


def used_memory(nodes: list[redis.Redis]) -> int:
    return sum(int(n.info("memory")["used_memory"]) for n in nodes)


def load_into_redis(target: Measured) -> None:
    nodes = primaries(target.settings.redis_url or "")
    before = used_memory(nodes)
    started = time.perf_counter()
    target.load_seconds = asyncio.run(load(target.settings, target.data))
    index = target.settings.index_name
    while True:  # every shard has indexed every book it holds
        infos = [
            {k.decode(): v for k, v in n.execute_command("FT.INFO", index).items()}  # type: ignore[no-untyped-call]
            for n in nodes
        ]
        if all(float(i["percent_indexed"]) >= 1 and not int(i["indexing"]) for i in infos):
            break
        time.sleep(0.5)
    target.indexed_seconds = time.perf_counter() - started
    target.bytes_per_book = (used_memory(nodes) - before) / len(target.data.records)


def interleaved_latencies(targets: list[Measured], requests: int) -> None:
    """One server per catalogue, requests sent round-robin across them: every catalogue is
    timed in the same minutes, so the machine's drift cannot favour one size."""
    servers = [serve(t.settings, str(t.settings.data_dir)) for t in targets]
    rng = np.random.default_rng(11)
    samples = [list(rng.choice(t.data.ids, requests)) for t in targets]
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


def indexed_books(settings: Settings) -> int:
    """The books a catalogue's index holds now (0 without the index)."""
    try:
        info = primaries(settings.redis_url or "")[0].ft(settings.index_name).info()  # type: ignore[no-untyped-call]
    except redis.ResponseError:
        return 0
    return int(info["num_docs"])


def drop(settings: Settings) -> None:
    """The catalogue's index, then its books (no index to update as they go)."""
    nodes = primaries(settings.redis_url or "")
    nodes[0].execute_command("FT.DROPINDEX", settings.index_name)  # type: ignore[no-untyped-call]
    for node in nodes:
        for key in node.scan_iter(match=f"index-definition:{settings.index_name}"):
            node.delete(key)
        pipe = node.pipeline(transaction=False)
        for n, key in enumerate(node.scan_iter(match=f"{settings.key_prefix}:*", count=10_000)):
            pipe.unlink(key)  # one key a command: a cluster refuses keys of several slots
            if n % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        # an AOF still holds every book written: compact it, or the next start replays them
        if int(node.info("persistence").get("aof_enabled", 0)):
            node.bgrewriteaof()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--recall-books", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the catalogues in Redis")
    parser.add_argument(
        "--kept",
        action="store_true",
        help="serve and measure catalogues an earlier --keep run left, without loading them "
        "again (their load figures are that run's); a size not there is loaded",
    )
    parser.add_argument(
        "--ef-runtimes",
        type=int,
        nargs="*",
        default=[],
        help="also measure recall with these EF_RUNTIME values (sent with each query)",
    )
    args = parser.parse_args()
    base = get_settings()
    redis_url = base.redis_url or running_url(base.data_dir)
    if not redis_url:
        sys.exit("no Redis found: start `lookalike serve` first, or set REDIS_URL")
    base = base.model_copy(update={"redis_url": redis_url})

    targets = [Measured(base, shipped_scale())]
    try:
        for size in args.sizes:
            name = f"scale{size}"
            target = Measured(
                base.model_copy(update={"index_name": name, "key_prefix": name}), generate(size)
            )
            targets.append(target)
            if args.kept and indexed_books(target.settings) == len(target.data.records):
                print(f"  kept {size:,} books from an earlier run", file=sys.stderr, flush=True)
                target.origin = "kept"
                continue
            load_into_redis(target)
            print(
                f"  loaded {size:,} books: {target.load_seconds:.0f} s, indexed "
                f"{target.indexed_seconds:.0f} s, {target.bytes_per_book:,.0f} bytes a book",
                file=sys.stderr,
                flush=True,
            )
        interleaved_latencies(targets, args.requests)
        for target in targets:
            target.recall = asyncio.run(recall(target.settings, target.data, args.recall_books, 2))
        report(base, targets, args)
        for target in targets[1:]:
            for ef in args.ef_runtimes:
                other = target.settings.model_copy(update={"hnsw_ef_runtime": ef})
                near, strict, knn, _ = asyncio.run(recall(other, target.data, args.recall_books, 2))
                print(
                    f"{len(target.data.records):10,} books, EF_RUNTIME {ef}: recall@10 "
                    f"{near:.3f}, strict {strict:.3f}; {args.recall_books} KNN queries in one "
                    f"pipeline: {knn * 1000 / args.recall_books:.2f} ms a query",
                    flush=True,
                )
    finally:
        if not args.keep:
            for target in targets[1:]:
                drop(target.settings)


def report(base: Settings, targets: list[Measured], args: argparse.Namespace) -> None:
    shards = len(primaries(base.redis_url or ""))
    where = f"a {shards}-shard cluster" if shards > 1 else "one Redis"
    print(
        f"{where}; {base.vector_type.upper()} vectors, HNSW M {base.hnsw_m}, EF_CONSTRUCTION "
        f"{base.hnsw_ef_construction}, EF_RUNTIME {base.hnsw_ef_runtime or 'by index size'}; "
        "similar(k: 10) over "
        f"HTTP, {args.requests} requests per catalogue, interleaved; recall@10 on "
        f"{args.recall_books} random books"
    )
    print(
        f"{'books':>10} {'load s':>8} {'indexed s':>9} {'bytes/book':>11} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'p50 vs 1,486':>13} {'recall@10':>10} {'strict':>7} {'EF_RUNTIME':>10}"
    )
    base_p50 = float(np.percentile(targets[0].timings or [1.0], 50))
    for target in targets:
        print(target.line(base_p50), flush=True)


if __name__ == "__main__":
    main()
