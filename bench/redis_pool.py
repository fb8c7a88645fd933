"""What a turn and a deadline per round trip cost when no round trip has to wait: lookalike's
client (``services/redis/connection.py``: redis-py's plain pool, a turn and one deadline per
command, round_trips.py) against redis-py's client on the same plain pool (no deadline), and
on redis-py's blocking pool (the waiting lookalike's turns replace).

    .venv/bin/python -m bench.redis_pool [--commands 20000] [--tasks 32]

An embedded Redis; the same connections but for the client and pool class. First the pool
alone: taking a connection and giving it back, no command; then GETs of one small key, one
after another (one task) and from ``--tasks`` tasks at once (fewer than the pool's
connections: no task ever waits). The two sides interleave, three runs each; microseconds per
command and the ratio lookalike's / plain.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import redis.asyncio as aredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool

from lookalike.services.redis.connection import connect
from lookalike.services.redis.embedded import EmbeddedRedis


def twin(client: aredis.Redis, pool_class: type[ConnectionPool]) -> aredis.Redis:
    """The same connections (class, options, deadline, retry) in another pool class."""
    pool = client.connection_pool
    return aredis.Redis(
        connection_pool=pool_class(
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            **pool.connection_kwargs,
        )
    )


async def per_command(client: aredis.Redis, commands: int, tasks: int) -> float:
    """Microseconds per GET with ``tasks`` tasks sharing ``commands`` GETs."""

    async def run(n: int) -> None:
        for _ in range(n):
            await client.get("bench:pool")

    started = time.perf_counter()
    await asyncio.gather(*(run(commands // tasks) for _ in range(tasks)))
    return (time.perf_counter() - started) / commands * 1e6


async def take_and_give(client: aredis.Redis, times: int) -> float:
    """Microseconds to take a connection from the pool and give it back (no command)."""
    pool = client.connection_pool
    started = time.perf_counter()
    for _ in range(times):
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        await pool.release(connection)
    return (time.perf_counter() - started) / times * 1e6


async def main(commands: int, tasks: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(Path(data))
        url = server.start()
        try:
            blocking = connect(url, 2.0)
            plain = twin(blocking, ConnectionPool)
            redis_py = twin(blocking, BlockingConnectionPool)
            await blocking.set("bench:pool", b"x" * 100)
            for client in (blocking, plain, redis_py):  # connections opened, code warm
                await per_command(client, 2000, tasks)
            for run in range(3):
                b = statistics.median([await take_and_give(blocking, 2000) for _ in range(5)])
                p = statistics.median([await take_and_give(plain, 2000) for _ in range(5)])
                r = statistics.median([await take_and_give(redis_py, 2000) for _ in range(5)])
                print(f"pool only run {run + 1}: lookalike's {b:5.1f} us, plain {p:5.1f} us, "
                      f"redis-py's blocking {r:5.1f} us to take and give back")  # fmt: skip
            for label, width in (("one task", 1), (f"{tasks} tasks", tasks)):
                ratios = []
                for run in range(3):
                    b = await per_command(blocking, commands, width)
                    p = await per_command(plain, commands, width)
                    ratios.append(b / p)
                    print(
                        f"{label:>9} run {run + 1}: lookalike's {b:6.1f} us/command, "
                        f"plain {p:6.1f} us/command, ratio {b / p:.3f}"
                    )
                print(
                    f"{label:>9}: ratio median {statistics.median(ratios):.3f} "
                    f"(spread {min(ratios):.3f}-{max(ratios):.3f})"
                )
            for client in (blocking, plain, redis_py):
                await client.aclose()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--tasks", type=int, default=32)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.commands, arguments.tasks))
