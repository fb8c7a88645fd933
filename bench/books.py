"""Benchmark lookalike's book queries against the course's way of doing the same.

Run it against a running server (``lookalike serve``):

    .venv/bin/python -m bench.books [--url http://127.0.0.1:8000] [--runs 3] [--rounds 30]
    .venv/bin/python -m bench.books --profile 200     # where a nested request's time goes

1. Nested: 20 books x similar(5) x similar(5) with titles, one GraphQL request over HTTP,
   against a plain redis-py script doing what the course does (per book: read its vector,
   one FT.SEARCH KNN), same Redis, no GraphQL, no HTTP. The two alternate request by request,
   so both see the same machine; p50 of each and their ratio, per run.
2. Single: ``book(id) { similar(k: 5) { book { title } distance } }`` requests per second,
   against a minimal hand-written Starlette endpoint (bench/baseline_app.py, uvicorn, same
   Redis) answering the same JSON. Both are driven by the same closed-loop client with the
   same concurrency, in alternating windows.

This machine's speed drifts by a third within minutes, so each comparison runs ``--runs``
times and the summary gives the ratio's minimum, median and maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import httpx
import numpy as np
import redis

from bench import http_client
from bench.course import knn_with_titles, read_title, read_vector
from lookalike.services.embedded_redis import running_url
from lookalike.services.settings import get_settings

NESTED = """query($first: Int!) { books(first: $first) { edges { node { id title
  similar(k: 5) { distance book { title similar(k: 5) { distance book { title } } } } } } } }"""
SINGLE = "query($id: ID!) { book(id: $id) { similar(k: 5) { book { title } distance } } }"


def course_nested(r: redis.Redis, index: str, prefix: str, root_ids: list[str]) -> int:
    """What the course's notebook does, book by book: read the vector, then KNN."""

    def similar(book_id: str, k: int) -> list[tuple[str, str, float]]:
        vector = read_vector(r, prefix, book_id)
        docs = r.ft(index).search(knn_with_titles(k), {"vec": vector}).docs
        own = f"{prefix}:{book_id}"
        found = [(d.id.removeprefix(prefix + ":"), d.title, float(d.distance)) for d in docs]
        return [hit for hit in found if prefix + ":" + hit[0] != own][:k]

    books = 0
    for book_id in root_ids:
        read_title(r, prefix, book_id)
        for neighbour, _, _ in similar(book_id, 5):
            books += 1 + len(similar(neighbour, 5))
    return books


