"""Benchmark lookalike's book queries against the course's way of doing the same.

Run it against a running server (``lookalike serve``):

    .venv/bin/python -m bench.books [--url http://127.0.0.1:8000] [--runs 3] [--rounds 30]
    .venv/bin/python -m bench.books --profile 200     # where a nested request's time goes

1. Nested: 20 books x similar(5) x similar(5) with titles, one GraphQL request over HTTP,
   against a plain redis-py script doing what the course does (per book: read its vector,
   one FT.SEARCH KNN), same Redis, no GraphQL, no HTTP, run on (1) the catalogue as the course
   stores it (JSON documents, the vector read as JSON text: what the issue's target was
   measured against) and (2) lookalike's own layout (the vector read as a blob). The three
   alternate request by request, so all see the same machine; p50s and ratios, per run.
2. Single: ``book(id) { similar(k: 5) { book { title } distance } }`` requests per second,
   against a minimal hand-written Starlette endpoint (bench/baseline_app.py, uvicorn, same
   Redis) answering the same JSON, on the same two layouts. All are driven by the same
   closed-loop client with the same concurrency, in short alternating windows (``--windows``
   a run, in turn forwards and backwards, so that drift during a run favours no side).

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
from bench.course import (
    COURSE,
    Layout,
    ensure_course_layout,
    knn_with_titles,
    lookalike_layout,
    read_title,
    read_vector,
    shared_books,
)
from lookalike.services.books.queries import BookQueries
from lookalike.services.core.settings import get_settings
from lookalike.services.redis.embedded import running_url

NESTED = """query($first: Int!) { books(first: $first) { edges { node { id title
  similar(k: 5) { distance book { title similar(k: 5) { distance book { title } } } } } } } }"""
SINGLE = "query($id: ID!) { book(id: $id) { similar(k: 5) { book { title } distance } } }"


def course_nested(r: redis.Redis, layout: Layout, ef_runtime: int, root_ids: list[str]) -> int:
    """What the course's notebook does, book by book: read the vector, then KNN."""

    def similar(book_id: str, k: int) -> list[tuple[str, str, float]]:
        vector = read_vector(r, layout, book_id)
        docs = r.ft(layout.index).search(knn_with_titles(k, ef_runtime), {"vec": vector}).docs
        own = layout.key(book_id)
        found = [(d.id.split(":", 1)[1], d.title, float(d.distance)) for d in docs]
        return [hit for hit in found if layout.key(hit[0]) != own][:k]

    books = 0
    for book_id in root_ids:
        read_title(r, layout, book_id)
        for neighbour, _, _ in similar(book_id, 5):
            books += 1 + len(similar(neighbour, 5))
    return books


