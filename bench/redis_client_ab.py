"""The Redis client's own CPU time a round trip: an earlier ``services/redis/connection.py``
(A, loaded from a file beside this one's) against today's (B), in one process, same Redis.

    git show ec9a0b3:services/redis/connection.py > /tmp/old_connection.py
    .venv/bin/python -m bench.redis_client_ab /tmp/old_connection.py --redis-url URL

A pipeline of N KNN FT.SEARCH commands (the shape a nested level sends; one command alone is
``execute_command``), sent by ``in_one_round_trip`` through each client in turn (A B B A),
ten at a time; the figure is this process's CPU time per round trip (Redis runs in its own
process, so its time is not in it), median of 30 samples, three runs, and the ratio B / A.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from typing import Any

from lookalike.services.books.records import VECTOR_FIELD
from lookalike.services.redis import connection as today


def load(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("earlier_connection", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def cpu_per_round_trip(client: Any, commands: list[tuple[Any, ...]]) -> float:
    started = time.process_time()
    for _ in range(10):
        await today.in_one_round_trip(client, commands)
    return (time.process_time() - started) / 10 * 1e6


async def main(args: argparse.Namespace) -> None:
    earlier = load(args.earlier)
    a, b = earlier.connect(args.redis_url, 2.0), today.connect(args.redis_url, 2.0)
    keys = [k async for k in b.scan_iter(match="book:*", count=1000)][:100]
    vectors = [await b.hget(k, VECTOR_FIELD) for k in keys]
    knn = f"*=>[KNN 5 @{VECTOR_FIELD} $v]"
    commands: list[tuple[Any, ...]] = [
        ("FT.SEARCH", args.index, knn, "PARAMS", 2, "v", v, "RETURN", 1, "title", "DIALECT", 2)
        for v in vectors
    ]
    for client in (a, b):  # connections opened, code warm
        for _ in range(5):
            await today.in_one_round_trip(client, commands)
    for size in args.sizes:
        ratios = []
        for run in range(3):
            samples: dict[str, list[float]] = {"A": [], "B": []}
            for _ in range(30):
                for side, client in (("A", a), ("B", b), ("B", b), ("A", a)):
                    samples[side].append(await cpu_per_round_trip(client, commands[:size]))
            ca, cb = statistics.median(samples["A"]), statistics.median(samples["B"])
            ratios.append(cb / ca)
            print(f"{size:3} commands run {run + 1}: A {ca:7.1f} us  B {cb:7.1f} us  "
                  f"B/A {cb / ca:.3f}", flush=True)  # fmt: skip
        print(f"{size:3} commands: B/A min {min(ratios):.3f} median "
              f"{statistics.median(ratios):.3f} max {max(ratios):.3f}")  # fmt: skip
    await a.aclose()
    await b.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("earlier", help="the earlier services/redis/connection.py")
    parser.add_argument("--redis-url", required=True, help="a Redis holding the catalogue")
    parser.add_argument("--index", default="books")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 20, 3, 1])
    asyncio.run(main(parser.parse_args()))
