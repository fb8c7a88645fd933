"""What a client's budget costs a request: one round trip, and its time beside a cheap query.

    .venv/bin/python -m bench.budget [--charges 2000] [--cost 1854]

An embedded Redis. Three ways to charge ``--cost`` (the nested benchmark query's cost) and
learn what is left, each from a fresh client per charge window:

- lookalike's (services/limits/budget.py): limits' sliding window scripts, charge and read
  in one pipeline on lookalike's client;
- limits' public API: ``SlidingWindowCounterRateLimiter.hit`` then ``get_window_stats``;
- limits' moving window: ``MovingWindowRateLimiter.hit`` then ``get_window_stats``, and the
  memory its key takes (one list entry per unit of cost).

Then MONITOR counts the commands Redis receives for one charge of lookalike's, and a GET of
a book's title (``HGET``, a single book query's one round trip) gives the scale. The sides
interleave, three runs; microseconds per charge, medians of five batches, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from lookalike.services.core.api_keys import Caller
from lookalike.services.limits.budget import Budgets
from lookalike.services.redis.connection import connect
from lookalike.services.redis.embedded import EmbeddedRedis

PER_MINUTE = 10_000_000  # never refused: every charge does the same work


async def main(charges: int, cost: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(Path(data))
        url = server.start()
        try:
            await measure(url, charges, cost)
        finally:
            server.stop()


async def measure(url: str, charges: int, cost: int) -> None:
    client = connect(url, 2.0)
    budgets = Budgets(client, PER_MINUTE, None)
    storage = RedisStorage("async+redis+" + url, implementation="redispy")
    sliding = SlidingWindowCounterRateLimiter(storage)
    moving = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(PER_MINUTE, namespace="bench")
    await client.hset("bench:book", "title", "x" * 40)

    async def ours(n: int) -> float:
        caller = Caller("missing", False, f"10.{uuid.uuid4().int % 250}.0.1")
        started = time.perf_counter()
        for _ in range(n):
            budget = budgets.of(caller)
            assert budget is not None
            await budget.spend(cost)
        return (time.perf_counter() - started) / n * 1e6

    async def public(
        limiter: SlidingWindowCounterRateLimiter | MovingWindowRateLimiter, n: int
    ) -> float:
        who = uuid.uuid4().hex
        started = time.perf_counter()
        for _ in range(n):
            await limiter.hit(item, who, cost=cost)
            await limiter.get_window_stats(item, who)
        return (time.perf_counter() - started) / n * 1e6

    async def book(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await client.hget("bench:book", "title")
        return (time.perf_counter() - started) / n * 1e6

    batch = max(charges // 5, 1)
    moving_batch = max(batch // 20, 1)  # each moving hit pushes ``cost`` list entries
    for warm in (ours(50), public(sliding, 50), public(moving, 5), book(50)):
        await warm
    for run in range(3):
        times: dict[str, list[float]] = {"ours": [], "sliding": [], "moving": [], "book": []}
        for _ in range(5):  # the sides interleaved, batch by batch
            times["ours"].append(await ours(batch))
            times["sliding"].append(await public(sliding, batch))
            times["moving"].append(await public(moving, moving_batch))
            times["book"].append(await book(batch))
        o, s, m, b = (statistics.median(times[side]) for side in times)
        print(
            f"run {run + 1}: one pipeline {o:6.1f} us, limits' hit + stats {s:6.1f} us "
            f"({s / o:.2f}x), moving window {m:8.1f} us ({m / o:.1f}x); "
            f"a book's HGET {b:5.1f} us (the budget is {o / b:.2f}x it)"
        )

    plain = redis.Redis(unix_socket_path=url.removeprefix("unix://"))
    who = uuid.uuid4().hex
    await moving.hit(item, who, cost=cost)
    key = next(iter(plain.scan_iter(match=f"*{who}*")))
    print(f"moving window key after one charge of {cost}: {plain.memory_usage(key):,} bytes")
    caller = Caller("missing", False, "10.250.0.1")
    budget = budgets.of(caller)
    assert budget is not None
    await budget.spend(cost)
    sliding_keys = list(plain.scan_iter(match="*10.250.0.1*"))
    used = sum(plain.memory_usage(k) or 0 for k in sliding_keys)
    print(f"sliding window keys after the same charge: {len(sliding_keys)}, {used:,} bytes")
    commands = await monitored(plain, url, budgets, cost)
    print(f"commands Redis received for one charge (MONITOR): {commands}")
    plain.close()
    await client.aclose()


async def monitored(plain: redis.Redis, url: str, budgets: Budgets, cost: int) -> list[str]:
    """The commands one charge sends, as Redis's MONITOR sees them."""
    caller = Caller("missing", False, "10.251.0.1")
    watcher = redis.Redis(unix_socket_path=url.removeprefix("unix://"))
    seen: list[str] = []
    with watcher.monitor() as monitor:  # type: ignore[no-untyped-call]
        plain.ping()  # a marker: the commands after it are the charge's
        budget = budgets.of(caller)
        assert budget is not None
        await budget.spend(cost)
        plain.echo("end")
        for event in monitor.listen():
            command = str(event["command"])
            if command.startswith("ECHO"):
                break
            if not command.startswith("PING"):
                seen.append(command.split(" ")[0])
    watcher.close()
    return seen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=2000)
    parser.add_argument("--cost", type=int, default=1854)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.charges, arguments.cost))
