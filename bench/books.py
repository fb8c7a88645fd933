"""Benchmark lookalike's book queries against the course's way of doing the same.

Run it against a running server (``lookalike serve``):

    .venv/bin/python -m bench.books [--url http://127.0.0.1:8000] [--rounds 40] [--seconds 10]

1. Nested: 20 books x similar(5) x similar(5) with titles, one GraphQL request over HTTP,
   against a plain redis-py script doing what the course does (per book: read its vector,
   one FT.SEARCH KNN), same Redis, no GraphQL, no HTTP. p50/p95 of each and the ratio.
2. Single: ``book(id) { similar(k: 5) { book { title } distance } }`` requests per second,
   against a minimal hand-written Starlette endpoint (bench/baseline_app.py, uvicorn, same
   Redis) answering the same JSON. Both served by one uvicorn worker, driven by the same
   closed-loop client with the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import redis

from bench.course import knn_with_titles, vector_of
from lookalike.services.embedded_redis import running_url
from lookalike.services.settings import get_settings

NESTED = """query($first: Int!) { books(first: $first) { edges { node { id title
  similar(k: 5) { distance book { title similar(k: 5) { distance book { title } } } } } } } }"""
SINGLE = "query($id: ID!) { book(id: $id) { similar(k: 5) { book { title } distance } } }"


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def course_nested(r: redis.Redis, index: str, prefix: str, root_ids: list[str]) -> int:
    """What the course's notebook does, book by book: read the vector, then KNN."""

    def similar(book_id: str, k: int) -> list[tuple[str, str, float]]:
        vector = vector_of(r.hget(f"{prefix}:{book_id}", "embedding"))
        docs = r.ft(index).search(knn_with_titles(k), {"vec": vector}).docs
        own = f"{prefix}:{book_id}"
        found = [(d.id.removeprefix(prefix + ":"), d.title, float(d.distance)) for d in docs]
        return [hit for hit in found if prefix + ":" + hit[0] != own][:k]

    books = 0
    for book_id in root_ids:
        r.hget(f"{prefix}:{book_id}", "title")
        for neighbour, _, _ in similar(book_id, 5):
            books += 1 + len(similar(neighbour, 5))
    return books


def same_answer(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Same books in the same order, same distances (Redis prints them to 12 digits in one
    reply format and as doubles in the other)."""
    assert [m["book"]["title"] for m in ours] == [m["book"]["title"] for m in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a["distance"] - b["distance"]) < 1e-9, (a, b)


def time_it(fn: Callable[[], object], rounds: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def closed_loop(
    call: Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]],
    ids: list[str],
    seconds: float,
    concurrency: int,
) -> tuple[float, list[float]]:
    """Requests per second and latencies, ``concurrency`` clients each waiting for its answer."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        i = n
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await call(client, ids[i % len(ids)])
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            i += concurrency

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await call(client, ids[0])
        began = time.perf_counter()
        await asyncio.gather(*(worker(n, client) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running lookalike")
    parser.add_argument("--redis-url", help="its Redis (default: REDIS_URL or the embedded one)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    settings = get_settings()
    redis_url = args.redis_url or settings.redis_url or running_url(settings.data_dir)
    if not redis_url:
        sys.exit("no Redis found: start `lookalike serve` first, or pass --redis-url")
    graphql = args.url.rstrip("/") + "/graphql"
    index, prefix = settings.index_name, settings.key_prefix
    r = redis.Redis.from_url(redis_url, protocol=2)

    with httpx.Client(timeout=30) as http:

        def nested_graphql() -> Any:
            response = http.post(graphql, json={"query": NESTED, "variables": {"first": 20}})
            response.raise_for_status()
            body = response.json()
            assert "errors" not in body, body
            return body

        body = nested_graphql()
        roots = [edge["node"]["id"] for edge in body["data"]["books"]["edges"]]
        trips = body.get("extensions", {}).get("cost", {}).get("redisRoundTrips")
        assert course_nested(r, index, prefix, roots) == 20 * 5 + 20 * 5 * 5
        gq = time_it(nested_graphql, args.rounds, 3)
        plain = time_it(lambda: course_nested(r, index, prefix, roots), args.rounds, 3)

    print("Nested: 20 books x similar(5) x similar(5), titles (620 books)")
    print(f"  rounds {args.rounds}; GraphQL request: {trips} Redis round trips")
    print(f"  {'':28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, samples in (("lookalike GraphQL over HTTP", gq), ("course script (redis-py)", plain)):
        print(f"  {name:28} {percentile(samples, 50):8.2f} {percentile(samples, 95):8.2f}")
    print(
        f"  ratio GraphQL / script: p50 {percentile(gq, 50) / percentile(plain, 50):.2f}x, "
        f"p95 {percentile(gq, 95) / percentile(plain, 95):.2f}x (target <= 1.0x)"
    )

    ids = [str(i) for i in sorted(int(k.split(b":")[-1]) for k in r.scan_iter(f"{prefix}:*"))]
    rng = np.random.default_rng(7)
    sample = [ids[i] for i in rng.choice(len(ids), 200, replace=False) if ids[i] != "1070"]
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    env |= {"LOOKALIKE_INDEX_NAME": index, "LOOKALIKE_KEY_PREFIX": prefix}
    baseline = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/similar/"
        for _ in range(100):
            try:
                httpx.get(base + "9").raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        async def via_graphql(client: httpx.AsyncClient, book_id: str) -> httpx.Response:
            payload = {"query": SINGLE, "variables": {"id": book_id}}
            return await client.post(graphql, json=payload)

        async def via_baseline(client: httpx.AsyncClient, book_id: str) -> httpx.Response:
            return await client.get(base + book_id)

        ours = httpx.post(graphql, json={"query": SINGLE, "variables": {"id": "9"}}).json()
        theirs = httpx.get(base + "9").json()
        same_answer(ours["data"]["book"]["similar"], theirs["data"]["book"]["similar"])
        gq_rps, gq_lat = asyncio.run(
            closed_loop(via_graphql, sample, args.seconds, args.concurrency)
        )
        base_rps, base_lat = asyncio.run(
            closed_loop(via_baseline, sample, args.seconds, args.concurrency)
        )
    finally:
        baseline.terminate()
        baseline.wait()

    print(f"Single: book(id) {{ similar(k: 5) }}, {args.concurrency} concurrent clients, "
          f"{args.seconds:g} s each")  # fmt: skip
    print(f"  {'':28} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, rps, lat in (
        ("lookalike GraphQL", gq_rps, gq_lat),
        ("hand-written Starlette", base_rps, base_lat),
    ):
        print(f"  {name:28} {rps:8.0f} {statistics.median(lat):8.2f} {percentile(lat, 95):8.2f}")
    print(f"  ratio GraphQL / hand-written: {gq_rps / base_rps:.2f}x throughput (target >= 0.5x)")


if __name__ == "__main__":
    main()
