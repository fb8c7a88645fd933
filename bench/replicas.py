"""What a reader on a replica sees right after a write: the replication lag, measured.

    .venv/bin/python -m bench.replicas [--writes 300]

Starts a primary and a replica of it (the embedded Redis's server and modules, on free TCP
ports), loads the shipped catalogue into the primary with the product's loader and waits for
the replica to have indexed it. Then, one at a time, it changes a book's rating on the
primary (HSET) and times until the replica returns the new value (HGET) and until the
replica's index finds the book by it (FT.SEARCH on the rating), first with nothing else going
on, then while 20,000 more books load into the primary.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis

from bench.redis_nodes import RedisNode, wait_in_sync
from bench.scale import generate
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import load_books
from lookalike.services.books.loading.shipped import ShippedCatalogue, read_shipped
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.redis.connection import open_client


async def load(url: str, data: ShippedCatalogue, name: str = "books") -> None:
    settings = Settings(redis_url=url, index_name=name, key_prefix=name)
    client = await open_client(url, 600)
    await load_books(
        Catalogue(client, settings), data.records, shipped=data, embedder=text_embedder
    )
    await client.aclose()


Lags = list[tuple[float, float]]


def lag(primary: redis.Redis, replica: redis.Redis, writes: int, seed: int) -> Lags:
    """(ms until the replica has the value, ms until its index finds it) per write."""
    rng = np.random.default_rng(seed)
    ids = [r["id"] for r in read_shipped().records]
    found: Lags = []
    for n in range(writes):
        book = f"books:{ids[int(rng.integers(len(ids)))]}"
        rating = f"{7 + n / 100_000:.6f}"  # outside the catalogue's 0-5: only this book has it
        started = time.perf_counter()
        primary.hset(book, "rating", rating)
        stored: float | None = None
        searched: float | None = None
        while stored is None or searched is None:
            now = (time.perf_counter() - started) * 1000
            if stored is None and replica.hget(book, "rating") == rating.encode():
                stored = now
            if stored is not None:
                reply = replica.execute_command(  # type: ignore[no-untyped-call]
                    "FT.SEARCH", "books", f"@rating:[{rating} {rating}]", "NOCONTENT"
                )
                if int(reply[b"total_results"]) == 1:
                    searched = now
        found.append((stored, searched))
        primary.hset(book, "rating", "4.0")
    return found


def line(label: str, samples: Lags) -> str:
    stored = np.array([s for s, _ in samples])
    searched = np.array([s for _, s in samples])
    return (
        f"  {label:<32} {np.percentile(stored, 50):7.2f} {np.percentile(stored, 95):7.2f} "
        f"{stored.max():7.2f}   {np.percentile(searched, 50):7.2f} "
        f"{np.percentile(searched, 95):7.2f} {searched.max():7.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lookalike-replicas-"))
    primary = RedisNode(base / "primary").start()
    replica = RedisNode(base / "replica", replica_of=primary.port).start()
    try:
        asyncio.run(load(primary.url, read_shipped()))
        wait_in_sync(primary, replica)
        while int(replica.client().ft("books").info()["indexing"]):  # type: ignore[no-untyped-call]
            time.sleep(0.1)
        idle = lag(primary.client(), replica.client(), args.writes, 1)
        bulk = generate(21_486)
        loading = threading.Thread(
            target=lambda: asyncio.run(load(primary.url, bulk, "bulk")), daemon=True
        )
        loading.start()
        time.sleep(1)  # the load is under way
        busy = lag(primary.client(), replica.client(), args.writes, 2)
        still_loading = loading.is_alive()
        loading.join()
    finally:
        replica.stop()
        primary.stop()
    print(
        f"Replication lag on loopback, {args.writes} writes each: a book's rating changed on "
        "the primary, read back from the replica"
    )
    print(f"  {'':<32} {'HGET sees it (ms)':^23}   {'FT.SEARCH finds it (ms)':^23}")
    print(f"  {'':<32} {'p50':>7} {'p95':>7} {'max':>7}   {'p50':>7} {'p95':>7} {'max':>7}")
    print(line("idle", idle))
    print(line("while 20,000 books load" + ("" if still_loading else " (ended)"), busy))


if __name__ == "__main__":
    main()