def same_answer(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Same books in the same order, same distances (to FLOAT16's precision: lookalike's
    index keeps half-precision vectors, the course's layout FLOAT32)."""
    assert [m["book"]["title"] for m in ours] == [m["book"]["title"] for m in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a["distance"] - b["distance"]) < 1e-3, (a, b)


def spread(ratios: list[float]) -> str:
    return (
        f"min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x, "
        f"max {max(ratios):.2f}x over {len(ratios)} runs"
    )


def nested_runs(
    args: argparse.Namespace, graphql: str, r: redis.Redis, layouts: list[Layout], shared: list[str]
) -> None:
    ef = BookQueries(get_settings()).plain_ef()  # the shipped catalogue's
    request = http_client.post(graphql, {"query": NESTED, "variables": {"first": 20}})
    client = http_client.BlockingConnection(graphql)

    def ask() -> dict[str, Any]:
        return client.send(request)

    first = ask()
    # the course's loop starts from the same books, where both layouts hold them alike
    alike = set(shared)
    roots = [edge["node"]["id"] for edge in first["data"]["books"]["edges"]]
    roots = [i for i in roots if i in alike]
    roots += [i for i in shared if i not in roots][: 20 - len(roots)]
    trips = first["extensions"]["cost"]["redisRoundTrips"]
    for layout in layouts:
        assert course_nested(r, layout, ef, roots) == 20 * 5 + 20 * 5 * 5
    print(
        f"Nested: 20 books x similar(5) x similar(5), titles (620 books); {trips} Redis "
        f"round trips per GraphQL request; {args.rounds} rounds per run, the three alternating"
    )
    print("  the course's per-book loop (read a vector, one KNN; 260 round trips) on:")
    for n, layout in enumerate(layouts, 1):
        print(f"    ({n}) {layout.name}")
    print(f"  {'run':>4} {'GraphQL p50':>12} {'(1) p50':>10} {'(2) p50':>10} {'vs (1)':>7} "
          f"{'vs (2)':>7}")  # fmt: skip
    ratios: list[list[float]] = [[] for _ in layouts]
    for run in range(1, args.runs + 1):
        ours: list[float] = []
        theirs: list[list[float]] = [[] for _ in layouts]
        for _ in range(3):  # warm all three
            ask()
            for layout in layouts:
                course_nested(r, layout, ef, roots)
        for _ in range(args.rounds):
            started = time.perf_counter()
            ask()
            ours.append((time.perf_counter() - started) * 1000)
            for layout, samples in zip(layouts, theirs, strict=True):
                started = time.perf_counter()
                course_nested(r, layout, ef, roots)
                samples.append((time.perf_counter() - started) * 1000)
        medians = [statistics.median(samples) for samples in theirs]
        run_ratios = [statistics.median(ours) / m for m in medians]
        for collected, ratio in zip(ratios, run_ratios, strict=True):
            collected.append(ratio)
        print(
            f"  {run:>4} {statistics.median(ours):9.2f} ms "
            + " ".join(f"{m:7.2f} ms" for m in medians)
            + " "
            + " ".join(f"{x:6.2f}x" for x in run_ratios)
        )
    print(f"  GraphQL / (1): {spread(ratios[0])} (target <= 0.5x)")
    print(f"  GraphQL / (2): {spread(ratios[1])}")
    client.close()


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


def single_runs(
    args: argparse.Namespace, graphql: str, redis_url: str, ids: list[str], course_alike: bool
) -> None:
    """``course_alike``: the course's layout holds the catalogue the server serves, so its
    answers must be the server's (else only lookalike's layout is checked)."""
    settings = get_settings()
    env = {**os.environ, "REDIS_URL": redis_url}
    env |= {
        "LOOKALIKE_INDEX_NAME": settings.index_name,
        "LOOKALIKE_KEY_PREFIX": settings.key_prefix,
        "LOOKALIKE_HNSW_EF_RUNTIME": str(BookQueries(settings).plain_ef()),
    }
    sides: dict[str, tuple[str, list[bytes]]] = {
        "graphql": (
            graphql,
            [http_client.post(graphql, {"query": SINGLE, "variables": {"id": i}}) for i in ids],
        )
    }
    baselines = []
    try:
        for layout in ("course", "lookalike"):
            port = free_port()
            baselines.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "bench.baseline_app:app",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    env={**env, "BASELINE_LAYOUT": layout},
                )
            )
            base = f"http://127.0.0.1:{port}/similar/"
            probe = ids[0]
            for _ in range(100):
                try:
                    httpx.get(base + probe).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            ours = httpx.post(graphql, json={"query": SINGLE, "variables": {"id": probe}}).json()
            theirs = httpx.get(base + probe).json()
            if layout == "lookalike" or course_alike:
                same_answer(ours["data"]["book"]["similar"], theirs["data"]["book"]["similar"])
            sides[layout] = (base, [http_client.get(base + i) for i in ids])
        window = args.seconds / args.windows
        print(
            f"Single: book(id) {{ similar(k: 5) }}, {args.concurrency} concurrent clients, "
            f"{args.windows} alternating windows of {window:g} s per side per run (in turn "
            "forwards and backwards), against a hand-written Starlette endpoint on (1) the "
            "course's JSON layout and (2) lookalike's layout"
        )
        print(f"  {'run':>4} {'GraphQL req/s':>14} {'(1) req/s':>10} {'(2) req/s':>10} "
              f"{'vs (1)':>7} {'vs (2)':>7}")  # fmt: skip
        ratios: dict[str, list[float]] = {"course": [], "lookalike": []}
        for run in range(1, args.runs + 1):
            counts = dict.fromkeys(sides, 0)
            order = list(sides.items())
            for _ in range(args.windows):
                # G 1 2, then 2 1 G: a machine speeding up or slowing down during the run
                # favours no side (one order alone would always measure GraphQL first)
                for side, (url, requests) in order:
                    counts[side] += asyncio.run(
                        closed_loop(url, requests, window, args.concurrency)
                    )
                order.reverse()
            for side in ratios:
                ratios[side].append(counts["graphql"] / counts[side])
            rates = " ".join(
                f"{counts[side] / args.seconds:{w}.0f}"
                for side, w in (("graphql", 14), ("course", 10), ("lookalike", 10))
            )
            print(
                f"  {run:>4} {rates} {ratios['course'][-1]:6.2f}x {ratios['lookalike'][-1]:6.2f}x"
            )
        print(f"  throughput GraphQL / (1): {spread(ratios['course'])} (target >= 0.8x)")
        print(f"  throughput GraphQL / (2): {spread(ratios['lookalike'])}")
    finally:
        for process in baselines:
            process.terminate()
            process.wait()


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
    for (filename, _, function), (_, _, own, _, _) in rows.items():
        by_package[_package(filename, function)] += own
        total += own
    print(f"Profile: {requests} nested requests in process, {1000 * total / requests:.1f} ms "
          "of CPU each (cProfile inflates it), by package:")  # fmt: skip
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {package:32} {100 * seconds / total:5.1f}%")
    print("Heaviest functions (own time):")
    stats.sort_stats("tottime").print_stats(15)


def _package(filename: str, function: str) -> str:
    if filename == "~":  # C functions
        return "waiting (epoll: Redis replies)" if "poll" in function else "C built-ins"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    for layer in ("schema", "resolvers", "services"):
        if f"/lookalike/{layer}/" in filename or f"/work/main/{layer}/" in filename:
            return f"lookalike.{layer}"
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
    parser.add_argument(
        "--windows", type=int, default=6, help="alternating windows per side per run"
    )
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
    ensure_course_layout(r)
    layouts = [COURSE, lookalike_layout(settings.index_name, settings.key_prefix)]
    shared, differing = shared_books(r, layouts[1])
    if len(shared) < 20:
        sys.exit(f"only {len(shared)} books are alike in the course's layout and the server's")
    if differing:
        print(
            f"Note: the catalogue holds {differing} books that are not the shipped ones (or "
            "whose descriptions changed); the course's layout holds the shipped catalogue. "
            f"Both sides are asked about the {len(shared)} books they hold alike, and only "
            "(2) is checked for the server's answers."
        )
    nested_runs(args, graphql, r, layouts, shared)
    rng = np.random.default_rng(7)
    sample = [shared[i] for i in rng.choice(len(shared), min(200, len(shared)), replace=False)]
    single_runs(args, graphql, redis_url, sample, course_alike=not differing)


if __name__ == "__main__":
    main()