def same_answer(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Same books in the same order, same distances (to the float32 precision Redis keeps)."""
    assert [m["book"]["title"] for m in ours] == [m["book"]["title"] for m in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a["distance"] - b["distance"]) < 1e-6, (a, b)


def spread(ratios: list[float]) -> str:
    return (
        f"min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x, "
        f"max {max(ratios):.2f}x over {len(ratios)} runs"
    )


def nested_runs(args: argparse.Namespace, graphql: str, r: redis.Redis) -> list[float]:
    settings = get_settings()
    index, prefix = settings.index_name, settings.key_prefix
    request = http_client.post(graphql, {"query": NESTED, "variables": {"first": 20}})
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(http_client.Connection.open(graphql))

    def ask() -> dict[str, Any]:
        status, body = loop.run_until_complete(connection.send(request))
        answer: dict[str, Any] = httpx.Response(status, content=body).json()
        assert status == 200, answer
        assert "errors" not in answer, answer
        return answer

    first = ask()
    roots = [edge["node"]["id"] for edge in first["data"]["books"]["edges"]]
    trips = first["extensions"]["cost"]["redisRoundTrips"]
    assert course_nested(r, index, prefix, roots) == 20 * 5 + 20 * 5 * 5
    print(
        f"Nested: 20 books x similar(5) x similar(5), titles (620 books); {trips} Redis "
        f"round trips per GraphQL request; {args.rounds} rounds per run, sides alternating"
    )
    print(f"  {'run':>4} {'GraphQL p50':>12} {'script p50':>11} {'ratio':>7}")
    ratios = []
    for run in range(1, args.runs + 1):
        ours, theirs = [], []
        for _ in range(3):  # warm both
            ask()
            course_nested(r, index, prefix, roots)
        for _ in range(args.rounds):
            started = time.perf_counter()
            ask()
            ours.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            course_nested(r, index, prefix, roots)
            theirs.append((time.perf_counter() - started) * 1000)
        ratio = statistics.median(ours) / statistics.median(theirs)
        ratios.append(ratio)
        print(f"  {run:>4} {statistics.median(ours):9.2f} ms {statistics.median(theirs):8.2f} ms "
              f"{ratio:6.2f}x")  # fmt: skip
    print(f"  ratio GraphQL / script: {spread(ratios)} (target <= 0.5x)")
    loop.run_until_complete(connection.close())
    loop.close()
    return ratios


async def closed_loop(url: str, requests: list[bytes], seconds: float, concurrency: int) -> int:
    """Requests answered in ``seconds`` by ``concurrency`` clients each awaiting its answer."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker(start: int) -> None:
        nonlocal done
        connection = await http_client.Connection.open(url)
        i = start
        while time.perf_counter() < deadline:
            status, _ = await connection.send(requests[i % len(requests)])
            assert status == 200, status
            done += 1
            i += concurrency
        await connection.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done


def single_runs(args: argparse.Namespace, graphql: str, redis_url: str, ids: list[str]) -> None:
    settings = get_settings()
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    env |= {
        "LOOKALIKE_INDEX_NAME": settings.index_name,
        "LOOKALIKE_KEY_PREFIX": settings.key_prefix,
    }
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
        ours = httpx.post(graphql, json={"query": SINGLE, "variables": {"id": "9"}}).json()
        theirs = httpx.get(base + "9").json()
        same_answer(ours["data"]["book"]["similar"], theirs["data"]["book"]["similar"])
        graphql_requests = [
            http_client.post(graphql, {"query": SINGLE, "variables": {"id": i}}) for i in ids
        ]
        baseline_requests = [http_client.get(base + i) for i in ids]
        window = args.seconds / 3
        print(f"Single: book(id) {{ similar(k: 5) }}, {args.concurrency} concurrent clients, "
              f"3 alternating windows of {window:g} s per side per run")  # fmt: skip
        print(f"  {'run':>4} {'GraphQL req/s':>14} {'hand-written':>13} {'ratio':>7}")
        ratios = []
        for run in range(1, args.runs + 1):
            counts = {"graphql": 0, "baseline": 0}
            for _ in range(3):
                for side, url, requests in (
                    ("graphql", graphql, graphql_requests),
                    ("baseline", base, baseline_requests),
                ):
                    counts[side] += asyncio.run(
                        closed_loop(url, requests, window, args.concurrency)
                    )
            ratio = counts["graphql"] / counts["baseline"]
            ratios.append(ratio)
            print(f"  {run:>4} {counts['graphql'] / args.seconds:14.0f} "
                  f"{counts['baseline'] / args.seconds:13.0f} {ratio:6.2f}x")  # fmt: skip
        print(f"  throughput GraphQL / hand-written: {spread(ratios)} (target >= 0.8x)")
    finally:
        baseline.terminate()
        baseline.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def profile(requests: int) -> None:
    """Where a nested request's time goes, in this process: the app served in-process (its
    lifespan against the running server's Redis), cProfile around ``requests`` requests, the
    time summed by package."""
    from lookalike.schema.app import create_app

    settings = get_settings().model_copy(
        update={"redis_url": get_settings().redis_url or running_url(get_settings().data_dir)}
    )
    app = create_app(settings)
    payload = {"query": NESTED, "variables": {"first": 20}}

    async def drive() -> pstats.Stats:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        ):
            for _ in range(5):
                (await client.post("/graphql", json=payload)).raise_for_status()
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                await client.post("/graphql", json=payload)
            profiler.disable()
        return pstats.Stats(profiler)

    stats = asyncio.run(drive())
    by_package: dict[str, float] = defaultdict(float)
    total = 0.0
    rows = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, own, _, _) in rows.items():
        by_package[_package(filename)] += own
        total += own
    print(f"Profile: {requests} nested requests in process, {1000 * total / requests:.1f} ms "
          "of CPU each (cProfile inflates it), by package:")  # fmt: skip
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {package:28} {100 * seconds / total:5.1f}%")
    print("Heaviest functions (own time):")
    stats.sort_stats("tottime").print_stats(15)


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lookalike/" in filename or "/work/" in filename:
        return "lookalike"
    if filename.startswith("<") or "/lib/python3" in filename:
        return "python (stdlib, asyncio)"
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running lookalike")
    parser.add_argument("--redis-url", help="its Redis (default: REDIS_URL or the embedded one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30, help="nested requests per run")
    parser.add_argument("--seconds", type=float, default=6.0, help="per side per run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", type=int, metavar="N", help="profile N nested requests")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return

    settings = get_settings()
    redis_url = args.redis_url or settings.redis_url or running_url(settings.data_dir)
    if not redis_url:
        sys.exit("no Redis found: start `lookalike serve` first, or pass --redis-url")
    graphql = args.url.rstrip("/") + "/graphql"
    r = redis.Redis.from_url(redis_url, protocol=2)
    nested_runs(args, graphql, r)
    prefix = settings.key_prefix
    ids = [str(i) for i in sorted(int(k.split(b":")[-1]) for k in r.scan_iter(f"{prefix}:*"))]
    rng = np.random.default_rng(7)
    sample = [ids[i] for i in rng.choice(len(ids), 200, replace=False) if ids[i] != "1070"]
    single_runs(args, graphql, redis_url, sample)


if __name__ == "__main__":
    main()
